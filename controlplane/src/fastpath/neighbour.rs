//! Next hops for the fast path, resolved by the kernel.
//!
//! The workers need the MAC address of every next hop they send to (a
//! LAC on the wan side, the core gateway). ARP stays with the kernel (the
//! steering program passes it), so the kernel's neighbour table is the
//! one source of truth: we read it from `/proc/net/arp`, and when an
//! address we want is missing we make the kernel resolve it by sending a
//! one-byte UDP datagram to its discard port (RFC 863) from an ordinary
//! socket: the kernel ARPs for the address, and the next read finds it.
//!
//! What is sans-IO here: the parsers of `/proc/net/arp` and
//! `/proc/net/route` ([`parse_arp`], [`parse_routes`], [`route_to`]) and
//! [`Neighbours`], the state of what is wanted, known and being probed,
//! which turns a table read into [`NeighbourAction`]s. The file reads and
//! the probe socket are the few lines of [`read_arp`], [`read_routes`] and
//! [`Prober`], used by [`super::Fastpath`].

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::HashMap;
use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use dataplane::table::Neighbour;
use dataplane::wire::ethernet;

/// ATF_COM: the entry is complete (the kernel has the MAC address).
const ATF_COM: u32 = 0x2;
/// RTF_UP: the route is usable.
const RTF_UP: u32 = 0x1;
/// RTF_GATEWAY: the route goes through a gateway.
const RTF_GATEWAY: u32 = 0x2;

/// The discard port (RFC 863): whatever a probe carries is thrown away.
const DISCARD_PORT: u16 = 9;

/// How long after probing an address we probe it again while it stays
/// unresolved (the kernel itself retries ARP three times a second).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A complete entry of the kernel's ARP table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpEntry {
    /// The address.
    pub addr: Ipv4Addr,
    /// Its MAC address.
    pub mac: ethernet::Address,
    /// The interface it was learnt on.
    pub interface: String,
}

/// The complete entries of `/proc/net/arp` (flags with ATF_COM). Lines that
/// do not parse are skipped.
pub fn parse_arp(text: &str) -> Vec<ArpEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [addr, _hw_type, flags, mac, _mask, interface] = f.as_slice() else {
                return None;
            };
            let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
            if flags & ATF_COM == 0 {
                return None;
            }
            Some(ArpEntry {
                addr: addr.parse().ok()?,
                mac: parse_mac(mac)?,
                interface: (*interface).to_owned(),
            })
        })
        .collect()
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<ethernet::Address> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    if parts.next().is_some() || mac == [0; 6] {
        return None;
    }
    Some(ethernet::Address(mac))
}

/// An IPv4 route of `/proc/net/route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The interface.
    pub interface: String,
    /// The destination prefix.
    pub destination: Ipv4Addr,
    /// Its mask.
    pub mask: Ipv4Addr,
    /// The gateway, for routes through one.
    pub gateway: Option<Ipv4Addr>,
    /// The metric (lower wins among equal prefixes).
    pub metric: u32,
}

/// The usable routes of `/proc/net/route`. The kernel prints each address
/// as the 32-bit number whose bytes in memory are the address in network
/// order, so the bytes of the native number are the address.
pub fn parse_routes(text: &str) -> Vec<Route> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    let addr = |s: &str| hex(s).map(|n| Ipv4Addr::from(n.to_ne_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = hex(f[3])?;
            if flags & RTF_UP == 0 {
                return None;
            }
            Some(Route {
                interface: f[0].to_owned(),
                destination: addr(f[1])?,
                gateway: (flags & RTF_GATEWAY != 0).then_some(addr(f[2])?),
                metric: f[6].parse().ok()?,
                mask: addr(f[7])?,
            })
        })
        .collect()
}

/// The interface and next hop for `dst`: the longest matching prefix, then
/// the lowest metric; the next hop is the route's gateway or `dst` itself
/// when it is on the link.
pub fn route_to(routes: &[Route], dst: Ipv4Addr) -> Option<(&str, Ipv4Addr)> {
    routes
        .iter()
        .filter(|r| u32::from(dst) & u32::from(r.mask) == u32::from(r.destination))
        .min_by_key(|r| (u32::MAX - u32::from(r.mask), r.metric))
        .map(|r| (r.interface.as_str(), r.gateway.unwrap_or(dst)))
}

/// What to do about a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourAction {
    /// Tell the workers: it is new or changed.
    Upsert(Ipv4Addr, Neighbour),
    /// Make the kernel resolve it.
    Probe(Ipv4Addr),
}

#[derive(Debug, Clone, Copy, Default)]
struct Wanted {
    /// What the workers were told.
    known: Option<Neighbour>,
    /// When we last probed it.
    probed_at: Option<Instant>,
}

/// The next hops the workers need, and what they were told about them.
/// Port `i` is the `i`-th interface the fast path was started on.
#[derive(Debug, Clone, Default)]
pub struct Neighbours {
    interfaces: Vec<String>,
    wanted: HashMap<Ipv4Addr, Wanted>,
}

impl Neighbours {
    /// For ports on `interfaces` (in port order).
    pub fn new(interfaces: Vec<String>) -> Neighbours {
        Neighbours {
            interfaces,
            wanted: HashMap::new(),
        }
    }

    /// The workers need `addr`; true when it was not wanted before.
    pub fn want(&mut self, addr: Ipv4Addr) -> bool {
        let new = !self.wanted.contains_key(&addr);
        self.wanted.entry(addr).or_default();
        new
    }

    /// Forget that the workers were told about `addr` and probe it at the
    /// next update (a worker punted a packet for it: its entry is missing
    /// or wrong).
    pub fn invalidate(&mut self, addr: Ipv4Addr) {
        let entry = self.wanted.entry(addr).or_default();
        entry.known = None;
        entry.probed_at = None;
    }

    /// Whether `addr` is wanted.
    pub fn is_wanted(&self, addr: Ipv4Addr) -> bool {
        self.wanted.contains_key(&addr)
    }

    /// Addresses wanted and not yet resolved.
    pub fn pending(&self) -> usize {
        self.wanted.values().filter(|w| w.known.is_none()).count()
    }

    /// Addresses wanted.
    pub fn len(&self) -> usize {
        self.wanted.len()
    }

    /// Nothing wanted.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// What the workers were told about `addr`.
    pub fn get(&self, addr: Ipv4Addr) -> Option<Neighbour> {
        self.wanted.get(&addr).and_then(|w| w.known)
    }

    /// Compare the kernel's table `arp` with what the workers know: upsert
    /// what is new or changed, probe what is missing (at most every
    /// [`PROBE_INTERVAL`] per address). An entry that vanished from the
    /// kernel's table stays with the workers (stale beats none; a wrong one
    /// shows up as punts and is invalidated).
    pub fn update(&mut self, now: Instant, arp: &[ArpEntry]) -> Vec<NeighbourAction> {
        let mut actions = Vec::new();
        for (&addr, wanted) in &mut self.wanted {
            let found = arp.iter().find_map(|e| {
                if e.addr != addr {
                    return None;
                }
                let port = self.interfaces.iter().position(|i| *i == e.interface)?;
                Some(Neighbour {
                    mac: e.mac,
                    port: u8::try_from(port).ok()?,
                })
            });
            match found {
                Some(n) if wanted.known != Some(n) => {
                    wanted.known = Some(n);
                    actions.push(NeighbourAction::Upsert(addr, n));
                }
                None if wanted.known.is_none()
                    && wanted
                        .probed_at
                        .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_INTERVAL) =>
                {
                    wanted.probed_at = Some(now);
                    actions.push(NeighbourAction::Probe(addr));
                }
                _ => {}
            }
        }
        actions
    }
}

/// The calling thread's network namespace's `/proc/net/<file>`:
/// `/proc/net` follows the process's main thread, and a test (or a daemon
/// that enters a namespace on one thread) needs its own thread's view.
fn read_proc_net(file: &str) -> io::Result<String> {
    std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))
        .or_else(|_| std::fs::read_to_string(format!("/proc/net/{file}")))
}

/// The kernel's complete ARP entries, as the calling thread's namespace
/// sees them.
pub fn read_arp() -> io::Result<Vec<ArpEntry>> {
    read_proc_net("arp").map(|t| parse_arp(&t))
}

/// The kernel's IPv4 routes, as the calling thread's namespace sees them.
pub fn read_routes() -> io::Result<Vec<Route>> {
    read_proc_net("route").map(|t| parse_routes(&t))
}

/// Makes the kernel resolve addresses: a UDP socket, made in the
/// namespace of the fast path's ports, that sends one byte to the discard
/// port of each address to resolve.
#[derive(Debug)]
pub struct Prober {
    socket: UdpSocket,
}

impl Prober {
    /// A socket in the calling thread's namespace.
    pub fn new() -> io::Result<Prober> {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_nonblocking(true)?;
        Ok(Prober { socket })
    }

    /// Have the kernel ARP for `addr` (the datagram waits in the kernel's
    /// neighbour queue until it is resolved, then goes to the discard port).
    pub fn probe(&self, addr: Ipv4Addr) -> io::Result<()> {
        self.socket
            .send_to(&[0], SocketAddrV4::new(addr, DISCARD_PORT))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
10.0.0.1         0x1         0x2         02:aa:00:00:00:01     *        wan0
10.1.0.2         0x1         0x0         00:00:00:00:00:00     *        core0
10.1.0.3         0x1         0x2         02:bb:00:00:00:03     *        core0
10.9.0.1         0x1         0x2         02:cc:00:00:00:01     *        eth9
garbage
";

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wan0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
core0\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
core0\t00000000\t0200010A\t0003\t0\t0\t0\t00000000\t0\t0\t0
core0\t0000020A\t0300010A\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    fn mac(last: u8) -> ethernet::Address {
        ethernet::Address([0x02, 0xaa, 0, 0, 0, last])
    }

    #[test]
    fn arp_keeps_complete_entries_only() {
        let entries = parse_arp(ARP);
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[0],
            ArpEntry {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                mac: mac(1),
                interface: "wan0".into()
            }
        );
        assert!(entries.iter().all(|e| e.addr != Ipv4Addr::new(10, 1, 0, 2)));
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("02:aa:00:00:00:01"), Some(mac(1)));
        for bad in [
            "",
            "02:aa:00:00:00",
            "02:aa:00:00:00:01:02",
            "zz:aa:00:00:00:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
    }

    #[test]
    fn routes_pick_the_longest_prefix() {
        let routes = parse_routes(ROUTES);
        // The byte order only holds on little-endian hosts, where the
        // sample was taken.
        if cfg!(target_endian = "little") {
            assert_eq!(routes.len(), 4);
            let lan = Ipv4Addr::new(10, 0, 0, 7);
            assert_eq!(route_to(&routes, lan), Some(("wan0", lan)));
            let far = Ipv4Addr::new(192, 0, 2, 1);
            assert_eq!(
                route_to(&routes, far),
                Some(("core0", Ipv4Addr::new(10, 1, 0, 2)))
            );
            assert_eq!(
                route_to(&routes, Ipv4Addr::new(10, 2, 0, 9)),
                Some(("core0", Ipv4Addr::new(10, 1, 0, 3)))
            );
        }
        assert!(route_to(&[], Ipv4Addr::LOCALHOST).is_none());
    }

    #[test]
    fn neighbours_upsert_once_and_probe_what_is_missing() {
        let mut n = Neighbours::new(vec!["wan0".into(), "core0".into()]);
        let lac = Ipv4Addr::new(10, 0, 0, 1);
        let gateway = Ipv4Addr::new(10, 1, 0, 2);
        let elsewhere = Ipv4Addr::new(10, 9, 0, 1);
        assert!(n.want(lac));
        assert!(!n.want(lac));
        n.want(gateway);
        n.want(elsewhere);
        let t0 = Instant::now();
        let arp = parse_arp(ARP);
        let mut actions = n.update(t0, &arp);
        actions.sort_by_key(|a| format!("{a:?}"));
        let lac_n = Neighbour {
            mac: mac(1),
            port: 0,
        };
        assert_eq!(
            actions,
            vec![
                NeighbourAction::Probe(gateway),
                // Learnt on an interface that is not one of our ports.
                NeighbourAction::Probe(elsewhere),
                NeighbourAction::Upsert(lac, lac_n),
            ]
        );
        assert_eq!(n.pending(), 2);
        // Nothing new, and too early to probe again.
        assert!(n.update(t0 + Duration::from_millis(100), &arp).is_empty());
        let later = t0 + PROBE_INTERVAL;
        let mut resolved = arp.clone();
        resolved.push(ArpEntry {
            addr: gateway,
            mac: mac(2),
            interface: "core0".into(),
        });
        let actions = n.update(later, &resolved);
        assert!(actions.contains(&NeighbourAction::Upsert(
            gateway,
            Neighbour {
                mac: mac(2),
                port: 1
            }
        )));
        assert!(actions.contains(&NeighbourAction::Probe(elsewhere)));
        assert_eq!(n.get(gateway).map(|g| g.port), Some(1));
        // A worker says the LAC's entry is missing: told again.
        n.invalidate(lac);
        assert_eq!(
            n.update(later, &resolved)
                .into_iter()
                .filter(|a| matches!(a, NeighbourAction::Upsert(..)))
                .collect::<Vec<_>>(),
            vec![NeighbourAction::Upsert(lac, lac_n)]
        );
    }
}
