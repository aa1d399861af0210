//! The daemons' local control socket and its protocol, and the client side
//! `l2tpctl` uses.
//!
//! # Protocol
//!
//! JSON lines over a Unix stream socket: the client writes one request per
//! line, the daemon answers each with one line, in order.
//!
//! ```text
//! → {"command":"show","what":"sessions"}
//! ← {"ok":true,"data":[{"id":3,"tunnel":1,"user":"sub0",...}]}
//! → {"command":"clear","what":"session","id":3}
//! ← {"ok":true,"data":"session 3 cleared"}
//! → {"command":"show","what":"routes"}
//! ← {"ok":false,"error":"bad request: unknown variant `routes`, ..."}
//! ```
//!
//! Requests ([`Request`]): `show` `tunnels|sessions|stats`, `clear`
//! `session|tunnel` with an `id`, and `ha` with the words of the command
//! (`args`, read by [`HaCommand::parse`]):
//!
//! ```text
//! → {"command":"ha","args":["status"]}
//! ← {"ok":true,"data":{"role":"lns","peers":[...],...}}
//! → {"command":"ha","args":["drain"]}
//! → {"command":"ha","args":["switchover","all"]}
//! → {"command":"ha","args":["switchover","new"]}
//! → {"command":"ha","args":["switchover","3","12"]}
//! → {"command":"ha","args":["failback"]}
//! ```
//!
//! `status` is answered by both daemons, with whatever JSON object the
//! daemon builds (its HA state; `render` prints its scalar fields as
//! `key: value` lines and its arrays of objects as tables); the others are
//! the LNS's (a daemon refuses what it does not do, saying so).
//!
//! # The server
//!
//! [`ControlServer`] never blocks: the daemon calls [`ControlServer::poll`]
//! from its loop with a handler `FnMut(Request) -> Reply`. Clients are
//! bounded in number ([`MAX_CLIENTS`]), in request size
//! ([`MAX_REQUEST`]), in pending output ([`MAX_PENDING_OUTPUT`]) and in
//! idle time ([`CLIENT_IDLE`]); a client that breaks a bound is dropped, so a
//! misbehaving or stuck client costs the daemon a few syscalls per poll and
//! nothing more.

use std::fmt;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::driver::poll_socket;

/// Clients served at once; more are accepted and closed at once.
pub const MAX_CLIENTS: usize = 16;
/// The longest request line, in bytes.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Reply bytes a client may leave unread before it is dropped (a `show
/// sessions` of 100,000 sessions fits).
pub const MAX_PENDING_OUTPUT: usize = 64 * 1024 * 1024;
/// A client that neither sends nor reads for this long is dropped.
pub const CLIENT_IDLE: Duration = Duration::from_secs(30);
/// Requests served per client per poll, so one client cannot take the
/// whole poll.
const REQUESTS_PER_POLL: usize = 8;

/// What to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Show {
    /// One row per tunnel.
    Tunnels,
    /// One row per session.
    Sessions,
    /// The daemon's counters, one flat object.
    Stats,
}

/// What to clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clear {
    /// A session (CDN, accounting Stop with Admin-Reset).
    Session,
    /// A tunnel and its sessions (StopCCN).
    Tunnel,
}

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// `{"command":"show","what":"tunnels"}`.
    Show {
        /// What.
        what: Show,
    },
    /// `{"command":"clear","what":"session","id":3}`.
    Clear {
        /// What.
        what: Clear,
        /// The id `show` lists.
        id: u64,
    },
    /// `{"command":"ha","args":["status"]}`: the HA commands, as the words
    /// after `ha` ([`HaCommand::parse`] reads them; words keep the request
    /// open to commands a daemon adds without a new request type).
    Ha {
        /// The words after `ha`.
        #[serde(default)]
        args: Vec<String>,
    },
}

impl Request {
    /// The request for an HA command.
    pub fn ha(command: &HaCommand) -> Request {
        Request::Ha {
            args: command.to_string().split(' ').map(str::to_owned).collect(),
        }
    }
}

/// Which sessions an `ha switchover` moves (the Switchover-Type of the
/// STPLRQ the LNS sends its LACs, docs/ha-protocol.md §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwitchoverKind {
    /// Every session, and new calls go to the peer too.
    All,
    /// New calls only: the sessions up stay.
    New,
    /// The sessions listed.
    Listed,
}

/// An `ha` request, as read from its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaCommand {
    /// The HA state: peers, offload, load, switchovers (both daemons).
    Status,
    /// Ask every LAC to move every session to the peers and to send new
    /// calls there (maintenance).
    Drain,
    /// Ask the LACs to move sessions to the peers.
    Switchover {
        /// Which.
        kind: SwitchoverKind,
        /// With `listed`: the sessions, by the id `show sessions` lists.
        sessions: Vec<u64>,
    },
    /// Give adopted sessions back to their primary LNS, or stop steering
    /// new calls away from this one.
    Failback,
}

impl HaCommand {
    /// Reads the words after `l2tpctl ha`: `status`, `drain`, `switchover
    /// all|new|SESSION...`, `failback`.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<HaCommand, String> {
        const USAGE: &str = "give status, drain, switchover all|new|SESSION..., or failback";
        let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
        match words.as_slice() {
            ["status"] => Ok(HaCommand::Status),
            ["drain"] => Ok(HaCommand::Drain),
            ["failback"] => Ok(HaCommand::Failback),
            ["switchover", "all"] => Ok(HaCommand::Switchover {
                kind: SwitchoverKind::All,
                sessions: Vec::new(),
            }),
            ["switchover", "new"] => Ok(HaCommand::Switchover {
                kind: SwitchoverKind::New,
                sessions: Vec::new(),
            }),
            ["switchover"] => Err(
                "ha switchover: say what moves: all, new, or session ids (see show sessions)"
                    .to_owned(),
            ),
            ["switchover", ids @ ..] => {
                let sessions = ids
                    .iter()
                    .map(|id| {
                        id.parse::<u64>().map_err(|_| {
                            format!(
                                "ha switchover: {id:?} is not a session id \
                                 (give all, new, or the ids show sessions lists)"
                            )
                        })
                    })
                    .collect::<Result<Vec<u64>, String>>()?;
                Ok(HaCommand::Switchover {
                    kind: SwitchoverKind::Listed,
                    sessions,
                })
            }
            [] => Err(format!("ha: {USAGE}")),
            other => Err(format!("ha {}: {USAGE}", other.join(" "))),
        }
    }
}

impl fmt::Display for HaCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaCommand::Status => f.write_str("status"),
            HaCommand::Drain => f.write_str("drain"),
            HaCommand::Failback => f.write_str("failback"),
            HaCommand::Switchover {
                kind: SwitchoverKind::All,
                ..
            } => f.write_str("switchover all"),
            HaCommand::Switchover {
                kind: SwitchoverKind::New,
                ..
            } => f.write_str("switchover new"),
            HaCommand::Switchover { sessions, .. } => {
                f.write_str("switchover")?;
                for s in sessions {
                    write!(f, " {s}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Show { what } => write!(f, "show {what:?}"),
            Request::Clear { what, id } => write!(f, "clear {what:?} {id}"),
            Request::Ha { args } => write!(f, "ha {}", args.join(" ")),
        }
    }
}

/// The answer to one request: data (any JSON) or an error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply(Result<String, String>);

impl Reply {
    /// Success with `data`, serialized now so its field order stays that of
    /// the struct (the table's column order).
    pub fn ok<T: Serialize + ?Sized>(data: &T) -> Reply {
        match serde_json::to_string(data) {
            Ok(json) => Reply(Ok(json)),
            Err(e) => Reply(Err(format!("cannot encode the reply: {e}"))),
        }
    }

    /// Failure, with what went wrong.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply(Err(message.into()))
    }

    /// Whether it is a success.
    pub fn is_ok(&self) -> bool {
        self.0.is_ok()
    }

    /// The data as JSON text, or the error.
    pub fn result(&self) -> Result<&str, &str> {
        match &self.0 {
            Ok(data) => Ok(data),
            Err(e) => Err(e),
        }
    }

    /// The line sent to the client (without the newline).
    pub fn to_line(&self) -> String {
        match &self.0 {
            Ok(data) => format!("{{\"ok\":true,\"data\":{data}}}"),
            Err(e) => {
                let e = serde_json::to_string(e).unwrap_or_else(|_| "\"?\"".to_owned());
                format!("{{\"ok\":false,\"error\":{e}}}")
            }
        }
    }

    /// Parses a reply line (keeping the order of the data's fields).
    pub fn from_line(line: &str) -> Result<Reply, String> {
        let value: Json =
            serde_json::from_str(line).map_err(|e| format!("not a reply line: {e}"))?;
        let Json::Object(fields) = value else {
            return Err("not a reply line: not a JSON object".to_owned());
        };
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        match get("ok") {
            Some(Json::Bool(true)) => {
                let data = get("data").unwrap_or(&Json::Null);
                Ok(Reply::ok(data))
            }
            Some(Json::Bool(false)) => match get("error") {
                Some(Json::String(e)) => Ok(Reply::error(e.clone())),
                _ => Ok(Reply::error("(no error message)")),
            },
            _ => Err("not a reply line: no \"ok\"".to_owned()),
        }
    }
}

// --- JSON that keeps the order of object fields ---------------------------

/// A JSON value whose objects keep their fields in the order they came
/// (serde_json's own `Value` sorts them), so a table's columns are in the
/// order the daemon wrote them.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, fields in order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// How a value reads in a table cell or after `key: `.
    pub fn to_cell(&self) -> String {
        match self {
            Json::Null => "-".to_owned(),
            Json::Bool(b) => b.to_string(),
            Json::Number(n) => n.to_string(),
            Json::String(s) => s.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Json, E> {
                Ok(Json::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    fields.push((k, v));
                }
                Ok(Json::Object(fields))
            }
        }
        d.deserialize_any(JsonVisitor)
    }
}

/// How `l2tpctl` prints a reply's data without `--json`: an array of flat
/// objects as an aligned table (columns in the objects' order), an object
/// as `key: value` lines followed by its arrays of objects as tables under
/// their key (`ha status`), anything else as it is.
pub fn render(data: &str) -> Result<String, String> {
    let value: Json = serde_json::from_str(data).map_err(|e| format!("bad data: {e}"))?;
    Ok(match &value {
        Json::Array(rows) => render_table(rows),
        Json::Object(fields) => {
            let is_table = |v: &Json| {
                matches!(v, Json::Array(rows) if !rows.is_empty()
                    && rows.iter().all(|r| matches!(r, Json::Object(_))))
            };
            let width = fields
                .iter()
                .filter(|(_, v)| !is_table(v))
                .map(|(k, _)| k.len())
                .max()
                .unwrap_or(0);
            let mut out = String::new();
            for (k, v) in fields.iter().filter(|(_, v)| !is_table(v)) {
                let key = format!("{k}:");
                out.push_str(&format!("{key:<w$} {}\n", v.to_cell(), w = width + 1));
            }
            for (k, v) in fields.iter().filter(|(_, v)| is_table(v)) {
                if let Json::Array(rows) = v {
                    out.push_str(&format!("\n{k}:\n"));
                    for line in render_table(rows).lines() {
                        out.push_str(&format!("  {line}\n"));
                    }
                }
            }
            out
        }
        Json::String(s) => format!("{s}\n"),
        other => format!("{}\n", other.to_cell()),
    })
}

fn render_table(rows: &[Json]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    // Columns: every key, in the order first seen.
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        if let Json::Object(fields) = row {
            for (k, _) in fields {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| match row {
            Json::Object(fields) => columns
                .iter()
                .map(|c| {
                    fields
                        .iter()
                        .find(|(k, _)| k == c)
                        .map_or("-".to_owned(), |(_, v)| v.to_cell())
                })
                .collect(),
            other => vec![other.to_cell()],
        })
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |values: &[String]| {
        let mut out = String::new();
        for (i, v) in values.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == values.len() {
                out.push_str(v);
            } else {
                out.push_str(&format!("{v:<w$}  "));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let mut out = line(&header);
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

// --- the server -------------------------------------------------------------

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    last_activity: Instant,
    /// Close once the output is written (a request was too long).
    closing: bool,
}

/// Counters of a control server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections refused because [`MAX_CLIENTS`] were open.
    pub refused: u64,
    /// Requests answered (errors included).
    pub requests: u64,
    /// Clients dropped for breaking a bound (request too long, output
    /// unread, idle).
    pub dropped: u64,
}

/// The control socket of a daemon: see the [module documentation](self).
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
    stats: ServerStats,
}

impl fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("clients", &self.clients.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl ControlServer {
    /// Listens on `path` (mode 0600: the socket can clear sessions). A
    /// socket left there by a daemon that died is replaced; one a live
    /// daemon answers on is not (an error says so).
    pub fn bind(path: &Path) -> io::Result<Self> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    ErrorKind::AddrInUse,
                    format!("another daemon answers on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            clients: Vec::new(),
            stats: ServerStats::default(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Clients connected now.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Accepts new clients, answers every complete request with `handler`
    /// and writes what the clients will take. Never blocks.
    pub fn poll(&mut self, mut handler: impl FnMut(Request) -> Reply) {
        self.accept();
        let now = Instant::now();
        let mut i = 0;
        while i < self.clients.len() {
            let keep = match self.clients.get_mut(i) {
                Some(client) => serve(client, now, &mut handler, &mut self.stats),
                None => false,
            };
            if keep {
                i += 1;
            } else {
                self.clients.swap_remove(i);
            }
        }
    }

    fn accept(&mut self) {
        // accept(2) builds a socket and its file before it finds the queue
        // empty, and takes them down again: the daemons' loops, which poll
        // every turn (every 50 µs while the workers are being programmed),
        // spent about a third of their time there. A poll(2) that does not
        // wait says first whether anyone is in the queue.
        if poll_socket(&self.listener, PollFlags::IN, Duration::ZERO).is_ok_and(|ready| !ready) {
            return;
        }
        // Bounded: at most a few accepts per poll.
        for _ in 0..MAX_CLIENTS {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                        self.stats.refused += 1;
                        let _ = stream.set_nonblocking(true);
                        let _ = (&stream).write_all(
                            format!("{}\n", Reply::error("too many control clients").to_line())
                                .as_bytes(),
                        );
                        continue;
                    }
                    self.stats.accepted += 1;
                    self.clients.push(Client {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        written: 0,
                        last_activity: Instant::now(),
                        closing: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    break;
                }
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One poll of one client; false when it is to be dropped.
fn serve(
    client: &mut Client,
    now: Instant,
    handler: &mut impl FnMut(Request) -> Reply,
    stats: &mut ServerStats,
) -> bool {
    let mut eof = false;
    if !client.closing {
        let mut buf = [0u8; 4096];
        // Read what is there, up to one request's worth beyond the limit.
        while client.input.len() <= MAX_REQUEST {
            match client.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    client.last_activity = now;
                    client
                        .input
                        .extend_from_slice(buf.get(..n).unwrap_or_default());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        if eof && !client.input.is_empty() && client.input.last() != Some(&b'\n') {
            // A last request without its newline (`printf ... | nc -U`).
            client.input.push(b'\n');
        }
        let mut served = 0;
        while served < REQUESTS_PER_POLL {
            let Some(end) = client.input.iter().position(|b| *b == b'\n') else {
                break;
            };
            let line: Vec<u8> = client.input.drain(..=end).collect();
            served += 1;
            let text = String::from_utf8_lossy(line.get(..end).unwrap_or_default());
            if text.trim().is_empty() {
                continue;
            }
            stats.requests += 1;
            let reply = match serde_json::from_str::<Request>(&text) {
                Ok(request) => handler(request),
                Err(e) => Reply::error(format!("bad request: {e}")),
            };
            client.output.extend_from_slice(reply.to_line().as_bytes());
            client.output.push(b'\n');
        }
        if client.input.len() > MAX_REQUEST {
            stats.requests += 1;
            let reply = Reply::error(format!("request longer than {MAX_REQUEST} bytes"));
            client.output.extend_from_slice(reply.to_line().as_bytes());
            client.output.push(b'\n');
            client.input.clear();
            client.closing = true;
            stats.dropped += 1;
        }
    }
    // Write what the client takes now.
    while client.written < client.output.len() {
        let pending = client.output.get(client.written..).unwrap_or_default();
        match client.stream.write(pending) {
            Ok(0) => return false,
            Ok(n) => {
                client.written += n;
                client.last_activity = now;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    if client.written == client.output.len() {
        client.output.clear();
        client.written = 0;
        if client.closing || eof {
            return false;
        }
    } else if client.output.len() - client.written > MAX_PENDING_OUTPUT {
        stats.dropped += 1;
        return false;
    }
    if now.duration_since(client.last_activity) > CLIENT_IDLE {
        stats.dropped += 1;
        return false;
    }
    true
}

// --- the client -------------------------------------------------------------

/// Sends one request to the daemon at `socket` and waits up to `timeout`
/// for its reply.
pub fn request(socket: &Path, request: &Request, timeout: Duration) -> io::Result<Reply> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot connect to {}: {e} (is the daemon running?)",
                socket.display()
            ),
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(request).map_err(io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    if answer.is_empty() {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        ));
    }
    Reply::from_line(answer.trim_end()).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests;
