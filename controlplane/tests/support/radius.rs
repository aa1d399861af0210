//! A private FreeRADIUS for a test: on the machine's loopback (no root
//! needed: our RADIUS client and LNS node talk to it), or on the loopback of
//! a [`Lab`] namespace, beside a peer that authenticates through RADIUS
//! (l2tpns does so only).
//!
//! The configuration is `deploy/radius/` (the AAA test's minimal server:
//! PAP and CHAP from a users file, accounting into one `detail` file),
//! optionally with an overlay laid over it (`deploy/interop/radius/`: the
//! RADIUS client entry of the peer and the PPP users of the interop tests).
//! It is rendered into a scratch directory of the test's own, so nothing is
//! read from or written to `/etc/freeradius` or `/var`.
//!
//! Where it listens depends on the [`Place`]: on the machine's loopback, two
//! UDP ports that were free a moment ago (tests run side by side); in a lab
//! namespace, the standard ports 1812 (authentication) and 1813
//! (accounting): the namespace is the test's own, and l2tpns sends
//! accounting to its authentication port + 1 anyway.
//!
//! Learned by hand (FreeRADIUS 3.2.1, Debian 12):
//! - `freeradius -X -d DIR` stays in the foreground, logs to stdout and says
//!   "Ready to process requests" once its sockets are bound.
//! - The `detail` module writes one record per Accounting-Request: a date
//!   line, then `\tName = value` lines, then a blank line; string values are
//!   quoted.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::netns::{error, require_program, tail, Lab, Netns, ProcessId};

/// The RADIUS authentication port (RFC 2865 §3).
pub(crate) const AUTH_PORT: u16 = 1812;
/// The accounting port (RFC 2866 §3): the authentication port + 1, which is
/// where l2tpns sends accounting.
pub(crate) const ACCT_PORT: u16 = 1813;

/// The overlay of the interop tests: l2tpns's client entry and their users.
pub(crate) const INTEROP_OVERLAY: &str = "deploy/interop/radius";

/// A PPP user of `deploy/interop/radius/authorize`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct User {
    pub(crate) name: &'static str,
    pub(crate) password: &'static str,
}

/// Authenticates with PAP in the tests.
pub(crate) const PAP_USER: User = User {
    name: "pap-subscriber",
    password: "pap-password",
};
/// Authenticates with CHAP-MD5 in the tests.
pub(crate) const CHAP_USER: User = User {
    name: "chap-subscriber",
    password: "chap-password",
};
/// Every subscriber of a batch (the LNS must allow duplicate users).
pub(crate) const BATCH_USER: User = User {
    name: "batch-subscriber",
    password: "batch-password",
};

/// How long FreeRADIUS may take to read its configuration and bind.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// How often the waits read the detail file or the output.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// What FreeRADIUS says once its sockets are bound.
const READY: &str = "Ready to process requests";

/// Where FreeRADIUS runs.
pub(crate) enum Place<'a> {
    /// The machine's loopback, on free ports, from a temporary directory;
    /// needs no root. Killed and removed when the [`FreeRadius`] drops.
    Loopback,
    /// The loopback of a lab namespace, on [`AUTH_PORT`] and [`ACCT_PORT`],
    /// from the lab's scratch directory; the lab owns the process.
    Namespace(&'a mut Lab, &'a Netns),
}

/// Who owns the running process.
#[derive(Debug)]
enum Process {
    /// Ours: killed, and its directory removed, on drop.
    Child { child: Child, log: PathBuf },
    /// The lab's, stopped by [`FreeRadius::stop`] or the lab's drop.
    Lab(ProcessId),
}

/// A running FreeRADIUS.
#[derive(Debug)]
pub(crate) struct FreeRadius {
    process: Process,
    dir: PathBuf,
    auth: SocketAddr,
    acct: SocketAddr,
}

/// One accounting record of the detail file: attribute name to value
/// (quotes removed).
pub(crate) type Record = HashMap<String, String>;

impl FreeRadius {
    /// Renders the configuration (with `overlay`, a directory relative to
    /// the repository, laid over it) with `secret` as the client's shared
    /// secret, starts FreeRADIUS at `place`, and returns once it serves
    /// requests.
    pub(crate) fn start(
        place: Place<'_>,
        secret: &str,
        overlay: Option<&str>,
    ) -> io::Result<FreeRadius> {
        let freeradius = require_program("freeradius", "freeradius")?;
        match place {
            Place::Loopback => {
                static SERIAL: AtomicU32 = AtomicU32::new(0);
                let dir = std::env::temp_dir().join(format!(
                    "freeradius-{}-{}",
                    std::process::id(),
                    SERIAL.fetch_add(1, Ordering::Relaxed)
                ));
                if dir.exists() {
                    fs::remove_dir_all(&dir)?;
                }
                let (auth, acct) = (free_port()?, free_port()?);
                let log = dir.join("output.log");
                let spawned = render(&dir, auth.port(), acct.port(), secret, overlay)
                    .and_then(|()| spawn(&freeradius, &dir, &log));
                let child = match spawned {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = fs::remove_dir_all(&dir);
                        return Err(e);
                    }
                };
                // From here on Drop cleans up, also on the error below.
                let mut server = FreeRadius {
                    process: Process::Child { child, log },
                    dir,
                    auth,
                    acct,
                };
                server.wait_until_ready()?;
                Ok(server)
            }
            Place::Namespace(lab, ns) => {
                let dir = lab.path("radius");
                render(&dir, AUTH_PORT, ACCT_PORT, secret, overlay)?;
                let program = freeradius.to_string_lossy().into_owned();
                let dir_text = dir.to_string_lossy().into_owned();
                let process = lab.spawn(ns, "freeradius", &[&program, "-X", "-d", &dir_text])?;
                lab.wait_for_output(process, READY, READY_LIMIT)?;
                let localhost = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                Ok(FreeRadius {
                    process: Process::Lab(process),
                    dir,
                    auth: localhost(AUTH_PORT),
                    acct: localhost(ACCT_PORT),
                })
            }
        }
    }

    /// Polls our own child's output until it is ready, or fails with the
    /// end of that output if it exits or takes too long.
    fn wait_until_ready(&mut self) -> io::Result<()> {
        let Process::Child { child, log } = &mut self.process else {
            return Ok(());
        };
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let text = fs::read_to_string(&*log).unwrap_or_default();
            if text.contains(READY) {
                return Ok(());
            }
            let exited = child.try_wait()?.is_some();
            if exited || Instant::now() >= deadline {
                let why = if exited { "it exited" } else { "not in time" };
                return Err(error(format!(
                    "FreeRADIUS did not become ready ({why}); its output ends with:\n{}",
                    tail(&text, 40)
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Where it takes Access-Requests.
    pub(crate) fn auth(&self) -> SocketAddr {
        self.auth
    }

    /// Where it takes Accounting-Requests.
    pub(crate) fn acct(&self) -> SocketAddr {
        self.acct
    }

    /// The lab's handle of the process, if the lab runs it.
    pub(crate) fn process(&self) -> Option<ProcessId> {
        match self.process {
            Process::Lab(id) => Some(id),
            Process::Child { .. } => None,
        }
    }

    /// The detail file's records, in order.
    pub(crate) fn records(&self) -> Vec<Record> {
        let text = fs::read_to_string(self.dir.join("radacct/detail")).unwrap_or_default();
        parse_detail(&text)
    }

    /// Waits up to `limit` until `wanted` holds for the records; returns
    /// them either way, so the caller's assertion shows what was there.
    pub(crate) fn wait_for_records(
        &self,
        limit: Duration,
        mut wanted: impl FnMut(&[Record]) -> bool,
    ) -> Vec<Record> {
        let deadline = Instant::now() + limit;
        loop {
            let records = self.records();
            if wanted(&records) || Instant::now() >= deadline {
                return records;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Stops it (it has nothing to flush: the detail file is written per
    /// request). Our own child stops on drop as well.
    pub(crate) fn stop(&mut self, lab: &mut Lab) -> io::Result<()> {
        match &mut self.process {
            Process::Lab(id) => lab
                .stop(*id, Signal::TERM, Duration::from_secs(2))
                .map(|_| ()),
            Process::Child { child, .. } => {
                let _ = child.kill();
                child.wait().map(|_| ())
            }
        }
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        if let Process::Child { child, log } = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                let text = fs::read_to_string(&*log).unwrap_or_default();
                eprintln!("FreeRADIUS output:\n{}", tail(&text, 200));
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> io::Result<SocketAddr> {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

/// Starts `freeradius -X -d dir` with stdout and stderr into `log`.
fn spawn(freeradius: &Path, dir: &Path, log: &Path) -> io::Result<Child> {
    let out = File::create(log)?;
    Command::new(freeradius)
        .arg("-X")
        .arg("-d")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
}

/// Renders `deploy/radius/` into `dir`, with `overlay`'s client entry and
/// users file laid over it, and creates the directories FreeRADIUS writes.
fn render(
    dir: &Path,
    auth_port: u16,
    acct_port: u16,
    secret: &str,
    overlay: Option<&str>,
) -> io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir_text = dir.to_string_lossy().into_owned();
    let values = [
        ("@DIR@", dir_text.as_str()),
        ("@AUTH_PORT@", &auth_port.to_string()),
        ("@ACCT_PORT@", &acct_port.to_string()),
        ("@SECRET@", secret),
    ];
    render_tree(&root.join("deploy/radius"), dir, &values)?;
    if let Some(overlay) = overlay {
        let overlay = root.join(overlay);
        for (from, to) in [
            ("clients.conf", "clients.conf"),
            ("authorize", "mods-config/files/authorize"),
        ] {
            render_file(&overlay.join(from), &dir.join(to), &values)?;
        }
    }
    for sub in ["log", "radacct", "run"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// The records of a FreeRADIUS detail file.
pub(crate) fn parse_detail(text: &str) -> Vec<Record> {
    let mut records = Vec::new();
    let mut record = Record::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !record.is_empty() {
                records.push(std::mem::take(&mut record));
            }
            continue;
        }
        // Attribute lines are indented; the record's header (a date) is not.
        if let Some((name, value)) = line.strip_prefix('\t').and_then(|l| l.split_once(" = ")) {
            record.insert(name.to_owned(), value.trim_matches('"').to_owned());
        }
    }
    if !record.is_empty() {
        records.push(record);
    }
    records
}

/// Copies the directory tree `from` to `to`, replacing each placeholder in
/// every file.
fn render_tree(from: &Path, to: &Path, values: &[(&str, &str)]) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            render_tree(&entry.path(), &target, values)?;
        } else {
            render_file(&entry.path(), &target, values)?;
        }
    }
    Ok(())
}

fn render_file(from: &Path, to: &Path, values: &[(&str, &str)]) -> io::Result<()> {
    let mut text = fs::read_to_string(from)
        .map_err(|e| error(format!("cannot read {}: {e}", from.display())))?;
    for (name, value) in values {
        text = text.replace(name, value);
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(to, text)
}
