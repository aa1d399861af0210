//! A private FreeRADIUS inside a [`Lab`] namespace, for a peer that
//! authenticates through RADIUS (l2tpns does so only).
//!
//! The configuration is `deploy/radius/` (the AAA test's minimal server:
//! PAP and CHAP from a users file, accounting into one `detail` file) with
//! `deploy/interop/radius/` laid over it: the RADIUS client entry of the peer
//! and the PPP users of the interop tests. It is rendered into the lab's
//! scratch directory, so nothing is read from or written to
//! `/etc/freeradius` or `/var`.
//!
//! It listens on the namespace's loopback (127.0.0.1), on the standard ports
//! 1812 (authentication) and 1813 (accounting): the namespace is the test's
//! own, and l2tpns sends accounting to its authentication port + 1 anyway.
//!
//! Learned by hand (FreeRADIUS 3.2.1, Debian 12):
//! - `freeradius -X -d DIR` stays in the foreground, logs to stdout and says
//!   "Ready to process requests" once its sockets are bound.
//! - The `detail` module writes one record per Accounting-Request: a date
//!   line, then `\tName = value` lines, then a blank line; string values are
//!   quoted.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::netns::{error, require_program, Lab, Netns, ProcessId};

/// The RADIUS authentication port (RFC 2865 §3).
pub(crate) const AUTH_PORT: u16 = 1812;
/// The accounting port (RFC 2866 §3): the authentication port + 1, which is
/// where l2tpns sends accounting.
pub(crate) const ACCT_PORT: u16 = 1813;

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
/// How often [`FreeRadius::wait_for_records`] reads the detail file.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A running FreeRADIUS.
#[derive(Debug)]
pub(crate) struct FreeRadius {
    process: ProcessId,
    dir: PathBuf,
}

/// One accounting record of the detail file: attribute name to value
/// (quotes removed).
pub(crate) type Record = HashMap<String, String>;

impl FreeRadius {
    /// Renders the configuration into `<scratch>/radius` with `secret` as the
    /// client's shared secret, starts FreeRADIUS in `ns`, and returns once it
    /// serves requests.
    pub(crate) fn start(lab: &mut Lab, ns: &Netns, secret: &str) -> io::Result<FreeRadius> {
        let freeradius = require_program("freeradius", "freeradius")?;
        let dir = lab.path("radius");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir_text = dir.to_string_lossy().into_owned();
        let values = [
            ("@DIR@", dir_text.as_str()),
            ("@AUTH_PORT@", &AUTH_PORT.to_string()),
            ("@ACCT_PORT@", &ACCT_PORT.to_string()),
            ("@SECRET@", secret),
        ];
        render_tree(&root.join("deploy/radius"), &dir, &values)?;
        let overlay = root.join("deploy/interop/radius");
        render_file(
            &overlay.join("clients.conf"),
            &dir.join("clients.conf"),
            &values,
        )?;
        render_file(
            &overlay.join("authorize"),
            &dir.join("mods-config/files/authorize"),
            &values,
        )?;
        for sub in ["log", "radacct", "run"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let program = freeradius.to_string_lossy().into_owned();
        let process = lab.spawn(ns, "freeradius", &[&program, "-X", "-d", &dir_text])?;
        lab.wait_for_output(process, "Ready to process requests", READY_LIMIT)?;
        Ok(FreeRadius { process, dir })
    }

    pub(crate) fn process(&self) -> ProcessId {
        self.process
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
    /// request).
    pub(crate) fn stop(&self, lab: &mut Lab) -> io::Result<()> {
        lab.stop(self.process, Signal::TERM, Duration::from_secs(2))
            .map(|_| ())
    }
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
