//! LCP, the Link Control Protocol (RFC 1661 §5-6): the option handling the
//! automaton of [`super::fsm`] runs for it, and the echo keepalive.
//!
//! Options we handle: Maximum-Receive-Unit, Authentication-Protocol (PAP or
//! CHAP with MD5), Magic-Number with loopback detection, Protocol- and
//! Address-and-Control-Field-Compression, and Async-Control-Character-Map
//! (accepted, meaningless on L2TP and PPPoE links, which carry no async
//! framing). Anything else is Configure-Rejected, as l2tpns's Multilink MRRU
//! (17) and Endpoint Discriminator (19) must be.

use core::time::Duration;

use dataplane::wire::ppp::Protocol;
use dataplane::wire::ppp_cp::{
    emit_options, options_len, AuthProtocol, ChapAlgorithm, ConfigOption, LcpOption, Options,
};
use rand_core::RngCore;

use super::fsm::{push_raw, Negotiation, Verdict};
use crate::time::Instant;

/// The MRU both sides assume when none is negotiated (RFC 1661 §6.1).
pub const DEFAULT_MRU: u16 = 1500;

/// An authentication method we can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// PAP (RFC 1334).
    Pap,
    /// CHAP with MD5 (RFC 1994).
    ChapMd5,
}

impl AuthMethod {
    /// The Authentication-Protocol option value.
    pub fn option(self) -> LcpOption<'static> {
        LcpOption::AuthProtocol(match self {
            AuthMethod::Pap => AuthProtocol::Pap,
            AuthMethod::ChapMd5 => AuthProtocol::Chap(ChapAlgorithm::Md5),
        })
    }

    /// The method an Authentication-Protocol value names, if we have it.
    pub fn from_option(auth: AuthProtocol<'_>) -> Option<AuthMethod> {
        match auth {
            AuthProtocol::Pap => Some(AuthMethod::Pap),
            AuthProtocol::Chap(ChapAlgorithm::Md5) => Some(AuthMethod::ChapMd5),
            _ => None,
        }
    }

    /// The PPP protocol its packets travel under.
    pub fn protocol(self) -> Protocol {
        match self {
            AuthMethod::Pap => Protocol::Pap,
            AuthMethod::ChapMd5 => Protocol::Chap,
        }
    }
}

/// How LCP negotiates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcpConfig {
    /// The MRU we ask for; not sent when it is the default 1500.
    pub mru: u16,
    /// The smallest MRU we let the peer ask for; smaller is Nak'ed up to it.
    pub min_peer_mru: u16,
    /// Authenticator: the methods we demand of the peer, preferred first
    /// (the peer may Nak towards another one of the list). Empty: none.
    pub authenticate_peer: Vec<AuthMethod>,
    /// Peer (client): the methods we agree to authenticate ourselves with,
    /// preferred first (we Nak others towards the first). Empty: we refuse
    /// (Configure-Reject) any Authentication-Protocol.
    pub authenticate_self: Vec<AuthMethod>,
    /// Negotiate a Magic-Number (loopback detection, echo).
    pub magic_number: bool,
    /// Ask for Protocol-Field-Compression.
    pub pfc: bool,
    /// Ask for Address-and-Control-Field-Compression.
    pub acfc: bool,
    /// Send an Echo-Request this often once LCP is Opened; `None`: never.
    pub echo_interval: Option<Duration>,
    /// Echo-Requests without a reply before the link is declared dead.
    pub echo_failures: u32,
    /// Magic-Number collisions in a row (our own magic seen in the peer's
    /// Configure-Request or Echo-Request) before the link is declared
    /// looped back (RFC 1661 §6.4).
    pub loopback_limit: u32,
}

impl Default for LcpConfig {
    fn default() -> Self {
        LcpConfig {
            mru: DEFAULT_MRU,
            min_peer_mru: 128,
            authenticate_peer: Vec::new(),
            authenticate_self: Vec::new(),
            magic_number: true,
            pfc: false,
            acfc: false,
            echo_interval: Some(Duration::from_secs(10)),
            echo_failures: 3,
            loopback_limit: 5,
        }
    }
}

/// One direction's LCP options as agreed: what one side asked for and the
/// other acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LcpOptions {
    /// The MRU of the side that asked (it receives frames up to this size).
    pub mru: u16,
    /// The method the asking side authenticates the other with.
    pub auth: Option<AuthMethod>,
    /// The asking side's Magic-Number (0: none).
    pub magic_number: u32,
    /// The asking side accepts compressed Protocol fields.
    pub pfc: bool,
    /// The asking side accepts frames without Address and Control.
    pub acfc: bool,
    /// The asking side's ACCM, if it sent one.
    pub accm: Option<u32>,
}

impl Default for LcpOptions {
    fn default() -> Self {
        LcpOptions {
            mru: DEFAULT_MRU,
            auth: None,
            magic_number: 0,
            pfc: false,
            acfc: false,
            accm: None,
        }
    }
}

impl LcpOptions {
    /// Read an option list (the body of a Configure-Request). Options that
    /// are not LCP's ones are ignored here.
    pub fn from_options(bytes: &[u8]) -> LcpOptions {
        let mut o = LcpOptions::default();
        for raw in Options::new(bytes).flatten() {
            match LcpOption::parse(raw) {
                LcpOption::Mru(v) => o.mru = v,
                LcpOption::Accm(v) => o.accm = Some(v),
                LcpOption::AuthProtocol(a) => o.auth = AuthMethod::from_option(a),
                LcpOption::MagicNumber(v) => o.magic_number = v,
                LcpOption::Pfc => o.pfc = true,
                LcpOption::Acfc => o.acfc = true,
                LcpOption::Unknown { .. } => {}
            }
        }
        o
    }
}

/// Why LCP cannot go on, found while negotiating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LcpFatal {
    /// The peer refused every authentication method we demand.
    AuthRefused,
    /// Our own Magic-Number came back too often: the link is looped back.
    LoopedBack,
}

/// LCP's option handling.
#[derive(Debug, Clone)]
pub struct LcpNegotiation {
    config: LcpConfig,
    want_mru: Option<u16>,
    want_auth: Option<AuthMethod>,
    auth_tried: Vec<AuthMethod>,
    want_magic: bool,
    magic: u32,
    want_pfc: bool,
    want_acfc: bool,
    collisions: u32,
    fatal: Option<LcpFatal>,
    /// What we asked for and the peer acknowledged.
    pub local: LcpOptions,
    /// What the peer asked for and we acknowledged.
    pub peer: LcpOptions,
}

impl LcpNegotiation {
    /// Option handling for `config`.
    pub fn new(config: LcpConfig) -> Self {
        let mut n = LcpNegotiation {
            config,
            want_mru: None,
            want_auth: None,
            auth_tried: Vec::new(),
            want_magic: false,
            magic: 0,
            want_pfc: false,
            want_acfc: false,
            collisions: 0,
            fatal: None,
            local: LcpOptions::default(),
            peer: LcpOptions::default(),
        };
        n.reset();
        n
    }

    /// The configuration.
    pub fn config(&self) -> &LcpConfig {
        &self.config
    }

    /// A reason to give up, found while negotiating.
    pub fn fatal(&self) -> Option<LcpFatal> {
        self.fatal
    }

    /// Our Magic-Number as we last asked for it.
    pub fn current_magic(&self) -> u32 {
        self.magic
    }

    /// Use these agreed options without negotiating (proxy LCP, a link
    /// rebuilt from offloaded state).
    pub fn set_agreed(&mut self, local: LcpOptions, peer: LcpOptions) {
        self.magic = local.magic_number;
        self.local = local;
        self.peer = peer;
    }

    /// A Magic-Number of ours seen coming back from the peer (RFC 1661
    /// §6.4); enough of them in a row and the link is looped back.
    pub fn magic_collision(&mut self) {
        self.collisions += 1;
        if self.collisions >= self.config.loopback_limit {
            self.fatal = Some(LcpFatal::LoopedBack);
        }
    }

    fn new_magic(&mut self, rng: &mut dyn RngCore) -> u32 {
        // RFC 1661 §6.4: zero is not a Magic-Number; a new one must differ
        // from the old.
        loop {
            let m = rng.next_u32();
            if m != 0 && m != self.magic {
                return m;
            }
        }
    }

    /// The next method to demand after the peer refused `refused` and
    /// suggested `suggested`.
    fn next_auth(&mut self, suggested: Option<AuthMethod>) {
        if let Some(current) = self.want_auth {
            self.auth_tried.push(current);
        }
        let allowed = &self.config.authenticate_peer;
        let next = suggested
            .filter(|m| allowed.contains(m) && !self.auth_tried.contains(m))
            .or_else(|| {
                allowed
                    .iter()
                    .copied()
                    .find(|m| !self.auth_tried.contains(m))
            });
        match next {
            Some(m) => self.want_auth = Some(m),
            None => self.fatal = Some(LcpFatal::AuthRefused),
        }
    }

    /// Judge a Configure-Request without side effects on our own request,
    /// for proxy LCP: `Ack` when we would acknowledge it as it is.
    pub fn would_ack(&self, options: &[u8]) -> bool {
        let mut check = self.clone();
        let mut never = NoRng;
        check.config.loopback_limit = u32::MAX;
        matches!(check.judge(options, &mut never), Verdict::Ack)
    }
}

impl Negotiation for LcpNegotiation {
    const PROTOCOL: Protocol = Protocol::Lcp;

    fn reset(&mut self) {
        self.want_mru = (self.config.mru != DEFAULT_MRU).then_some(self.config.mru);
        self.want_auth = self.config.authenticate_peer.first().copied();
        self.auth_tried.clear();
        self.want_magic = self.config.magic_number;
        self.want_pfc = self.config.pfc;
        self.want_acfc = self.config.acfc;
    }

    fn request(&mut self, rng: &mut dyn RngCore) -> Vec<u8> {
        let mut options = Vec::new();
        if let Some(mru) = self.want_mru {
            options.push(LcpOption::Mru(mru));
        }
        if let Some(auth) = self.want_auth {
            options.push(auth.option());
        }
        if self.want_magic {
            if self.magic == 0 {
                self.magic = self.new_magic(rng);
            }
            options.push(LcpOption::MagicNumber(self.magic));
        }
        if self.want_pfc {
            options.push(LcpOption::Pfc);
        }
        if self.want_acfc {
            options.push(LcpOption::Acfc);
        }
        emit(&options)
    }

    fn judge(&mut self, options: &[u8], rng: &mut dyn RngCore) -> Verdict {
        let mut reject = Vec::new();
        let mut nak: Vec<LcpOption<'static>> = Vec::new();
        for raw in Options::new(options).flatten() {
            match LcpOption::parse(raw) {
                LcpOption::Mru(v) if v < self.config.min_peer_mru => {
                    nak.push(LcpOption::Mru(self.config.min_peer_mru));
                }
                LcpOption::AuthProtocol(_) if self.config.authenticate_self.is_empty() => {
                    push_raw(&mut reject, raw);
                }
                LcpOption::AuthProtocol(a) => {
                    let ok = AuthMethod::from_option(a)
                        .is_some_and(|m| self.config.authenticate_self.contains(&m));
                    if !ok {
                        if let Some(m) = self.config.authenticate_self.first() {
                            nak.push(m.option());
                        }
                    }
                }
                LcpOption::MagicNumber(m) => {
                    // RFC 1661 §6.4: zero must be Nak'ed; our own number
                    // back may mean a looped link: Nak with a new one, and
                    // take a new one ourselves.
                    if m == 0 {
                        nak.push(LcpOption::MagicNumber(self.new_magic(rng)));
                    } else if self.want_magic && m == self.magic {
                        self.magic_collision();
                        self.magic = self.new_magic(rng);
                        nak.push(LcpOption::MagicNumber(self.new_magic(rng)));
                    }
                }
                LcpOption::Mru(_) | LcpOption::Accm(_) | LcpOption::Pfc | LcpOption::Acfc => {}
                LcpOption::Unknown { .. } => push_raw(&mut reject, raw),
            }
        }
        // RFC 1661 §5.3-5.4: options we do not know are rejected first;
        // only a request of known options is Nak'ed.
        if !reject.is_empty() {
            return Verdict::Reject(reject);
        }
        if !nak.is_empty() {
            return Verdict::Nak(emit(&nak));
        }
        self.collisions = 0;
        self.peer = LcpOptions::from_options(options);
        Verdict::Ack
    }

    fn acked(&mut self, options: &[u8]) {
        self.local = LcpOptions::from_options(options);
    }

    fn naked(&mut self, options: &[u8], rng: &mut dyn RngCore) {
        for raw in Options::new(options).flatten() {
            match LcpOption::parse(raw) {
                LcpOption::Mru(v) if (64..=self.config.mru).contains(&v) => self.want_mru = Some(v),
                LcpOption::AuthProtocol(a) if self.want_auth.is_some() => {
                    self.next_auth(AuthMethod::from_option(a));
                }
                LcpOption::MagicNumber(_) if self.want_magic => {
                    self.magic = self.new_magic(rng);
                }
                _ => {}
            }
        }
    }

    fn rejected(&mut self, options: &[u8]) {
        for raw in Options::new(options).flatten() {
            match raw.kind {
                1 => self.want_mru = None,
                // RFC 1661 §6.2: an authenticator cannot do without.
                3 if self.want_auth.is_some() => self.fatal = Some(LcpFatal::AuthRefused),
                5 => {
                    self.want_magic = false;
                    self.magic = 0;
                }
                7 => self.want_pfc = false,
                8 => self.want_acfc = false,
                _ => {}
            }
        }
    }

    fn magic_number(&self) -> u32 {
        self.local.magic_number
    }

    fn gave_up(&self) -> bool {
        self.fatal.is_some()
    }
}

fn emit(options: &[LcpOption<'_>]) -> Vec<u8> {
    let mut buf = vec![0; options_len(options)];
    // The buffer has exactly the length the options take.
    let _ = emit_options(options, &mut buf);
    buf
}

/// An RNG for dry runs of [`Negotiation::judge`] (proxy LCP): the values
/// it draws go into Naks that are never sent.
struct NoRng;

impl RngCore for NoRng {
    fn next_u32(&mut self) -> u32 {
        1
    }
    fn next_u64(&mut self) -> u64 {
        1
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(1);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        dest.fill(1);
        Ok(())
    }
}

/// What the echo keepalive wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Send an Echo-Request with this Identifier.
    SendEcho(u8),
    /// Too many Echo-Requests went unanswered.
    Failed,
}

/// The LCP echo keepalive: an Echo-Request every interval while Opened; a
/// reply resets the count of those outstanding.
#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: Option<Duration>,
    failures: u32,
    deadline: Option<Instant>,
    outstanding: u32,
    next_id: u8,
}

impl Keepalive {
    /// A stopped keepalive.
    pub fn new(interval: Option<Duration>, failures: u32) -> Self {
        Keepalive {
            interval,
            failures,
            deadline: None,
            outstanding: 0,
            next_id: 0,
        }
    }

    /// LCP is Opened: start.
    pub fn start(&mut self, now: Instant) {
        self.outstanding = 0;
        self.deadline = self.interval.map(|i| now + i);
    }

    /// LCP left Opened: stop.
    pub fn stop(&mut self) {
        self.deadline = None;
        self.outstanding = 0;
    }

    /// Echo-Requests sent and not answered.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    /// An Echo-Reply arrived. Any reply proves the peer alive (some peers
    /// do not echo our Identifier faithfully).
    pub fn reply(&mut self) {
        self.outstanding = 0;
    }

    /// When the next Echo-Request is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Run the timer if due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<KeepaliveAction> {
        if self.deadline.is_none_or(|t| t > now) {
            return None;
        }
        if self.outstanding >= self.failures {
            self.deadline = None;
            return Some(KeepaliveAction::Failed);
        }
        self.outstanding += 1;
        self.deadline = self.interval.map(|i| now + i);
        self.next_id = self.next_id.wrapping_add(1);
        Some(KeepaliveAction::SendEcho(self.next_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// pppoe-subscribers_l2tpns.pcap frame 20, the options of l2tpns's
    /// LCP Configure-Request: MRU 1462, PAP, magic, MRRU, Endpoint
    /// Discriminator.
    const L2TPNS_REQUEST: [u8; 25] = [
        0x01, 0x04, 0x05, 0xb6, 0x03, 0x04, 0xc0, 0x23, 0x05, 0x06, 0x6b, 0x05, 0x17, 0xdd, 0x11,
        0x04, 0x06, 0x4e, 0x13, 0x07, 0x02, 0x0a, 0x00, 0x02, 0x03,
    ];

    fn client(auth: &[AuthMethod]) -> LcpNegotiation {
        LcpNegotiation::new(LcpConfig {
            authenticate_self: auth.to_vec(),
            ..LcpConfig::default()
        })
    }

    #[test]
    fn mrru_and_endpoint_discriminator_are_rejected_as_sent() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let verdict = client(&[AuthMethod::Pap]).judge(&L2TPNS_REQUEST, &mut rng);
        assert_eq!(verdict, Verdict::Reject(L2TPNS_REQUEST[14..].to_vec()));
    }

    #[test]
    fn a_chap_only_client_naks_pap_with_chap_md5() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let verdict = client(&[AuthMethod::ChapMd5]).judge(&L2TPNS_REQUEST[..14], &mut rng);
        assert_eq!(verdict, Verdict::Nak(vec![0x03, 0x05, 0xc2, 0x23, 0x05]));
    }

    #[test]
    fn acked_request_becomes_the_peer_side() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut lcp = client(&[AuthMethod::Pap]);
        assert_eq!(lcp.judge(&L2TPNS_REQUEST[..14], &mut rng), Verdict::Ack);
        assert_eq!(
            lcp.peer,
            LcpOptions {
                mru: 1462,
                auth: Some(AuthMethod::Pap),
                magic_number: 0x6b05_17dd,
                ..LcpOptions::default()
            }
        );
    }

    #[test]
    fn our_own_magic_is_naked_and_repeated_collisions_mean_loopback() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut lcp = client(&[]);
        for _ in 0..5 {
            let request = lcp.request(&mut rng);
            assert!(matches!(lcp.judge(&request, &mut rng), Verdict::Nak(_)));
        }
        assert_eq!(lcp.fatal(), Some(LcpFatal::LoopedBack));
    }

    #[test]
    fn authenticator_follows_the_peers_nak_within_its_list_and_gives_up_after() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut lcp = LcpNegotiation::new(LcpConfig {
            authenticate_peer: vec![AuthMethod::Pap, AuthMethod::ChapMd5],
            ..LcpConfig::default()
        });
        let first = LcpOptions::from_options(&lcp.request(&mut rng));
        assert_eq!(first.auth, Some(AuthMethod::Pap));
        lcp.naked(&emit(&[AuthMethod::ChapMd5.option()]), &mut rng);
        let second = LcpOptions::from_options(&lcp.request(&mut rng));
        assert_eq!(second.auth, Some(AuthMethod::ChapMd5));
        assert_eq!(lcp.fatal(), None);
        lcp.naked(&emit(&[AuthMethod::Pap.option()]), &mut rng);
        assert_eq!(lcp.fatal(), Some(LcpFatal::AuthRefused));
    }

    #[test]
    fn keepalive_fails_after_the_configured_unanswered_echoes() {
        let mut k = Keepalive::new(Some(Duration::from_secs(1)), 2);
        let mut now = Instant::ZERO;
        k.start(now);
        let mut sent = 0;
        while let Some(t) = k.poll_timeout() {
            now = t;
            match k.handle_timeout(now) {
                Some(KeepaliveAction::SendEcho(_)) => sent += 1,
                Some(KeepaliveAction::Failed) => break,
                None => {}
            }
        }
        assert_eq!(sent, 2);
        assert_eq!(now, Instant::ZERO + Duration::from_secs(3));
    }
}
