//! Mode `l2tp`: a LAC with PPP sessions straight over L2TP, for testing an
//! LNS on its own. The sessions are [`controlplane::subscriber::Node`]'s,
//! over one UDP socket; the test packets ride L2TP data messages in the
//! sessions (PPP with Address/Control, as L2TP peers expect).
//!
//! `subscriber::Node` gives every call the same credentials, so in this
//! mode all sessions authenticate as `sub{first}`. A renegotiation is the
//! node reporting a subscriber up again after it was up.

use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::VecDeque;
use std::net::UdpSocket;

use controlplane::l2tp::SessionHandle;
use controlplane::subscriber::{self, Node};
use controlplane::time::Instant;
use dataplane::wire::l2tp as l2tp_wire;
use dataplane::wire::ppp::{self as ppp_wire, Protocol};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::port::PortDrops;
use super::report::SubscriberReport;
use super::runner::Side;
use super::stream::{Probe, Receiver};
use super::traffic;
use super::Args;

#[derive(Debug, Default, Clone)]
struct Call {
    session: Option<SessionHandle>,
    address: Option<Ipv4Addr>,
    up: bool,
    ever_up: bool,
    down: bool,
    setup_time: Option<Duration>,
    local_magic: Option<u32>,
    peer_magic: Option<u32>,
    flaps: u32,
    renegotiations: u32,
    down_cause: Option<String>,
}

/// The L2TP subscribers on a UDP socket.
#[derive(Debug)]
pub struct L2tpSide {
    node: Node,
    socket: UdpSocket,
    calls: Vec<Call>,
    changes: VecDeque<(usize, Option<Ipv4Addr>)>,
    buf: Vec<u8>,
    frame: Vec<u8>,
    /// Datagrams the kernel would not take.
    send_errors: u64,
}

impl L2tpSide {
    /// Bind `--bind` and make the node (in the calling thread's
    /// namespace).
    pub fn open(args: &Args) -> Result<Self, String> {
        let socket =
            UdpSocket::bind(args.bind).map_err(|e| format!("cannot bind {}: {e}", args.bind))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("socket: {e}"))?;
        super::port::grow_buffers(&socket);
        let mut config = subscriber::Config::new(
            args.lns,
            args.subscribers,
            &format!("sub{}", args.first_subscriber),
            &args.password,
            args.auth.into(),
        );
        config.max_setting_up = args.max_setting_up;
        config.l2tp.secret = args.secret.as_ref().map(|s| s.as_bytes().to_vec());
        Self::new(config, socket, args.seed)
    }

    /// The node as `config` says, on `socket` (non-blocking).
    pub fn new(config: subscriber::Config, socket: UdpSocket, seed: u64) -> Result<Self, String> {
        let n = config.sessions;
        let node = Node::new(config, Box::new(ChaCha8Rng::seed_from_u64(seed)))
            .map_err(|e| format!("L2TP configuration: {e}"))?;
        Ok(L2tpSide {
            node,
            socket,
            calls: vec![Call::default(); n],
            changes: VecDeque::new(),
            buf: vec![0; 2048],
            frame: Vec::new(),
            send_errors: 0,
        })
    }

    fn collect_events(&mut self) {
        while let Some(event) = self.node.poll_event() {
            match event {
                subscriber::Event::SessionUp(up) => {
                    let Some(call) = self.calls.get_mut(up.index) else {
                        continue;
                    };
                    if call.ever_up {
                        call.renegotiations += 1;
                    } else {
                        call.setup_time = Some(up.setup_time);
                    }
                    call.ever_up = true;
                    call.up = true;
                    call.session = Some(up.session);
                    call.address = Some(up.address);
                    call.local_magic = Some(up.local_magic);
                    call.peer_magic = Some(up.peer_magic);
                    self.changes.push_back((up.index, Some(up.address)));
                }
                subscriber::Event::SessionDown {
                    index,
                    reason,
                    was_up,
                    ..
                } => {
                    let Some(call) = self.calls.get_mut(index) else {
                        continue;
                    };
                    if was_up {
                        call.flaps += 1;
                    }
                    call.up = false;
                    call.down = true;
                    call.down_cause = Some(format!("{reason:?}"));
                    self.changes.push_back((index, None));
                }
                _ => {}
            }
        }
    }
}

impl Side for L2tpSide {
    fn start(&mut self, now: Instant) {
        if let Err(e) = self.node.start(now) {
            eprintln!("l2bench: cannot open the first calls: {e}");
        }
        self.collect_events();
    }

    fn receive(&mut self, now: Instant, downstream: &mut Receiver) -> bool {
        let mut any = false;
        for _ in 0..64 {
            let Ok((n, from)) = self.socket.recv_from(&mut self.buf) else {
                break;
            };
            any = true;
            let std::net::SocketAddr::V4(from) = from else {
                continue;
            };
            let datagram = &self.buf[..n];
            let data = l2tp_wire::Packet::new_checked(datagram)
                .ok()
                .filter(|p| !p.is_control())
                .and_then(|p| datagram.get(p.header_len()..p.packet_len()))
                .and_then(traffic::read_ppp_udp);
            match data {
                Some(payload) => downstream.receive(payload, now.as_nanos()),
                None => self.node.handle_datagram(now, from, datagram),
            }
        }
        self.collect_events();
        any
    }

    fn flush(&mut self, now: Instant) {
        while let Some((to, payload)) = self.node.poll_transmit(now) {
            let _ = self.socket.send_to(&payload, to);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
        self.collect_events();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout()
    }

    fn poll_change(&mut self) -> Option<(usize, Option<Ipv4Addr>)> {
        self.changes.pop_front()
    }

    fn counts(&self) -> (usize, usize) {
        let up = self.calls.iter().filter(|c| c.up).count();
        let settled = self.calls.iter().filter(|c| c.ever_up || c.down).count();
        (up, settled)
    }

    fn send_upstream(&mut self, index: usize, to: Ipv4Addr, probe: &Probe, payload: usize) -> bool {
        let Some(call) = self.calls.get(index) else {
            return false;
        };
        let (Some(session), Some(src)) = (call.session, call.address) else {
            return false;
        };
        // PPP with Address/Control and a two-byte Protocol: what every
        // L2TP peer takes.
        let header = ppp_wire::Repr::uncompressed(Protocol::Ipv4);
        self.frame
            .resize(header.buffer_len() + 28 + payload.max(24), 0);
        if header.emit(&mut self.frame).is_err() {
            return false;
        }
        let Some(n) = traffic::write_udp(
            &mut self.frame[header.buffer_len()..],
            src,
            to,
            probe,
            payload,
        ) else {
            return false;
        };
        let len = header.buffer_len() + n;
        match self
            .node
            .endpoint_mut()
            .send_data(session, &self.frame[..len])
        {
            Ok(t) => {
                if self.socket.send_to(&t.payload, t.remote).is_err() {
                    self.send_errors += 1;
                }
                true
            }
            // The session is gone: the packet was offered and is lost.
            Err(_) => true,
        }
    }

    fn hang_up(&mut self, now: Instant) {
        self.node.hang_up_all(now);
        self.collect_events();
    }

    fn drops(&mut self) -> PortDrops {
        PortDrops {
            send: self.send_errors,
            // A UDP socket's overflows are not counted per socket without
            // ancillary data; the kernel's UdpRcvbufErrors has them.
            receive: 0,
        }
    }

    fn subscribers(&self) -> Vec<SubscriberReport> {
        self.calls
            .iter()
            .enumerate()
            .map(|(i, c)| SubscriberReport {
                index: i,
                mac: None,
                session_id: None,
                address: c.address.map(|a| a.to_string()),
                setup_ms: c.setup_time.map(|d| d.as_secs_f64() * 1e3),
                local_magic: c.local_magic,
                peer_magic: c.peer_magic,
                flaps: c.flaps,
                renegotiations: c.renegotiations,
                up_at_end: c.up,
                down_cause: c.down_cause.clone(),
                ..SubscriberReport::default()
            })
            .collect()
    }
}
