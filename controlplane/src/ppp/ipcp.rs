//! The network control protocols: IPCP (RFC 1332) with the DNS options of
//! RFC 1877, and IPv6CP interface identifiers (RFC 5072).
//!
//! The server (LNS) gets the addresses from its owner (AAA, the pool) and
//! Naks the subscriber towards them; the client asks for 0.0.0.0 and takes
//! the values it is Nak'ed with.

use core::net::Ipv4Addr;

use dataplane::wire::ppp::Protocol;
use dataplane::wire::ppp_cp::{
    emit_options, options_len, ConfigOption, IpcpOption, Ipv6cpOption, Options,
};
use rand_core::RngCore;

use super::fsm::{push_raw, Negotiation, Verdict};

/// What the owner gives the server side of IPCP for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Assignment {
    /// Our address on the link (the LNS side).
    pub local: Ipv4Addr,
    /// The subscriber's address.
    pub peer: Ipv4Addr,
    /// Primary DNS server (RFC 1877 option 129), if we hand one out.
    pub primary_dns: Option<Ipv4Addr>,
    /// Secondary DNS server (RFC 1877 option 131), if we hand one out.
    pub secondary_dns: Option<Ipv4Addr>,
}

/// What IPCP agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IpcpResult {
    /// Our address.
    pub local: Option<Ipv4Addr>,
    /// The peer's address.
    pub peer: Option<Ipv4Addr>,
    /// Primary DNS server: the one we gave (server) or got (client).
    pub primary_dns: Option<Ipv4Addr>,
    /// Secondary DNS server.
    pub secondary_dns: Option<Ipv4Addr>,
}

/// Which end of IPCP we are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IpcpSide {
    /// We assign (from the owner).
    Server(Option<Ipv4Assignment>),
    /// We are assigned; ask for DNS servers if `dns`.
    Client { dns: bool },
}

/// IPCP's option handling.
#[derive(Debug, Clone)]
pub struct IpcpNegotiation {
    side: IpcpSide,
    want_address: Option<Ipv4Addr>,
    want_primary_dns: Option<Ipv4Addr>,
    want_secondary_dns: Option<Ipv4Addr>,
    /// What was agreed so far.
    pub result: IpcpResult,
}

impl IpcpNegotiation {
    /// The server side; the assignment comes later with
    /// [`Self::set_assignment`].
    pub fn server() -> Self {
        Self::with_side(IpcpSide::Server(None))
    }

    /// The client side, asking for DNS servers if `dns`.
    pub fn client(dns: bool) -> Self {
        Self::with_side(IpcpSide::Client { dns })
    }

    fn with_side(side: IpcpSide) -> Self {
        let mut n = IpcpNegotiation {
            side,
            want_address: None,
            want_primary_dns: None,
            want_secondary_dns: None,
            result: IpcpResult::default(),
        };
        n.reset();
        n
    }

    /// The server's addresses for this subscriber.
    pub fn set_assignment(&mut self, assignment: Ipv4Assignment) {
        self.side = IpcpSide::Server(Some(assignment));
        self.reset();
    }

    /// The server's addresses, if given.
    pub fn assignment(&self) -> Option<Ipv4Assignment> {
        match self.side {
            IpcpSide::Server(a) => a,
            IpcpSide::Client { .. } => None,
        }
    }

    /// Whether this end can start negotiating: a server needs its
    /// assignment first.
    pub fn ready(&self) -> bool {
        !matches!(self.side, IpcpSide::Server(None))
    }
}

impl Negotiation for IpcpNegotiation {
    const PROTOCOL: Protocol = Protocol::Ipcp;

    fn reset(&mut self) {
        match self.side {
            IpcpSide::Server(a) => {
                self.want_address = a.map(|a| a.local);
                self.want_primary_dns = None;
                self.want_secondary_dns = None;
                self.result.primary_dns = a.and_then(|a| a.primary_dns);
                self.result.secondary_dns = a.and_then(|a| a.secondary_dns);
            }
            IpcpSide::Client { dns } => {
                // RFC 1332 §3.3, RFC 1877 §1: 0.0.0.0 asks the peer for one.
                self.want_address = Some(self.result.local.unwrap_or(Ipv4Addr::UNSPECIFIED));
                let unspecified = dns.then_some(Ipv4Addr::UNSPECIFIED);
                self.want_primary_dns = self.result.primary_dns.or(unspecified);
                self.want_secondary_dns = self.result.secondary_dns.or(unspecified);
            }
        }
    }

    fn request(&mut self, _rng: &mut dyn RngCore) -> Vec<u8> {
        let mut options = Vec::new();
        if let Some(a) = self.want_address {
            options.push(IpcpOption::IpAddress(a));
        }
        if let Some(a) = self.want_primary_dns {
            options.push(IpcpOption::PrimaryDns(a));
        }
        if let Some(a) = self.want_secondary_dns {
            options.push(IpcpOption::SecondaryDns(a));
        }
        emit(&options)
    }

    fn judge(&mut self, options: &[u8], _rng: &mut dyn RngCore) -> Verdict {
        let mut reject = Vec::new();
        let mut nak = Vec::new();
        let mut peer_address = None;
        let assignment = self.assignment();
        for raw in Options::new(options).flatten() {
            match (IpcpOption::parse(raw), &self.side) {
                (IpcpOption::IpAddress(a), IpcpSide::Server(_)) => {
                    // The subscriber gets the address we assign, whatever it
                    // asks for (RFC 1332 §3.3: Nak with the one to use).
                    match assignment {
                        Some(s) if s.peer == a => peer_address = Some(a),
                        Some(s) => nak.push(IpcpOption::IpAddress(s.peer)),
                        None => push_raw(&mut reject, raw),
                    }
                }
                (IpcpOption::IpAddress(a), IpcpSide::Client { .. }) => {
                    // The server's own address: any real one will do; we
                    // have none to suggest for 0.0.0.0.
                    if a.is_unspecified() {
                        push_raw(&mut reject, raw);
                    } else {
                        peer_address = Some(a);
                    }
                }
                (IpcpOption::PrimaryDns(a), IpcpSide::Server(_)) => {
                    match assignment.and_then(|s| s.primary_dns) {
                        Some(dns) if dns == a => {}
                        Some(dns) => nak.push(IpcpOption::PrimaryDns(dns)),
                        None => push_raw(&mut reject, raw),
                    }
                }
                (IpcpOption::SecondaryDns(a), IpcpSide::Server(_)) => {
                    match assignment.and_then(|s| s.secondary_dns) {
                        Some(dns) if dns == a => {}
                        Some(dns) => nak.push(IpcpOption::SecondaryDns(dns)),
                        None => push_raw(&mut reject, raw),
                    }
                }
                // DNS and NBNS requests are the client's business; a
                // server asking us for them, and IP-Compression-Protocol,
                // are rejected.
                _ => push_raw(&mut reject, raw),
            }
        }
        if !reject.is_empty() {
            return Verdict::Reject(reject);
        }
        if let (IpcpSide::Server(Some(s)), None) = (&self.side, peer_address) {
            if nak.is_empty() {
                // RFC 1332 §3.3: the peer left out IP-Address; Nak it in
                // so that the subscriber learns its address.
                nak.push(IpcpOption::IpAddress(s.peer));
            }
        }
        if !nak.is_empty() {
            return Verdict::Nak(emit(&nak));
        }
        self.result.peer = peer_address;
        Verdict::Ack
    }

    fn acked(&mut self, options: &[u8]) {
        for raw in Options::new(options).flatten() {
            match IpcpOption::parse(raw) {
                IpcpOption::IpAddress(a) => self.result.local = Some(a),
                IpcpOption::PrimaryDns(a) if self.want_primary_dns.is_some() => {
                    self.result.primary_dns = Some(a)
                }
                IpcpOption::SecondaryDns(a) if self.want_secondary_dns.is_some() => {
                    self.result.secondary_dns = Some(a)
                }
                _ => {}
            }
        }
    }

    fn naked(&mut self, options: &[u8], _rng: &mut dyn RngCore) {
        if matches!(self.side, IpcpSide::Server(_)) {
            // Our address is ours: a peer that Naks it gets it again, and
            // Max-Failure ends a peer that never gives in.
            return;
        }
        for raw in Options::new(options).flatten() {
            match IpcpOption::parse(raw) {
                IpcpOption::IpAddress(a) if !a.is_unspecified() => self.want_address = Some(a),
                IpcpOption::PrimaryDns(a) if self.want_primary_dns.is_some() => {
                    self.want_primary_dns = Some(a)
                }
                IpcpOption::SecondaryDns(a) if self.want_secondary_dns.is_some() => {
                    self.want_secondary_dns = Some(a)
                }
                _ => {}
            }
        }
    }

    fn rejected(&mut self, options: &[u8]) {
        for raw in Options::new(options).flatten() {
            match raw.kind {
                3 => self.want_address = None,
                129 => self.want_primary_dns = None,
                131 => self.want_secondary_dns = None,
                _ => {}
            }
        }
    }
}

/// What IPv6CP agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ipv6cpResult {
    /// Our interface identifier.
    pub local: Option<[u8; 8]>,
    /// The peer's interface identifier.
    pub peer: Option<[u8; 8]>,
}

/// IPv6CP's option handling (RFC 5072 §4.1): each side proposes its
/// interface identifier; a zero one or one equal to ours is Nak'ed with a
/// fresh suggestion.
#[derive(Debug, Clone)]
pub struct Ipv6cpNegotiation {
    configured: Option<[u8; 8]>,
    want: Option<[u8; 8]>,
    ask: bool,
    /// What was agreed so far.
    pub result: Ipv6cpResult,
}

impl Ipv6cpNegotiation {
    /// Propose `id` as ours, or a random one if `None`.
    pub fn new(id: Option<[u8; 8]>) -> Self {
        Ipv6cpNegotiation {
            configured: id,
            want: id,
            ask: true,
            result: Ipv6cpResult::default(),
        }
    }

    fn random_id(rng: &mut dyn RngCore, not: Option<[u8; 8]>) -> [u8; 8] {
        loop {
            let id = rng.next_u64().to_be_bytes();
            if id != [0; 8] && Some(id) != not {
                return id;
            }
        }
    }
}

impl Negotiation for Ipv6cpNegotiation {
    const PROTOCOL: Protocol = Protocol::Ipv6cp;

    fn reset(&mut self) {
        self.ask = true;
        if self.configured.is_some() {
            self.want = self.configured;
        }
    }

    fn request(&mut self, rng: &mut dyn RngCore) -> Vec<u8> {
        if !self.ask {
            return Vec::new();
        }
        let id = match self.want {
            Some(id) => id,
            None => {
                let id = Self::random_id(rng, self.result.peer);
                self.want = Some(id);
                id
            }
        };
        emit6(&[Ipv6cpOption::InterfaceIdentifier(id)])
    }

    fn judge(&mut self, options: &[u8], rng: &mut dyn RngCore) -> Verdict {
        let mut reject = Vec::new();
        let mut nak = Vec::new();
        let mut peer = None;
        for raw in Options::new(options).flatten() {
            match Ipv6cpOption::parse(raw) {
                Ipv6cpOption::InterfaceIdentifier(id) if id == [0; 8] || Some(id) == self.want => {
                    nak.push(Ipv6cpOption::InterfaceIdentifier(Self::random_id(
                        rng, self.want,
                    )));
                }
                Ipv6cpOption::InterfaceIdentifier(id) => peer = Some(id),
                Ipv6cpOption::Unknown { .. } => push_raw(&mut reject, raw),
            }
        }
        if !reject.is_empty() {
            return Verdict::Reject(reject);
        }
        if !nak.is_empty() {
            return Verdict::Nak(emit6(&nak));
        }
        self.result.peer = peer;
        Verdict::Ack
    }

    fn acked(&mut self, options: &[u8]) {
        for raw in Options::new(options).flatten() {
            if let Ipv6cpOption::InterfaceIdentifier(id) = Ipv6cpOption::parse(raw) {
                self.result.local = Some(id);
            }
        }
    }

    fn naked(&mut self, options: &[u8], rng: &mut dyn RngCore) {
        for raw in Options::new(options).flatten() {
            if let Ipv6cpOption::InterfaceIdentifier(id) = Ipv6cpOption::parse(raw) {
                // RFC 5072 §4.1: use the suggestion unless it is unusable.
                self.want = Some(if id == [0; 8] || Some(id) == self.result.peer {
                    Self::random_id(rng, self.result.peer)
                } else {
                    id
                });
            }
        }
    }

    fn rejected(&mut self, _options: &[u8]) {
        self.ask = false;
    }
}

fn emit(options: &[IpcpOption<'_>]) -> Vec<u8> {
    let mut buf = vec![0; options_len(options)];
    // The buffer has exactly the length the options take.
    let _ = emit_options(options, &mut buf);
    buf
}

fn emit6(options: &[Ipv6cpOption<'_>]) -> Vec<u8> {
    let mut buf = vec![0; options_len(options)];
    let _ = emit_options(options, &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// pppoe-subscribers_l2tpns.pcap frame 108's options: the subscriber
    /// asks for an address and both DNS servers.
    const CAPTURE_REQUEST: [u8; 18] = [
        0x03, 0x06, 0x00, 0x00, 0x00, 0x00, 0x81, 0x06, 0x00, 0x00, 0x00, 0x00, 0x83, 0x06, 0x00,
        0x00, 0x00, 0x00,
    ];

    /// Frame 110's options: l2tpns's Nak with the values to use.
    const CAPTURE_NAK: [u8; 18] = [
        0x03, 0x06, 0x0a, 0x0a, 0x00, 0x01, 0x81, 0x06, 0x0a, 0x00, 0x01, 0x35, 0x83, 0x06, 0x0a,
        0x00, 0x01, 0x36,
    ];

    fn assignment() -> Ipv4Assignment {
        Ipv4Assignment {
            local: Ipv4Addr::new(10, 0, 0, 1),
            peer: Ipv4Addr::new(10, 10, 0, 1),
            primary_dns: Some(Ipv4Addr::new(10, 0, 1, 53)),
            secondary_dns: Some(Ipv4Addr::new(10, 0, 1, 54)),
        }
    }

    #[test]
    fn server_naks_the_capture_request_as_l2tpns_did() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut server = IpcpNegotiation::server();
        server.set_assignment(assignment());
        assert_eq!(
            server.judge(&CAPTURE_REQUEST, &mut rng),
            Verdict::Nak(CAPTURE_NAK.to_vec())
        );
    }

    #[test]
    fn client_asks_zero_and_takes_the_naked_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut client = IpcpNegotiation::client(true);
        assert_eq!(client.request(&mut rng), CAPTURE_REQUEST);
        client.naked(&CAPTURE_NAK, &mut rng);
        assert_eq!(client.request(&mut rng), CAPTURE_NAK);
        client.acked(&CAPTURE_NAK);
        assert_eq!(client.result.local, Some(Ipv4Addr::new(10, 10, 0, 1)));
        assert_eq!(
            client.result.secondary_dns,
            Some(Ipv4Addr::new(10, 0, 1, 54))
        );
    }

    #[test]
    fn ipv6cp_naks_an_identifier_equal_to_ours() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut a = Ipv6cpNegotiation::new(Some([1; 8]));
        let ours = a.request(&mut rng);
        assert!(matches!(a.judge(&ours, &mut rng), Verdict::Nak(_)));
        let theirs = emit6(&[Ipv6cpOption::InterfaceIdentifier([2; 8])]);
        assert_eq!(a.judge(&theirs, &mut rng), Verdict::Ack);
        assert_eq!(a.result.peer, Some([2; 8]));
    }
}
