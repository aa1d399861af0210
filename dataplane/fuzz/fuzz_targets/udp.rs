//! UDP: the first 8 bytes are the pseudo-header's addresses, the rest is the
//! datagram. A parsed header must emit a header that parses the same, with
//! and without a filled checksum.
#![no_main]

use core::net::Ipv4Addr;

use dataplane::wire::udp::{Packet, Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((addrs, datagram)) = data.split_first_chunk::<8>() else {
        return;
    };
    let src = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
    let dst = Ipv4Addr::new(addrs[4], addrs[5], addrs[6], addrs[7]);
    let Ok(packet) = Packet::new_checked(datagram) else {
        return;
    };
    let _ = (packet.src_port(), packet.dst_port(), packet.checksum());
    let verified = packet.verify_checksum(src, dst);
    assert_eq!(packet.payload().len() + 8, usize::from(packet.len()));
    let parsed = Repr::parse(&packet, src, dst);
    assert_eq!(parsed.is_ok(), verified);
    let Ok(repr) = parsed else {
        return;
    };
    let mut out = vec![0u8; repr.total_len()];
    assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
    out[repr.buffer_len()..].copy_from_slice(packet.payload());
    assert_eq!(
        Repr::parse(&Packet::new_checked(&out[..]).unwrap(), src, dst),
        Ok(repr)
    );
    let mut writable = Packet::new_checked(&mut out[..]).unwrap();
    writable.fill_checksum(src, dst);
    assert_ne!(writable.checksum(), 0);
    assert_eq!(Repr::parse(&writable, src, dst), Ok(repr));
});
