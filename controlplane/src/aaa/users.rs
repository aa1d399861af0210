//! The local users file: who may log in when no RADIUS server is configured.
//!
//! # Format
//!
//! One user per line: the user name, the password, then optional
//! `key=value` attributes, separated by spaces or tabs. `#` starts a comment
//! (outside quotes). A field with spaces, `#` or `"` in it is written in
//! double quotes, where `\"` is a quote and `\\` a backslash; quotes may also
//! surround just the value of an attribute.
//!
//! ```text
//! # user      password          attributes
//! alice       "correct horse"   address=10.64.0.5 session-timeout=86400 class=gold
//! bob         hunter2           idle-timeout=600 reply-message="Welcome, Bob"
//! carol       s3cret            address=pool
//! ```
//!
//! | key | value | RADIUS equivalent |
//! |---|---|---|
//! | `address` | an IPv4 address, or `pool` (the default) | Framed-IP-Address |
//! | `netmask` | an IPv4 netmask | Framed-IP-Netmask |
//! | `session-timeout` | seconds | Session-Timeout |
//! | `idle-timeout` | seconds | Idle-Timeout |
//! | `interim-interval` | seconds | Acct-Interim-Interval |
//! | `class` | text, may be repeated | Class |
//! | `reply-message` | text | Reply-Message |
//!
//! A user name appears once. Every error names the file, the line and what
//! is wrong with it.
//!
//! Passwords are kept in clear because CHAP needs the secret itself
//! (RFC 1994 §4.1): protect the file like a key (mode 0600).

use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::HashMap;
use std::path::Path;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::{AuthRequest, Credentials, FramedAddress, RejectReason, SessionAttributes};

/// A users file that could not be read: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersFileError {
    /// The file's name as given.
    pub file: String,
    /// The line, counted from 1; 0 when the file could not be read at all.
    pub line: usize,
    /// What is wrong, and what would be accepted.
    pub problem: String,
}

impl fmt::Display for UsersFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.problem)
        }
    }
}

impl std::error::Error for UsersFileError {}

/// One user of the file.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    password: Vec<u8>,
    /// What the session gets when this user is accepted.
    pub attributes: SessionAttributes,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

/// The users of a users file, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    users: HashMap<String, User>,
}

/// The CHAP-MD5 response (RFC 1994 §4.1): MD5 over the Identifier, the
/// secret and the challenge Value.
pub fn chap_md5_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update([id]);
    md5.update(secret);
    md5.update(challenge);
    md5.finalize().into()
}

impl Users {
    /// Reads and parses the users file at `path`.
    pub fn load(path: &Path) -> Result<Self, UsersFileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| UsersFileError {
            file: name.clone(),
            line: 0,
            problem: format!("cannot read the users file: {e}"),
        })?;
        Self::parse(&text, &name)
    }

    /// Parses the text of a users file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, UsersFileError> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let error = |problem: String| UsersFileError {
                file: file.to_owned(),
                line: n + 1,
                problem,
            };
            let fields = split_fields(line).map_err(error)?;
            let mut fields = fields.into_iter();
            let Some(name) = fields.next() else {
                continue;
            };
            let Some(password) = fields.next() else {
                return Err(error(format!(
                    "user {name:?} has no password (expected: user password [key=value ...])"
                )));
            };
            let mut attributes = SessionAttributes::default();
            for field in fields {
                apply_attribute(&mut attributes, &field).map_err(error)?;
            }
            if users.contains_key(&name) {
                return Err(error(format!("user {name:?} appears twice")));
            }
            users.insert(
                name,
                User {
                    password: password.into_bytes(),
                    attributes,
                },
            );
        }
        Ok(Users { users })
    }

    /// How many users the file has.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Checks the credentials of `request`: the session's attributes when
    /// they are right, [`RejectReason::BadCredentials`] when the user is
    /// unknown or the password or CHAP response is wrong. Comparisons take
    /// the same time whatever the bytes, so the answer's timing tells an
    /// attacker nothing about how close a guess was.
    pub fn authenticate(&self, request: &AuthRequest) -> Result<SessionAttributes, RejectReason> {
        let Some(user) = self.users.get(&request.username) else {
            return Err(RejectReason::BadCredentials);
        };
        let good = match &request.credentials {
            Credentials::Pap { password } => bool::from(password.ct_eq(&user.password)),
            Credentials::Chap {
                id,
                challenge,
                response,
            } => {
                let expected = chap_md5_response(*id, &user.password, challenge);
                bool::from(expected.ct_eq(response))
            }
        };
        if good {
            Ok(user.attributes.clone())
        } else {
            Err(RejectReason::BadCredentials)
        }
    }
}

/// Splits a line into fields: whitespace separates, `"` quotes, `\` escapes
/// inside quotes, `#` outside quotes ends the line.
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field: Option<String> = None;
    let mut chars = line.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            let f = field.get_or_insert_with(String::new);
            match c {
                '"' => quoted = false,
                '\\' => match chars.next() {
                    Some(e @ ('"' | '\\')) => f.push(e),
                    Some(e) => {
                        return Err(format!(
                            "unknown escape \\{e} in quotes (only \\\" and \\\\ are allowed)"
                        ))
                    }
                    None => return Err("the line ends inside quotes".to_owned()),
                },
                _ => f.push(c),
            }
            continue;
        }
        match c {
            '#' => break,
            '"' => {
                quoted = true;
                field.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() => {
                if let Some(f) = field.take() {
                    fields.push(f);
                }
            }
            _ => field.get_or_insert_with(String::new).push(c),
        }
    }
    if quoted {
        return Err("the line ends inside quotes (a closing \" is missing)".to_owned());
    }
    fields.extend(field);
    Ok(fields)
}

const KEYS: &str =
    "address, netmask, session-timeout, idle-timeout, interim-interval, class, reply-message";

fn apply_attribute(attributes: &mut SessionAttributes, field: &str) -> Result<(), String> {
    let Some((key, value)) = field.split_once('=') else {
        return Err(format!("{field:?} is not key=value (keys: {KEYS})"));
    };
    let ipv4 = |what: &str| {
        value.parse::<Ipv4Addr>().map_err(|_| {
            format!("{key}={value:?}: {what} must be an IPv4 address such as 10.64.0.5")
        })
    };
    let seconds = || {
        value
            .parse::<u32>()
            .map(|s| Duration::from_secs(u64::from(s)))
            .map_err(|_| format!("{key}={value:?}: expected a number of seconds (0 to 4294967295)"))
    };
    match key {
        "address" => {
            attributes.framed_address = Some(if value == "pool" {
                FramedAddress::FromPool
            } else {
                FramedAddress::Static(ipv4("the address (or pool)")?)
            });
        }
        "netmask" => attributes.framed_netmask = Some(ipv4("the netmask")?),
        "session-timeout" => attributes.session_timeout = Some(seconds()?),
        "idle-timeout" => attributes.idle_timeout = Some(seconds()?),
        "interim-interval" => attributes.interim_interval = Some(seconds()?),
        "class" => attributes.class.push(value.as_bytes().to_vec()),
        "reply-message" => attributes.reply_message = Some(value.to_owned()),
        _ => return Err(format!("unknown key {key:?} (keys: {KEYS})")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
# user      password          attributes
alice       "correct horse"   address=10.64.0.5 session-timeout=86400 class=gold
bob         hunter2           idle-timeout=600 reply-message="Welcome, Bob"   # trailing comment
carol       s3cret            address=pool class=a class="b c" netmask=255.255.255.255 interim-interval=300
"dave q"    "a \"b\" \\ #c"
"#;

    fn pap(user: &str, password: &str) -> AuthRequest {
        AuthRequest {
            username: user.to_owned(),
            credentials: Credentials::Pap {
                password: password.as_bytes().to_vec(),
            },
            calling_station_id: None,
            nas_port: None,
        }
    }

    fn chap(user: &str, secret: &str) -> AuthRequest {
        let challenge = b"0123456789abcdef".to_vec();
        AuthRequest {
            username: user.to_owned(),
            credentials: Credentials::Chap {
                id: 7,
                response: chap_md5_response(7, secret.as_bytes(), &challenge),
                challenge,
            },
            calling_station_id: None,
            nas_port: None,
        }
    }

    #[test]
    fn parses_the_documented_example() {
        let users = Users::parse(EXAMPLE, "users").unwrap();
        assert_eq!(users.len(), 4);
        let alice = &users.get("alice").unwrap().attributes;
        assert_eq!(
            alice.framed_address,
            Some(FramedAddress::Static(Ipv4Addr::new(10, 64, 0, 5)))
        );
        assert_eq!(alice.session_timeout, Some(Duration::from_secs(86400)));
        assert_eq!(alice.class, [b"gold".to_vec()]);
        let bob = &users.get("bob").unwrap().attributes;
        assert_eq!(bob.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(bob.reply_message.as_deref(), Some("Welcome, Bob"));
        assert_eq!(bob.framed_address, None);
        let carol = &users.get("carol").unwrap().attributes;
        assert_eq!(carol.framed_address, Some(FramedAddress::FromPool));
        assert_eq!(carol.class, [b"a".to_vec(), b"b c".to_vec()]);
        assert_eq!(carol.framed_netmask, Some(Ipv4Addr::BROADCAST));
        assert_eq!(carol.interim_interval, Some(Duration::from_secs(300)));
        assert_eq!(users.get("dave q").unwrap().password, br#"a "b" \ #c"#);
    }

    #[test]
    fn pap_compares_the_password() {
        let users = Users::parse(EXAMPLE, "users").unwrap();
        let attrs = users.authenticate(&pap("alice", "correct horse")).unwrap();
        assert_eq!(attrs.class, [b"gold".to_vec()]);
        assert_eq!(
            users.authenticate(&pap("alice", "correct horsE")),
            Err(RejectReason::BadCredentials)
        );
        assert_eq!(
            users.authenticate(&pap("alice", "correct horse ")),
            Err(RejectReason::BadCredentials)
        );
        assert_eq!(
            users.authenticate(&pap("mallory", "correct horse")),
            Err(RejectReason::BadCredentials)
        );
        users.authenticate(&pap("dave q", r#"a "b" \ #c"#)).unwrap();
    }

    #[test]
    fn chap_checks_the_md5_response() {
        let users = Users::parse(EXAMPLE, "users").unwrap();
        users.authenticate(&chap("bob", "hunter2")).unwrap();
        assert_eq!(
            users.authenticate(&chap("bob", "hunter3")),
            Err(RejectReason::BadCredentials)
        );
        let mut wrong_id = chap("bob", "hunter2");
        if let Credentials::Chap { id, .. } = &mut wrong_id.credentials {
            *id = 8;
        }
        assert_eq!(
            users.authenticate(&wrong_id),
            Err(RejectReason::BadCredentials)
        );
    }

    /// RFC 1994 gives no test vector; this one is MD5 over 0x01, "secret",
    /// "challenge", computed independently (`printf '\x01secretchallenge' |
    /// md5sum`).
    #[test]
    fn chap_md5_matches_an_independent_computation() {
        let r = chap_md5_response(1, b"secret", b"challenge");
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "46e47770030e2b4e26a0db72a7efec00");
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_problem() {
        for (text, line, wanted) in [
            ("alice\n", 1, "has no password"),
            (
                "\n\nalice pw address=10.0.0.300\n",
                3,
                "must be an IPv4 address",
            ),
            ("alice pw session-timeout=-1", 1, "number of seconds"),
            ("alice pw colour=blue", 1, "unknown key \"colour\""),
            ("alice pw justaword", 1, "is not key=value"),
            ("alice \"pw", 1, "inside quotes"),
            ("alice \"p\\w\"", 1, "unknown escape"),
            ("alice a\nbob b\nalice c\n", 3, "appears twice"),
        ] {
            let err = Users::parse(text, "/etc/lnsd/users").unwrap_err();
            assert_eq!(
                (err.file.as_str(), err.line),
                ("/etc/lnsd/users", line),
                "{text:?}"
            );
            assert!(err.problem.contains(wanted), "{text:?}: {err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("/etc/lnsd/users:{line}: ")),
                "{err}"
            );
        }
        let err = Users::load(Path::new("/nonexistent/users")).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let users = Users::parse("# nothing\n\n   \t\n  # indented\n", "u").unwrap();
        assert!(users.is_empty());
    }
}
