//! The driver's socket options that std does not offer: its receive buffer
//! (through rustix), and the ICMP errors for the datagrams it sent, read
//! from the socket's error queue (`IP_RECVERR`, ip(7); through libc, as
//! rustix wraps neither the option nor the error's control message).
//!
//! Why: a peer whose process died while its host stays up (`kill -9` of an
//! LNS) has its host answer every datagram to the dead port with ICMP port
//! unreachable within a round trip. That is a far earlier sign of failure
//! than a missed Hello, and the failure switchover (DESIGN.md §1 item 4) is
//! only as fast as the detection. Without `IP_RECVERR` an unconnected UDP
//! socket never hears of these errors. The error queue also tells which
//! destination the error is about, which a plain `ECONNREFUSED` does not.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use rustix::net::sockopt;

/// ICMP type Destination Unreachable (RFC 792).
const ICMP_DEST_UNREACH: u8 = 3;
/// Its codes that are hard errors (RFC 1122 §4.2.3.9): the destination host
/// answered that nothing takes the protocol (2) or the port (3). The soft
/// ones (network or host unreachable, from a router on the way) can be
/// transient, and fragmentation needed (4) is path MTU news.
const PROTOCOL_UNREACHABLE: u8 = 2;
const PORT_UNREACHABLE: u8 = 3;

/// One entry of the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queued {
    /// The host at `remote` reported the port (or protocol) closed: a
    /// datagram we sent there found no one listening. Its first `quoted`
    /// bytes, as far as the ICMP message quoted it, are in the caller's
    /// buffer.
    Unreachable { remote: SocketAddrV4, quoted: usize },
    /// Anything else (soft ICMP errors, local errors): nothing to act on.
    Other,
}

/// Asks the kernel to queue ICMP errors for datagrams sent on `socket`
/// (`IP_RECVERR`).
pub(super) fn enable_icmp_errors(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a pointer to an int that lives
    // across the call with its true length.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_RECVERR,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for a receive buffer of `bytes` on `socket`: `SO_RCVBUFFORCE`,
/// which passes `net.core.rmem_max` with CAP_NET_ADMIN (the daemons have
/// it), else `SO_RCVBUF`, which the kernel caps there. Returns what the
/// socket has now (the kernel doubles what it is asked for, ip(7)).
pub(super) fn set_receive_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<usize> {
    // Without the capability the forced option fails; the plain one may
    // still give some of it. Either way the socket says what it got.
    if sockopt::set_socket_recv_buffer_size_force(socket, bytes).is_err() {
        let _ = sockopt::set_socket_recv_buffer_size(socket, bytes);
    }
    Ok(sockopt::socket_recv_buffer_size(socket)?)
}

/// Takes the next entry off `socket`'s error queue, `None` when it is empty.
/// The start of the datagram it is about (its UDP payload, ip(7)) goes into
/// `quoted`, cut to fit. Never blocks.
pub(super) fn next_error(socket: &UdpSocket, quoted: &mut [u8]) -> io::Result<Option<Queued>> {
    let mut iov = libc::iovec {
        iov_base: quoted.as_mut_ptr().cast(),
        iov_len: quoted.len(),
    };
    // The destination of the datagram the error is about.
    // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
    let mut name: libc::sockaddr_in = unsafe { zeroed() };
    // Room for the IP_RECVERR message (a sock_extended_err and the ICMP
    // sender's sockaddr_in), as u64s to give cmsghdr its alignment.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain old data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>() as _;
    let received = loop {
        // SAFETY: every pointer in msg points to a live buffer of the
        // length given beside it; MSG_ERRQUEUE never blocks.
        let r = unsafe {
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if let Ok(n) = usize::try_from(r) {
            // More than fit is cut off (MSG_TRUNC), never more than asked.
            break n.min(quoted.len());
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    };
    let remote = (name.sin_family == libc::AF_INET as libc::sa_family_t).then(|| {
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
            u16::from_be(name.sin_port),
        )
    });
    // SAFETY: the kernel filled msg_control up to msg_controllen; the CMSG
    // walkers stay inside it, and each header is read as the kernel wrote
    // it (aligned by construction).
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null, within the control buffer (see above).
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::IPPROTO_IP && header.cmsg_type == libc::IP_RECVERR {
            // SAFETY: an IP_RECVERR message starts with a sock_extended_err;
            // read unaligned in case the data does not sit on its alignment.
            let err: libc::sock_extended_err = unsafe {
                libc::CMSG_DATA(cmsg)
                    .cast::<libc::sock_extended_err>()
                    .read_unaligned()
            };
            let hard = err.ee_origin == libc::SO_EE_ORIGIN_ICMP
                && err.ee_type == ICMP_DEST_UNREACH
                && matches!(err.ee_code, PROTOCOL_UNREACHABLE | PORT_UNREACHABLE);
            return Ok(Some(match remote {
                Some(remote) if hard => Queued::Unreachable {
                    remote,
                    quoted: received,
                },
                _ => Queued::Other,
            }));
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(Some(Queued::Other))
}
