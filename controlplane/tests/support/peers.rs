//! The real peers, started inside a [`Lab`] namespace from the templates in
//! `deploy/interop/` (the demo script renders the same files).
//!
//! What was learned by hand about them on the CI kind of machine:
//!
//! xl2tpd 1.3.18 as a LAC (`[lac NAME]`, `lns = ADDR`, `autodial = yes`):
//! - dials at start-up: SCCRQ (Receive Window Size 4, a Challenge when
//!   `challenge = yes`, the L bit with `length bit = yes`), SCCCN, then ICRQ
//!   and ICCN at once; ZLBs acknowledge in between.
//! - it then starts pppd, which dies at once (no `/dev/ppp`), and about 5-10 ms
//!   after ICCN xl2tpd sends CDN, result 1 (loss of carrier), error 0. The
//!   tunnel stays up.
//! - "d NAME" written into its control FIFO (`-C`) sends StopCCN, result 1
//!   "Goodbye!". SIGTERM sends nothing.
//!
//! l2tpns 2.4.1 as an LNS:
//! - runs its cluster code first; with `cluster_interface lo` and the short
//!   heartbeat timers it declares itself master about 3 s after start and only
//!   then answers SCCRQ. It creates `tun0` in its namespace and adds routes for
//!   the pools of /etc/l2tpns/ip_pool (a fixed path) there.
//! - answers SCCRQ with SCCRP carrying Host Name from `set hostname` (the OS
//!   host name otherwise), Assigned Tunnel ID, and no Receive Window Size.
//! - right after ICCN it sends LCP Configure-Request in a data message (MRU
//!   1462, auth PAP, magic, MRRU 1614, endpoint discriminator).
//! - on CDN it acknowledges and kills the session; on SIGQUIT it sends
//!   StopCCN (result 6) on every tunnel — also on one the LAC already
//!   stopped — and retransmits until acknowledged, so stopping it is SIGQUIT,
//!   a short grace, then SIGKILL.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::Signal;

use super::netns::{error, require_program, run, Lab, Netns, ProcessId};

/// `deploy/interop/` of this checkout.
pub(crate) fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/interop")
}

/// Renders `template` (a file of `deploy/interop/`) with `@NAME@` replaced by
/// each value. A placeholder left over means the harness and the template
/// drifted apart: an error, not a silently broken config.
pub(crate) fn render(template: &str, values: &[(&str, &str)]) -> io::Result<String> {
    let path = templates_dir().join(template);
    let mut text = fs::read_to_string(&path)
        .map_err(|e| error(format!("cannot read template {}: {e}", path.display())))?;
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    let leftover = text.lines().find(|l| {
        let parts: Vec<&str> = l.split('@').collect();
        parts.len() >= 3
            && parts[1..parts.len() - 1]
                .iter()
                .any(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    });
    match leftover {
        Some(line) => Err(error(format!(
            "{}: placeholder not filled in: {line}",
            path.display()
        ))),
        None => Ok(text),
    }
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// How to configure the xl2tpd LAC.
#[derive(Debug, Clone)]
pub(crate) struct Xl2tpdLacConfig<'a> {
    /// The address it listens and sends from.
    pub(crate) listen: Ipv4Addr,
    /// The LNS it dials.
    pub(crate) lns: Ipv4Addr,
    /// The Host Name AVP it sends.
    pub(crate) hostname: &'a str,
    /// The tunnel secret: with one, it challenges the LNS.
    pub(crate) secret: Option<&'a str>,
}

/// A running xl2tpd LAC.
#[derive(Debug)]
pub(crate) struct Xl2tpdLac {
    process: ProcessId,
    control: PathBuf,
}

/// The `[lac NAME]` section name.
const LAC_NAME: &str = "peer";

impl Xl2tpdLac {
    /// Starts xl2tpd in `ns`; it dials the LNS at once.
    pub(crate) fn start(
        lab: &mut Lab,
        ns: &Netns,
        config: &Xl2tpdLacConfig<'_>,
    ) -> io::Result<Xl2tpdLac> {
        let xl2tpd = path_str(&require_program("xl2tpd", "xl2tpd")?);
        let conf = lab.path("xl2tpd.conf");
        let secrets = lab.path("xl2tpd-secrets");
        let options = lab.path("xl2tpd-ppp-options");
        let control = lab.path("xl2tpd.control");
        let pid = lab.path("xl2tpd.pid");
        let (listen, lns) = (config.listen.to_string(), config.lns.to_string());
        let text = render(
            "xl2tpd-lac.conf.in",
            &[
                ("LISTEN_ADDR", &listen),
                ("LNS_ADDR", &lns),
                ("AUTH_FILE", &path_str(&secrets)),
                ("LAC_NAME", LAC_NAME),
                (
                    "CHALLENGE",
                    if config.secret.is_some() { "yes" } else { "no" },
                ),
                ("HOSTNAME", config.hostname),
                ("PPP_OPTIONS", &path_str(&options)),
            ],
        )?;
        fs::write(&conf, text)?;
        // Lines "client server secret"; xl2tpd wants the file private.
        fs::write(
            &secrets,
            format!("* * {}\n", config.secret.unwrap_or("unused")),
        )?;
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600))?;
        fs::copy(templates_dir().join("xl2tpd-ppp-options"), &options)?;
        #[rustfmt::skip]
        let process = lab.spawn(ns, "xl2tpd",
            &[&xl2tpd, "-D", "-c", &path_str(&conf), "-p", &path_str(&pid), "-C", &path_str(&control)])?;
        lab.wait_for_output(process, "Listening on IP address", Duration::from_secs(10))?;
        Ok(Xl2tpdLac { process, control })
    }

    pub(crate) fn process(&self) -> ProcessId {
        self.process
    }

    /// Asks xl2tpd to close its tunnel: it sends StopCCN.
    pub(crate) fn disconnect(&self) -> io::Result<()> {
        // The control file is a FIFO xl2tpd reads; the shell's write is
        // bounded by `run`'s timeout should xl2tpd not be reading.
        let command = format!("printf 'd {LAC_NAME}\\n' > '{}'", path_str(&self.control));
        run(&["sh", "-c", &command]).map(|_| ())
    }
}

/// The RADIUS shared secret of l2tpns (give it to the RADIUS server).
pub(crate) const L2TPNS_RADIUS_SECRET: &str = "interop-radius";

/// The DNS servers l2tpns gives in IPCP (RFC 1877): documentation addresses
/// (RFC 5737), only ever carried in IPCP, never sent to.
pub(crate) const L2TPNS_DNS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(192, 0, 2, 54)];

/// Where l2tpns reads its address pool: fixed when it is built, no setting
/// changes it, and the tests never write under /etc. The Debian package
/// ships 10.10.10.0/24 and 10.13.10.0/24, plenty for the tests.
pub(crate) const L2TPNS_POOL_FILE: &str = "/etc/l2tpns/ip_pool";

/// An IPv4 prefix of l2tpns's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    pub(crate) network: Ipv4Addr,
    pub(crate) length: u8,
}

impl Prefix {
    pub(crate) fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.length))
            .unwrap_or(0);
        u32::from(addr) & mask == u32::from(self.network) & mask
    }
}

/// The prefixes of l2tpns's pool file. Its lines are `[LOCAL:]A.B.C.D/LEN`
/// or a single address, `#` starting a comment; a line we do not
/// understand is an error (the test's assertions would be wrong).
pub(crate) fn l2tpns_pool() -> io::Result<Vec<Prefix>> {
    let text = fs::read_to_string(L2TPNS_POOL_FILE).map_err(|e| {
        error(format!(
            "{L2TPNS_POOL_FILE}: {e} (the Debian package `l2tpns` ships it)"
        ))
    })?;
    let mut prefixes = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let range = line.rsplit(':').next().unwrap_or(line);
        let (addr, length) = range.split_once('/').unwrap_or((range, "32"));
        let bad = |e: String| error(format!("{L2TPNS_POOL_FILE}: {line:?}: {e}"));
        prefixes.push(Prefix {
            network: addr.parse().map_err(|e| bad(format!("{e}")))?,
            length: length
                .parse()
                .ok()
                .filter(|l| *l <= 32)
                .ok_or_else(|| bad("bad prefix length".into()))?,
        });
    }
    Ok(prefixes)
}

/// How to configure the l2tpns LNS.
#[derive(Debug, Clone)]
pub(crate) struct L2tpnsLnsConfig<'a> {
    /// Its L2TP address.
    pub(crate) bind: Ipv4Addr,
    /// The Host Name AVP of its SCCRP.
    pub(crate) hostname: &'a str,
    /// The tunnel secret.
    pub(crate) secret: &'a str,
    /// Where its RADIUS server listens on the namespace's loopback
    /// (authentication; accounting is the next port).
    pub(crate) radius_port: u16,
}

/// A running l2tpns LNS.
#[derive(Debug)]
pub(crate) struct L2tpnsLns {
    process: ProcessId,
    log: PathBuf,
}

impl L2tpnsLns {
    /// Starts l2tpns in `ns` and returns once it serves LACs (it has declared
    /// itself cluster master).
    pub(crate) fn start(
        lab: &mut Lab,
        ns: &Netns,
        config: &L2tpnsLnsConfig<'_>,
    ) -> io::Result<L2tpnsLns> {
        let l2tpns = path_str(&require_program("l2tpns", "l2tpns")?);
        let conf = lab.path("l2tpns.cfg");
        let log = lab.path("l2tpns-log.txt");
        let bind = config.bind.to_string();
        let text = render(
            "l2tpns.cfg.in",
            &[
                ("LOG_FILE", &path_str(&log)),
                ("PID_FILE", &path_str(&lab.path("l2tpns.pid"))),
                ("HOSTNAME", config.hostname),
                ("BIND_ADDR", &bind),
                ("SECRET", config.secret),
                ("RADIUS_PORT", &config.radius_port.to_string()),
                ("RADIUS_SECRET", L2TPNS_RADIUS_SECRET),
                ("DNS_ADDR", &L2TPNS_DNS[0].to_string()),
                ("DNS2_ADDR", &L2TPNS_DNS[1].to_string()),
            ],
        )?;
        fs::write(&conf, text)?;
        let process = lab.spawn(ns, "l2tpns", &[&l2tpns, "-c", &path_str(&conf)])?;
        lab.wait_for_text(
            process,
            &log,
            "I am declaring myself the master",
            Duration::from_secs(30),
        )?;
        Ok(L2tpnsLns { process, log })
    }

    pub(crate) fn process(&self) -> ProcessId {
        self.process
    }

    /// Its log file (what it says about tunnels and sessions).
    pub(crate) fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits up to `limit` for `needle` in its log.
    pub(crate) fn wait_for_log(
        &self,
        lab: &mut Lab,
        needle: &str,
        limit: Duration,
    ) -> io::Result<()> {
        lab.wait_for_text(self.process, &self.log, needle, limit)
    }

    /// Shuts it down the way that tears tunnels down (SIGQUIT: StopCCN on
    /// each), killing it if it is still waiting for acknowledgements after
    /// `grace`.
    pub(crate) fn quit(&self, lab: &mut Lab, grace: Duration) -> io::Result<()> {
        lab.stop(self.process, Signal::QUIT, grace).map(|_| ())
    }
}
