//! Authentication, authorization and accounting for the LNS, and the
//! subscriber address pools.
//!
//! The PPP layer asks; `aaa` answers later. When a subscriber sends its PAP
//! password or CHAP response, the LNS node turns the PPP event into an
//! [`AuthRequest`] and calls `start_auth(now, request)`, which returns an
//! [`AuthHandle`] at once. The verdict comes back as an [`AuthResult`] from
//! `poll_event` — at once from the [local users file](users), after a round
//! trip (or several, with retransmission and failover) from
//! [RADIUS](radius). Nothing blocks a state machine.
//!
//! - [`users`]: the local users file, the embedded default when no RADIUS
//!   server is configured; its format is documented there.
//! - [`radius`]: the RADIUS codec (RFC 2865, 2866, 2869, 3579) and a sans-IO
//!   client for authentication and accounting with retransmission and
//!   failover between servers.
//! - [`pool`]: the address pools IPCP assigns from.

use core::net::Ipv4Addr;
use core::time::Duration;

pub mod pool;
pub mod radius;
pub mod users;

/// What the subscriber proved its identity with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// PAP (RFC 1334 §2.2.1): the password in clear.
    Pap {
        /// The Passwd field of the Authenticate-Request.
        password: Vec<u8>,
    },
    /// CHAP with MD5 (RFC 1994 §4.1): the answer to our challenge.
    Chap {
        /// The Identifier of our Challenge (and of their Response).
        id: u8,
        /// The Value we sent in the Challenge.
        challenge: Vec<u8>,
        /// The Value of their Response: MD5(id || secret || challenge).
        response: [u8; 16],
    },
}

impl core::fmt::Debug for Credentials {
    /// Never prints a password: these end up in logs.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Credentials::Pap { password } => f
                .debug_struct("Pap")
                .field("password", &format_args!("<{} bytes>", password.len()))
                .finish(),
            Credentials::Chap { id, challenge, .. } => f
                .debug_struct("Chap")
                .field("id", id)
                .field("challenge_len", &challenge.len())
                .finish_non_exhaustive(),
        }
    }
}

/// One subscriber asking to be let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The Peer-ID of PAP or the Name of the CHAP Response.
    pub username: String,
    /// The password or the CHAP response.
    pub credentials: Credentials,
    /// Where the subscriber is: sent as Calling-Station-Id (RFC 2865
    /// §5.31), for example the LAC's Calling Number AVP.
    pub calling_station_id: Option<String>,
    /// The session's number on this LNS: sent as NAS-Port (RFC 2865 §5.5).
    pub nas_port: Option<u32>,
}

/// Names one authentication in flight, to match its [`AuthResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuthHandle(pub u64);

/// The address the subscriber is to have (RFC 2865 §5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramedAddress {
    /// This address.
    Static(Ipv4Addr),
    /// Any address from the LNS's pool (Framed-IP-Address 255.255.255.254).
    FromPool,
    /// The subscriber may ask for one (Framed-IP-Address 255.255.255.255);
    /// the LNS still checks it against its pool.
    PeerChooses,
}

impl FramedAddress {
    /// The meaning of a Framed-IP-Address value (RFC 2865 §5.8).
    pub fn from_attribute(address: Ipv4Addr) -> Self {
        match u32::from(address) {
            0xFFFF_FFFE => FramedAddress::FromPool,
            0xFFFF_FFFF => FramedAddress::PeerChooses,
            _ => FramedAddress::Static(address),
        }
    }
}

/// What the authenticator says about the session it accepted (and, for a
/// rejection, only [`reply_message`](Self::reply_message)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionAttributes {
    /// Framed-IP-Address; `None` means "from the pool" too.
    pub framed_address: Option<FramedAddress>,
    /// Framed-IP-Netmask (RFC 2865 §5.9).
    pub framed_netmask: Option<Ipv4Addr>,
    /// Session-Timeout (RFC 2865 §5.27): the session ends after this long.
    pub session_timeout: Option<Duration>,
    /// Idle-Timeout (RFC 2865 §5.28): the session ends after this long
    /// without traffic.
    pub idle_timeout: Option<Duration>,
    /// Acct-Interim-Interval (RFC 2869 §5.16): overrides the configured
    /// interval between Interim-Updates for this session.
    pub interim_interval: Option<Duration>,
    /// Class (RFC 2865 §5.25), each to be echoed unchanged in accounting.
    pub class: Vec<Vec<u8>>,
    /// Reply-Message (RFC 2865 §5.18): text for the subscriber (PAP/CHAP
    /// Success or Failure message).
    pub reply_message: Option<String>,
}

/// Why an authentication was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The user is unknown or the password or response is wrong.
    BadCredentials,
    /// No RADIUS server answered, after every retransmission and failover.
    NoServer,
    /// Too many requests were outstanding; this one was not sent.
    Overloaded,
}

/// The verdict on one [`AuthRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResult {
    /// The request it answers.
    pub handle: AuthHandle,
    /// Whether the subscriber is let in.
    pub accept: bool,
    /// Why not, when refused.
    pub reject_reason: Option<RejectReason>,
    /// The session's attributes when accepted; only a Reply-Message when
    /// refused.
    pub attributes: SessionAttributes,
}

impl AuthResult {
    /// An acceptance with these attributes.
    pub fn accepted(handle: AuthHandle, attributes: SessionAttributes) -> Self {
        AuthResult {
            handle,
            accept: true,
            reject_reason: None,
            attributes,
        }
    }

    /// A refusal, with a message for the subscriber if there is one.
    pub fn rejected(
        handle: AuthHandle,
        reason: RejectReason,
        reply_message: Option<String>,
    ) -> Self {
        AuthResult {
            handle,
            accept: false,
            reject_reason: Some(reason),
            attributes: SessionAttributes {
                reply_message,
                ..SessionAttributes::default()
            },
        }
    }
}

/// Who answers the LNS's authentication requests: the local users file
/// (the default) or RADIUS. Both answer through
/// [`poll_event`](Authenticator::poll_event), so the node treats them alike;
/// with RADIUS the node also drives the client's I/O
/// (`handle_datagram`, `poll_transmit`, timers) and accounting.
#[derive(Debug)]
pub enum Authenticator {
    /// The local users file: verdicts are ready at once.
    Local {
        /// The users.
        users: users::Users,
        /// Verdicts not yet polled.
        results: std::collections::VecDeque<AuthResult>,
        /// The next handle.
        next: u64,
    },
    /// RADIUS servers. Boxed: the client is large, and there is one
    /// authenticator per node.
    Radius(Box<radius::Client>),
}

impl Authenticator {
    /// Authenticates from a users file.
    pub fn local(users: users::Users) -> Self {
        Authenticator::Local {
            users,
            results: std::collections::VecDeque::new(),
            next: 0,
        }
    }

    /// Starts checking `request`; the verdict comes from
    /// [`poll_event`](Self::poll_event) with the returned handle.
    pub fn start_auth(&mut self, now: crate::time::Instant, request: AuthRequest) -> AuthHandle {
        match self {
            Authenticator::Local {
                users,
                results,
                next,
            } => {
                let handle = AuthHandle(*next);
                *next += 1;
                results.push_back(match users.authenticate(&request) {
                    Ok(attributes) => AuthResult::accepted(handle, attributes),
                    Err(reason) => AuthResult::rejected(handle, reason, None),
                });
                handle
            }
            Authenticator::Radius(client) => client.start_auth(now, request),
        }
    }

    /// The next event: a verdict ([`radius::Event::Auth`]) from either;
    /// accounting acknowledgements and servers going down from RADIUS.
    pub fn poll_event(&mut self) -> Option<radius::Event> {
        match self {
            Authenticator::Local { results, .. } => results.pop_front().map(radius::Event::Auth),
            Authenticator::Radius(client) => client.poll_event(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_authenticator_answers_through_events() {
        let users = users::Users::parse("alice pw address=10.0.0.7\n", "users").unwrap();
        let mut auth = Authenticator::local(users);
        let now = crate::time::Instant::ZERO;
        let request = |password: &str| AuthRequest {
            username: "alice".to_owned(),
            credentials: Credentials::Pap {
                password: password.as_bytes().to_vec(),
            },
            calling_station_id: None,
            nas_port: None,
        };
        let good = auth.start_auth(now, request("pw"));
        let bad = auth.start_auth(now, request("wrong"));
        let Some(radius::Event::Auth(r)) = auth.poll_event() else {
            panic!("no verdict");
        };
        assert_eq!((r.handle, r.accept), (good, true));
        assert_eq!(
            r.attributes.framed_address,
            Some(FramedAddress::Static(Ipv4Addr::new(10, 0, 0, 7)))
        );
        let Some(radius::Event::Auth(r)) = auth.poll_event() else {
            panic!("no verdict");
        };
        assert_eq!(
            (r.handle, r.accept, r.reject_reason),
            (bad, false, Some(RejectReason::BadCredentials))
        );
        assert!(auth.poll_event().is_none());
        assert_eq!(
            FramedAddress::from_attribute(Ipv4Addr::new(255, 255, 255, 254)),
            FramedAddress::FromPool
        );
    }
}
