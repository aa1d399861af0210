//! The Session-State blob (DESIGN.md §3, HA vendor AVP 6): everything a peer
//! LNS needs to carry a subscriber's PPP session on with no renegotiation.
//!
//! # Layout
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Version (1)            |  TLV ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! each TLV:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Type               |        Length (of Value)      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Value ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! All integers are big-endian. The version is the *major* version: a
//! decoder refuses one it does not know. The blob grows by new TLV types
//! within a version; a decoder skips types it does not know, so an older
//! peer reads a newer primary's state. A known type with the wrong length
//! is an error (the blob is damaged or the sender is broken).
//!
//! | type | name | value |
//! |---|---|---|
//! | 1 | Role | u8: 0 server (LNS), 1 client |
//! | 2 | LCP local | our LCP options: see [`TLV_LCP_LOCAL`] |
//! | 3 | LCP peer | the peer's LCP options, same layout |
//! | 4 | Auth method | u8: 1 PAP, 2 CHAP-MD5 (absent: none) |
//! | 5 | User name | the authenticated name, bytes |
//! | 6 | IPCP | local, peer, primary DNS, secondary DNS: 4 × IPv4 (0.0.0.0 = none); absent if IPCP is not Opened |
//! | 7 | IPv6CP | local, peer interface id: 2 × 8 bytes (zero = none, RFC 5072 §4.1); absent if not Opened |
//! | 8 | L2TP session | u8 flags (bit 0 sequencing), u16 peer data receive window (0: none), u16 next data Ns, u16 next data Nr |
//! | 9 | Acct-Session-Id | UTF-8 bytes |
//! | 10 | Start time | u64 seconds since the Unix epoch (wall clock: both boxes agree on it, not on a monotonic clock) |
//! | 11 | Counters | u64 octets in, octets out, packets in, packets out (in = from the subscriber) |
//! | 12 | Timeouts | u32 Session-Timeout s, u32 Idle-Timeout s, u32 Acct-Interim-Interval s (0: none) |
//! | 13 | Class | one RADIUS Class value (RFC 2865 §5.25); repeated, in order |
//!
//! LCP options value (12 bytes): u16 MRU, u32 magic number, u8 flags (bit 0
//! PFC, bit 1 ACFC, bit 2 ACCM present), u8 auth (0 none, 1 PAP, 2
//! CHAP-MD5), u32 ACCM.

use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;

use crate::aaa::{FramedAddress, SessionAttributes};
use crate::ppp::{AuthMethod, IpcpResult, Ipv6cpResult, LcpOptions, LinkState, Role};

/// The major version this code writes and reads.
pub const VERSION: u16 = 1;

/// TLV type: [`Role`].
pub const TLV_ROLE: u16 = 1;
/// TLV type: our LCP options (MRU, magic number, PFC/ACFC, ACCM, the method
/// we authenticate the peer with).
pub const TLV_LCP_LOCAL: u16 = 2;
/// TLV type: the peer's LCP options.
pub const TLV_LCP_PEER: u16 = 3;
/// TLV type: the authentication method used.
pub const TLV_AUTH_METHOD: u16 = 4;
/// TLV type: the authenticated user name.
pub const TLV_USER_NAME: u16 = 5;
/// TLV type: IPCP's result.
pub const TLV_IPCP: u16 = 6;
/// TLV type: IPv6CP's result.
pub const TLV_IPV6CP: u16 = 7;
/// TLV type: L2TP session options.
pub const TLV_L2TP: u16 = 8;
/// TLV type: the Acct-Session-Id.
pub const TLV_ACCT_SESSION_ID: u16 = 9;
/// TLV type: the session's start time.
pub const TLV_START_TIME: u16 = 10;
/// TLV type: the traffic counters.
pub const TLV_COUNTERS: u16 = 11;
/// TLV type: session, idle and interim timers.
pub const TLV_TIMEOUTS: u16 = 12;
/// TLV type: one RADIUS Class value.
pub const TLV_CLASS: u16 = 13;

const LCP_LEN: usize = 12;
const HEADER_LEN: usize = 2;
const TLV_HEADER_LEN: usize = 4;

/// Why a Session-State blob could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// Shorter than its header or a TLV's length says.
    Truncated,
    /// A known TLV whose value has the wrong length or content.
    Malformed {
        /// The TLV type.
        tlv: u16,
    },
    /// A major version this code does not read.
    UnsupportedVersion(u16),
    /// A value longer than a TLV can carry (65535 bytes).
    TooLong {
        /// The TLV type.
        tlv: u16,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Truncated => f.write_str("session state truncated"),
            StateError::Malformed { tlv } => write!(f, "session state TLV {tlv} malformed"),
            StateError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "session state version {v} is not supported (we read {VERSION})"
                )
            }
            StateError::TooLong { tlv } => write!(f, "session state TLV {tlv} too long"),
        }
    }
}

impl std::error::Error for StateError {}

/// The L2TP data-channel options of the session (RFC 2661 §5.4, §4.4.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L2tpSessionOptions {
    /// Sequence numbers on data messages (Sequencing Required, or the LNS
    /// chose to).
    pub sequencing: bool,
    /// The peer's receive window for data messages, if it gave one.
    pub peer_receive_window: Option<u16>,
    /// Next Ns we send on data messages (when sequencing).
    pub next_ns: u16,
    /// Next Nr we expect (when sequencing).
    pub next_nr: u16,
}

/// Traffic counters, from the subscriber's point of view as RADIUS counts
/// them (RFC 2866 §5.3-§5.6: input is what the subscriber sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Acct-Input-Octets.
    pub input_octets: u64,
    /// Acct-Output-Octets.
    pub output_octets: u64,
    /// Acct-Input-Packets.
    pub input_packets: u64,
    /// Acct-Output-Packets.
    pub output_packets: u64,
}

/// The accounting identity of the session: the peer keeps it, so RADIUS
/// sees one session across a switchover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Acct-Session-Id (RFC 2866 §5.5).
    pub session_id: String,
    /// When the session started, seconds since the Unix epoch.
    pub start_time_unix: u64,
    /// Counters up to the moment of the offload.
    pub counters: Counters,
    /// Class values to echo (RFC 2865 §5.25).
    pub class: Vec<Vec<u8>>,
}

/// The session's timers from AAA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Session-Timeout (RFC 2865 §5.27), whole seconds.
    pub session: Option<Duration>,
    /// Idle-Timeout (RFC 2865 §5.28), whole seconds.
    pub idle: Option<Duration>,
    /// Acct-Interim-Interval (RFC 2869 §5.16), whole seconds.
    pub interim: Option<Duration>,
}

/// Everything offloaded about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// What PPP negotiated ([`crate::ppp::PppLink::from_state`] rebuilds the
    /// link from it).
    pub link: LinkState,
    /// The L2TP session's data options.
    pub l2tp: L2tpSessionOptions,
    /// Accounting identity and counters.
    pub accounting: Accounting,
    /// Timers.
    pub timeouts: Timeouts,
}

impl SessionState {
    /// A state for a link, with no accounting, timers or L2TP options yet.
    pub fn new(link: LinkState) -> Self {
        SessionState {
            link,
            l2tp: L2tpSessionOptions::default(),
            accounting: Accounting::default(),
            timeouts: Timeouts::default(),
        }
    }

    /// Take the AAA timers and Class values the session was accepted with.
    pub fn set_attributes(&mut self, attributes: &SessionAttributes) {
        self.timeouts = Timeouts {
            session: attributes.session_timeout,
            idle: attributes.idle_timeout,
            interim: attributes.interim_interval,
        };
        self.accounting.class = attributes.class.clone();
    }

    /// The AAA attributes the adopting LNS runs the session with: the
    /// timers, the Class values, and the address PPP agreed on as a static
    /// Framed-IP-Address (the peer must reserve exactly that one).
    pub fn attributes(&self) -> SessionAttributes {
        SessionAttributes {
            framed_address: self.link.peer_ipv4().map(FramedAddress::Static),
            session_timeout: self.timeouts.session,
            idle_timeout: self.timeouts.idle,
            interim_interval: self.timeouts.interim,
            class: self.accounting.class.clone(),
            ..SessionAttributes::default()
        }
    }

    /// The blob (see the module documentation).
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(&VERSION.to_be_bytes());
        let role = match self.link.role {
            Role::Server => 0u8,
            Role::Client => 1,
        };
        tlv(&mut out, TLV_ROLE, &[role])?;
        tlv(&mut out, TLV_LCP_LOCAL, &lcp_bytes(&self.link.lcp_local))?;
        tlv(&mut out, TLV_LCP_PEER, &lcp_bytes(&self.link.lcp_peer))?;
        if let Some(m) = self.link.auth_method {
            tlv(&mut out, TLV_AUTH_METHOD, &[auth_code(Some(m))])?;
        }
        if let Some(name) = &self.link.username {
            tlv(&mut out, TLV_USER_NAME, name)?;
        }
        if let Some(ipcp) = &self.link.ipcp {
            let mut v = [0u8; 16];
            for (i, a) in [ipcp.local, ipcp.peer, ipcp.primary_dns, ipcp.secondary_dns]
                .into_iter()
                .enumerate()
            {
                v[i * 4..i * 4 + 4].copy_from_slice(&a.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
            }
            tlv(&mut out, TLV_IPCP, &v)?;
        }
        if let Some(v6) = &self.link.ipv6cp {
            let mut v = [0u8; 16];
            v[..8].copy_from_slice(&v6.local.unwrap_or_default());
            v[8..].copy_from_slice(&v6.peer.unwrap_or_default());
            tlv(&mut out, TLV_IPV6CP, &v)?;
        }
        let l = &self.l2tp;
        let mut v = [0u8; 7];
        v[0] = u8::from(l.sequencing);
        v[1..3].copy_from_slice(&l.peer_receive_window.unwrap_or(0).to_be_bytes());
        v[3..5].copy_from_slice(&l.next_ns.to_be_bytes());
        v[5..7].copy_from_slice(&l.next_nr.to_be_bytes());
        tlv(&mut out, TLV_L2TP, &v)?;
        let a = &self.accounting;
        tlv(&mut out, TLV_ACCT_SESSION_ID, a.session_id.as_bytes())?;
        tlv(&mut out, TLV_START_TIME, &a.start_time_unix.to_be_bytes())?;
        let c = &a.counters;
        let mut v = [0u8; 32];
        for (i, n) in [
            c.input_octets,
            c.output_octets,
            c.input_packets,
            c.output_packets,
        ]
        .into_iter()
        .enumerate()
        {
            v[i * 8..i * 8 + 8].copy_from_slice(&n.to_be_bytes());
        }
        tlv(&mut out, TLV_COUNTERS, &v)?;
        let t = &self.timeouts;
        let mut v = [0u8; 12];
        for (i, d) in [t.session, t.idle, t.interim].into_iter().enumerate() {
            let secs = d.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
            v[i * 4..i * 4 + 4].copy_from_slice(&secs.to_be_bytes());
        }
        tlv(&mut out, TLV_TIMEOUTS, &v)?;
        for class in &a.class {
            tlv(&mut out, TLV_CLASS, class)?;
        }
        Ok(out)
    }

    /// Read a blob. Unknown TLVs are skipped; a missing TLV leaves its
    /// default (role server, RFC 1661 default LCP options, nothing else).
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() < HEADER_LEN {
            return Err(StateError::Truncated);
        }
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        if version != VERSION {
            return Err(StateError::UnsupportedVersion(version));
        }
        let mut state = SessionState::new(LinkState {
            role: Role::Server,
            lcp_local: LcpOptions::default(),
            lcp_peer: LcpOptions::default(),
            auth_method: None,
            username: None,
            ipcp: None,
            ipv6cp: None,
        });
        let mut rest = &bytes[HEADER_LEN..];
        while !rest.is_empty() {
            if rest.len() < TLV_HEADER_LEN {
                return Err(StateError::Truncated);
            }
            let kind = u16::from_be_bytes([rest[0], rest[1]]);
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            let Some(value) = rest.get(TLV_HEADER_LEN..TLV_HEADER_LEN + len) else {
                return Err(StateError::Truncated);
            };
            rest = &rest[TLV_HEADER_LEN + len..];
            state.take(kind, value)?;
        }
        Ok(state)
    }

    fn take(&mut self, kind: u16, v: &[u8]) -> Result<(), StateError> {
        let bad = StateError::Malformed { tlv: kind };
        match kind {
            TLV_ROLE => {
                self.link.role = match exact::<1>(v, kind)? {
                    [0] => Role::Server,
                    [1] => Role::Client,
                    _ => return Err(bad),
                }
            }
            TLV_LCP_LOCAL => self.link.lcp_local = lcp_from(&exact::<LCP_LEN>(v, kind)?, kind)?,
            TLV_LCP_PEER => self.link.lcp_peer = lcp_from(&exact::<LCP_LEN>(v, kind)?, kind)?,
            TLV_AUTH_METHOD => {
                let [m] = exact::<1>(v, kind)?;
                self.link.auth_method = Some(auth_from(m, kind)?.ok_or(bad)?);
            }
            TLV_USER_NAME => self.link.username = Some(v.to_vec()),
            TLV_IPCP => {
                let v = exact::<16>(v, kind)?;
                let addr = |i: usize| {
                    let a = Ipv4Addr::new(v[i * 4], v[i * 4 + 1], v[i * 4 + 2], v[i * 4 + 3]);
                    (!a.is_unspecified()).then_some(a)
                };
                self.link.ipcp = Some(IpcpResult {
                    local: addr(0),
                    peer: addr(1),
                    primary_dns: addr(2),
                    secondary_dns: addr(3),
                });
            }
            TLV_IPV6CP => {
                let v = exact::<16>(v, kind)?;
                let id = |at: usize| {
                    let mut id = [0u8; 8];
                    id.copy_from_slice(&v[at..at + 8]);
                    (id != [0; 8]).then_some(id)
                };
                self.link.ipv6cp = Some(Ipv6cpResult {
                    local: id(0),
                    peer: id(8),
                });
            }
            TLV_L2TP => {
                let v = exact::<7>(v, kind)?;
                let window = u16::from_be_bytes([v[1], v[2]]);
                self.l2tp = L2tpSessionOptions {
                    sequencing: v[0] & 1 != 0,
                    peer_receive_window: (window != 0).then_some(window),
                    next_ns: u16::from_be_bytes([v[3], v[4]]),
                    next_nr: u16::from_be_bytes([v[5], v[6]]),
                };
            }
            TLV_ACCT_SESSION_ID => {
                self.accounting.session_id = String::from_utf8(v.to_vec()).map_err(|_| bad)?;
            }
            TLV_START_TIME => {
                self.accounting.start_time_unix = u64::from_be_bytes(exact::<8>(v, kind)?);
            }
            TLV_COUNTERS => {
                let v = exact::<32>(v, kind)?;
                let n = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&v[i * 8..i * 8 + 8]);
                    u64::from_be_bytes(b)
                };
                self.accounting.counters = Counters {
                    input_octets: n(0),
                    output_octets: n(1),
                    input_packets: n(2),
                    output_packets: n(3),
                };
            }
            TLV_TIMEOUTS => {
                let v = exact::<12>(v, kind)?;
                let d = |i: usize| {
                    let s =
                        u32::from_be_bytes([v[i * 4], v[i * 4 + 1], v[i * 4 + 2], v[i * 4 + 3]]);
                    (s != 0).then(|| Duration::from_secs(u64::from(s)))
                };
                self.timeouts = Timeouts {
                    session: d(0),
                    idle: d(1),
                    interim: d(2),
                };
            }
            TLV_CLASS => self.accounting.class.push(v.to_vec()),
            // Unknown: a newer sender's addition; skipped.
            _ => {}
        }
        Ok(())
    }
}

fn tlv(out: &mut Vec<u8>, kind: u16, value: &[u8]) -> Result<(), StateError> {
    let len = u16::try_from(value.len()).map_err(|_| StateError::TooLong { tlv: kind })?;
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

fn exact<const N: usize>(v: &[u8], kind: u16) -> Result<[u8; N], StateError> {
    v.try_into()
        .map_err(|_| StateError::Malformed { tlv: kind })
}

fn auth_code(m: Option<AuthMethod>) -> u8 {
    match m {
        None => 0,
        Some(AuthMethod::Pap) => 1,
        Some(AuthMethod::ChapMd5) => 2,
    }
}

fn auth_from(code: u8, kind: u16) -> Result<Option<AuthMethod>, StateError> {
    match code {
        0 => Ok(None),
        1 => Ok(Some(AuthMethod::Pap)),
        2 => Ok(Some(AuthMethod::ChapMd5)),
        _ => Err(StateError::Malformed { tlv: kind }),
    }
}

const FLAG_PFC: u8 = 0x1;
const FLAG_ACFC: u8 = 0x2;
const FLAG_ACCM: u8 = 0x4;

fn lcp_bytes(o: &LcpOptions) -> [u8; LCP_LEN] {
    let mut v = [0u8; LCP_LEN];
    v[0..2].copy_from_slice(&o.mru.to_be_bytes());
    v[2..6].copy_from_slice(&o.magic_number.to_be_bytes());
    let mut flags = 0;
    if o.pfc {
        flags |= FLAG_PFC;
    }
    if o.acfc {
        flags |= FLAG_ACFC;
    }
    if o.accm.is_some() {
        flags |= FLAG_ACCM;
    }
    v[6] = flags;
    v[7] = auth_code(o.auth);
    v[8..12].copy_from_slice(&o.accm.unwrap_or(0).to_be_bytes());
    v
}

fn lcp_from(v: &[u8; LCP_LEN], kind: u16) -> Result<LcpOptions, StateError> {
    let flags = v[6];
    Ok(LcpOptions {
        mru: u16::from_be_bytes([v[0], v[1]]),
        magic_number: u32::from_be_bytes([v[2], v[3], v[4], v[5]]),
        pfc: flags & FLAG_PFC != 0,
        acfc: flags & FLAG_ACFC != 0,
        auth: auth_from(v[7], kind)?,
        accm: (flags & FLAG_ACCM != 0).then(|| u32::from_be_bytes([v[8], v[9], v[10], v[11]])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// An LNS session after CHAP and IPCP, with accounting.
    fn golden_state() -> SessionState {
        SessionState {
            link: LinkState {
                role: Role::Server,
                lcp_local: LcpOptions {
                    mru: 1492,
                    auth: Some(AuthMethod::ChapMd5),
                    magic_number: 0x1122_3344,
                    pfc: false,
                    acfc: false,
                    accm: None,
                },
                lcp_peer: LcpOptions {
                    mru: 1480,
                    auth: None,
                    magic_number: 0xaabb_ccdd,
                    pfc: true,
                    acfc: true,
                    accm: Some(0),
                },
                auth_method: Some(AuthMethod::ChapMd5),
                username: Some(b"sub0".to_vec()),
                ipcp: Some(IpcpResult {
                    local: Some(Ipv4Addr::new(100, 64, 0, 1)),
                    peer: Some(Ipv4Addr::new(100, 64, 0, 2)),
                    primary_dns: Some(Ipv4Addr::new(9, 9, 9, 9)),
                    secondary_dns: None,
                }),
                ipv6cp: None,
            },
            l2tp: L2tpSessionOptions {
                sequencing: false,
                peer_receive_window: None,
                next_ns: 0,
                next_nr: 0,
            },
            accounting: Accounting {
                session_id: "0A".to_owned(),
                start_time_unix: 1_700_000_000,
                counters: Counters {
                    input_octets: 1000,
                    output_octets: 2000,
                    input_packets: 10,
                    output_packets: 20,
                },
                class: vec![b"c1".to_vec()],
            },
            timeouts: Timeouts {
                session: Some(Duration::from_secs(86400)),
                idle: None,
                interim: Some(Duration::from_secs(300)),
            },
        }
    }

    /// Written out TLV by TLV from the module's table.
    const GOLDEN: &str = "
        0001
        0001 0001 00
        0002 000c 05d4 11223344 00 02 00000000
        0003 000c 05c8 aabbccdd 07 00 00000000
        0004 0001 02
        0005 0004 73756230
        0006 0010 64400001 64400002 09090909 00000000
        0008 0007 00 0000 0000 0000
        0009 0002 3041
        000a 0008 000000006553f100
        000b 0020 00000000000003e8 00000000000007d0 000000000000000a 0000000000000014
        000c 000c 00015180 00000000 0000012c
        000d 0002 6331";

    #[test]
    fn golden_fields_to_bytes_and_back() {
        assert_eq!(golden_state().encode().unwrap(), hex(GOLDEN));
        assert_eq!(SessionState::decode(&hex(GOLDEN)).unwrap(), golden_state());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = hex(GOLDEN);
        // Cutting at a TLV boundary leaves a shorter valid blob; anything
        // else is Truncated. Nothing panics.
        let mut boundaries = vec![HEADER_LEN];
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            at += TLV_HEADER_LEN + usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
            boundaries.push(at);
        }
        for n in 0..bytes.len() {
            let r = SessionState::decode(&bytes[..n]);
            if boundaries.contains(&n) {
                assert!(r.is_ok(), "{n}: {r:?}");
            } else {
                assert_eq!(r, Err(StateError::Truncated), "{n}");
            }
        }
    }

    #[test]
    fn unknown_tlvs_are_skipped() {
        let mut bytes = hex(GOLDEN);
        // Insert an unknown type 999 after the header and one at the end.
        let unknown = hex("03e7 0003 010203");
        bytes.splice(2..2, unknown.iter().copied());
        bytes.extend_from_slice(&hex("ffff 0000"));
        assert_eq!(SessionState::decode(&bytes).unwrap(), golden_state());
    }

    #[test]
    fn bad_versions_and_lengths_are_errors() {
        let mut bytes = hex(GOLDEN);
        bytes[1] = 2;
        assert_eq!(
            SessionState::decode(&bytes),
            Err(StateError::UnsupportedVersion(2))
        );
        // Role 7.
        assert_eq!(
            SessionState::decode(&hex("0001 0001 0001 07")),
            Err(StateError::Malformed { tlv: TLV_ROLE })
        );
        // IPCP of 15 bytes.
        assert_eq!(
            SessionState::decode(&hex("0001 0006 000f 000000000000000000000000000000")),
            Err(StateError::Malformed { tlv: TLV_IPCP })
        );
        // Acct-Session-Id that is not UTF-8.
        assert_eq!(
            SessionState::decode(&hex("0001 0009 0001 ff")),
            Err(StateError::Malformed {
                tlv: TLV_ACCT_SESSION_ID
            })
        );
    }

    #[test]
    fn a_name_too_long_for_a_tlv_is_an_error() {
        let mut s = golden_state();
        s.link.username = Some(vec![b'x'; 70_000]);
        assert_eq!(s.encode(), Err(StateError::TooLong { tlv: TLV_USER_NAME }));
    }

    #[test]
    fn a_link_rebuilt_from_the_decoded_state_has_the_same_state() {
        use crate::ppp::{PppConfig, PppLink};
        use crate::time::Instant;
        use rand_core::SeedableRng;
        let bytes = golden_state().encode().unwrap();
        let state = SessionState::decode(&bytes).unwrap();
        let link = PppLink::from_state(
            Instant::ZERO,
            PppConfig::server(),
            &state.link,
            Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(1)),
        );
        assert_eq!(link.state(), golden_state().link);
        let attributes = state.attributes();
        assert_eq!(
            attributes.framed_address,
            Some(FramedAddress::Static(Ipv4Addr::new(100, 64, 0, 2)))
        );
        let mut again = SessionState::new(state.link.clone());
        again.set_attributes(&attributes);
        assert_eq!(again.timeouts, state.timeouts);
        assert_eq!(again.accounting.class, state.accounting.class);
    }

    fn some_addr() -> impl Strategy<Value = Option<Ipv4Addr>> {
        proptest::option::of((1u32..).prop_map(Ipv4Addr::from))
    }

    fn some_id() -> impl Strategy<Value = Option<[u8; 8]>> {
        proptest::option::of(any::<[u8; 8]>().prop_filter("non-zero", |id| *id != [0; 8]))
    }

    fn auth() -> impl Strategy<Value = Option<AuthMethod>> {
        prop_oneof![
            Just(None),
            Just(Some(AuthMethod::Pap)),
            Just(Some(AuthMethod::ChapMd5))
        ]
    }

    fn lcp() -> impl Strategy<Value = LcpOptions> {
        (
            any::<u16>(),
            auth(),
            any::<u32>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(mru, auth, magic_number, pfc, acfc, accm)| LcpOptions {
                mru,
                auth,
                magic_number,
                pfc,
                acfc,
                accm,
            })
    }

    fn secs() -> impl Strategy<Value = Option<Duration>> {
        proptest::option::of((1u64..=u64::from(u32::MAX)).prop_map(Duration::from_secs))
    }

    prop_compose! {
        fn state()(
            role in prop_oneof![Just(Role::Server), Just(Role::Client)],
            lcp_local in lcp(),
            lcp_peer in lcp(),
            auth_method in auth(),
            username in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            ipcp in proptest::option::of((some_addr(), some_addr(), some_addr(), some_addr())),
            ipv6cp in proptest::option::of((some_id(), some_id())),
            l2tp in (any::<bool>(), proptest::option::of(1u16..), any::<u16>(), any::<u16>()),
            session_id in "[0-9A-F]{0,24}",
            start in any::<u64>(),
            counters in any::<[u64; 4]>(),
            class in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..3),
            timeouts in (secs(), secs(), secs()),
        ) -> SessionState {
            SessionState {
                link: LinkState {
                    role,
                    lcp_local,
                    lcp_peer,
                    auth_method,
                    username,
                    ipcp: ipcp.map(|(local, peer, primary_dns, secondary_dns)| IpcpResult {
                        local, peer, primary_dns, secondary_dns,
                    }),
                    ipv6cp: ipv6cp.map(|(local, peer)| Ipv6cpResult { local, peer }),
                },
                l2tp: L2tpSessionOptions {
                    sequencing: l2tp.0,
                    peer_receive_window: l2tp.1,
                    next_ns: l2tp.2,
                    next_nr: l2tp.3,
                },
                accounting: Accounting {
                    session_id,
                    start_time_unix: start,
                    counters: Counters {
                        input_octets: counters[0],
                        output_octets: counters[1],
                        input_packets: counters[2],
                        output_packets: counters[3],
                    },
                    class,
                },
                timeouts: Timeouts { session: timeouts.0, idle: timeouts.1, interim: timeouts.2 },
            }
        }
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(s in state()) {
            let bytes = s.encode().unwrap();
            prop_assert_eq!(SessionState::decode(&bytes).unwrap(), s);
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SessionState::decode(&bytes);
        }
    }
}
