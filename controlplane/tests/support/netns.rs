//! A throw-away lab of network namespaces for one test.
//!
//! [`Lab`] is a guard: it creates namespaces named `<test>-<pid>-<role>` (so
//! tests running side by side, in one binary or several, never share one),
//! joins them with veth pairs, runs and spawns programs inside them, and on
//! drop — also when the test panics — kills every process group it spawned and
//! deletes every namespace (which deletes the veths inside). If the test
//! process is killed instead, its peers die with it (parent-death signal)
//! and the next run of the same test deletes its namespaces. Nothing is created
//! in the root namespace: veth ends are created directly inside their
//! namespaces, so the addresses used (10.200.N.0/24) exist only there and no
//! packet of a test can reach the machine's real network.
//!
//! What was learned by hand on the CI kind of machine (Debian 12, kernel
//! without L2TP/PPP modules):
//! - `ip link add NAME netns A type veth peer name NAME netns B` creates both
//!   ends straight inside their namespaces, so interface names only have to be
//!   unique per namespace.
//! - `/dev/net/tun` works inside a namespace (l2tpns creates its `tun0` there).
//! - There is no `dummy` link type (no module), and no `ping`.
//! - `ip netns exec NS PROG` execs PROG in the same process, so the pid we get
//!   from spawning it is PROG's and, with a new process group, its children
//!   (xl2tpd's pppd, tshark's dumpcap) are killed with it.
//! - A socket belongs to the namespace its creating thread was in when it was
//!   created; it can be used from any thread afterwards. That is how the tests
//!   run our side in-process: [`Lab::udp_socket`] creates the socket on a short
//!   thread that first enters the namespace with `setns(2)`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// How long one `ip` (or other short) command may take before we give up.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);
/// How often a wait polls a log file or a process.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a process gets to exit after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

pub(crate) fn error(message: impl Into<String>) -> io::Error {
    io::Error::other(message.into())
}

/// Fails unless we are root: namespaces, veths and captures need it.
pub(crate) fn require_root() -> io::Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(error(
            "the interop tests need root (network namespaces, veth pairs, TUN, packet capture); \
             run them as root, as CI does",
        ))
    }
}

/// The full path of a program we depend on, or an error naming the Debian
/// package that provides it. Looks in PATH and in the sbin directories, which
/// a non-login root shell may lack.
pub(crate) fn require_program(program: &str, package: &str) -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(error(format!(
        "`{program}` not found: install the Debian package `{package}` \
         (`apt-get install {package}`; .ci/run installs it)"
    )))
}

/// Runs a short command to completion, bounded by [`COMMAND_LIMIT`] (coreutils
/// `timeout` kills it past that). A non-zero exit is an error carrying stderr.
pub(crate) fn run(argv: &[&str]) -> io::Result<Output> {
    let limit = format!("{}s", COMMAND_LIMIT.as_secs());
    let output = Command::new("timeout")
        .args(["--kill-after=2s", &limit])
        .args(argv)
        .stdin(Stdio::null())
        .output()?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(error(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// A network namespace of a [`Lab`].
#[derive(Debug, Clone)]
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// The two ends of a veth pair between two namespaces of a [`Lab`].
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// Interface name, the same on both sides.
    pub(crate) interface: String,
    /// The address of the first namespace's end.
    pub(crate) a: Ipv4Addr,
    /// The address of the second namespace's end.
    pub(crate) b: Ipv4Addr,
}

/// A process spawned by a [`Lab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessId(usize);

#[derive(Debug)]
struct Process {
    label: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Process {
    fn pid(&self) -> Option<Pid> {
        i32::try_from(self.child.id()).ok().and_then(Pid::from_raw)
    }

    /// Reaps the process if it has exited; true while it runs.
    fn running(&mut self) -> bool {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status.is_none()
    }

    /// Sends `signal` to the whole process group, waits up to `grace` for the
    /// leader to exit, then kills the group. Always reaps the leader.
    fn stop(&mut self, signal: Signal, grace: Duration) -> Option<ExitStatus> {
        if let Some(pid) = self.pid() {
            // The group may already be gone: nothing to do then.
            let _ = rustix::process::kill_process_group(pid, signal);
            let deadline = Instant::now() + grace;
            while self.running() && Instant::now() < deadline {
                std::thread::sleep(POLL_INTERVAL);
            }
            // Children (pppd, dumpcap) may outlive the leader: always sweep.
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        self.status
    }
}

/// The guard owning every namespace, process and file of one test.
#[derive(Debug)]
pub(crate) struct Lab {
    tag: String,
    dir: PathBuf,
    namespaces: Vec<Netns>,
    processes: Vec<Process>,
    links: u8,
}

impl Lab {
    /// A new, empty lab for the test `test`, with a fresh scratch directory.
    pub(crate) fn new(test: &str) -> io::Result<Lab> {
        require_root()?;
        require_program("ip", "iproute2")?;
        require_program("timeout", "coreutils")?;
        let tag = format!("{test}-{}", std::process::id());
        sweep_orphans(test);
        let dir = std::env::temp_dir().join(format!("l2tp-interop-{tag}"));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(Lab {
            tag,
            dir,
            namespaces: Vec::new(),
            processes: Vec::new(),
            links: 0,
        })
    }

    /// The scratch directory: configs, logs and captures go here. It is
    /// removed on drop unless the test failed.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path in the scratch directory.
    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A new namespace `<test>-<pid>-<role>` with its loopback up.
    pub(crate) fn namespace(&mut self, role: &str) -> io::Result<Netns> {
        let ns = Netns {
            name: format!("{}-{role}", self.tag),
        };
        // The name carries our pid, so one that exists is left over from a
        // dead process that had the same pid (killed before its guard ran).
        if Path::new("/run/netns").join(&ns.name).exists() {
            run(&["ip", "netns", "del", &ns.name])?;
        }
        run(&["ip", "netns", "add", &ns.name])?;
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Joins `a` and `b` with a veth pair, addresses 10.200.N.1/24 on `a` and
    /// 10.200.N.2/24 on `b` (N counts the links of this lab from 1), both up.
    /// The addresses exist only inside these two namespaces.
    pub(crate) fn link(&mut self, a: &Netns, b: &Netns) -> io::Result<Link> {
        self.links = self
            .links
            .checked_add(1)
            .ok_or_else(|| error("too many links in one lab"))?;
        let n = self.links;
        let link = Link {
            interface: format!("veth{n}"),
            a: Ipv4Addr::new(10, 200, n, 1),
            b: Ipv4Addr::new(10, 200, n, 2),
        };
        let ifname = link.interface.as_str();
        #[rustfmt::skip]
        run(&["ip", "link", "add", ifname, "netns", &a.name, "type", "veth",
              "peer", "name", ifname, "netns", &b.name])?;
        for (ns, addr) in [(a, link.a), (b, link.b)] {
            let cidr = format!("{addr}/24");
            run(&["ip", "-n", &ns.name, "addr", "add", &cidr, "dev", ifname])?;
            run(&["ip", "-n", &ns.name, "link", "set", ifname, "up"])?;
        }
        Ok(link)
    }

    /// Runs a short command inside `ns` to completion (bounded).
    pub(crate) fn exec(&self, ns: &Netns, argv: &[&str]) -> io::Result<Output> {
        let mut full = vec!["ip", "netns", "exec", &ns.name];
        full.extend_from_slice(argv);
        run(&full)
    }

    /// Starts a long-running program inside `ns`, in a process group of its
    /// own (what `setsid` gives: l2tpns signals its whole group on exit, and
    /// we kill the group to catch children), with stdout and stderr in
    /// `<label>.log` in the scratch directory.
    pub(crate) fn spawn(
        &mut self,
        ns: &Netns,
        label: &str,
        argv: &[&str],
    ) -> io::Result<ProcessId> {
        let log = self.path(&format!("{label}.log"));
        let out = OpenOptions::new().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let mut child = Command::new("ip");
        child
            .args(["netns", "exec", &ns.name])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes one async-signal-safe system call (prctl).
        unsafe {
            // Should this test process die without its guard running (a
            // SIGKILL, a timeout's SIGTERM), the peer dies with it instead of
            // living on in a namespace nobody will delete. The signal comes
            // when the spawning thread ends: the test's own, after the guard.
            child.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                    .map_err(io::Error::from)
            });
        }
        let child = child.spawn()?;
        self.processes.push(Process {
            label: label.to_owned(),
            child,
            log,
            status: None,
        });
        Ok(ProcessId(self.processes.len() - 1))
    }

    fn process(&mut self, id: ProcessId) -> io::Result<&mut Process> {
        self.processes
            .get_mut(id.0)
            .ok_or_else(|| error("no such process in this lab"))
    }

    /// What the process wrote so far (stdout and stderr).
    pub(crate) fn output(&self, id: ProcessId) -> String {
        self.processes
            .get(id.0)
            .and_then(|p| fs::read(&p.log).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// True while the process runs.
    pub(crate) fn running(&mut self, id: ProcessId) -> bool {
        self.process(id).map(Process::running).unwrap_or(false)
    }

    /// Waits up to `limit` until `file` contains `needle`. Fails early if the
    /// process `id` exits meanwhile, and the error shows the end of the file.
    pub(crate) fn wait_for_text(
        &mut self,
        id: ProcessId,
        file: &Path,
        needle: &str,
        limit: Duration,
    ) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let text = fs::read(file).map(|b| String::from_utf8_lossy(&b).into_owned());
            let text = text.unwrap_or_default();
            if text.contains(needle) {
                return Ok(());
            }
            let running = self.running(id);
            if !running || Instant::now() >= deadline {
                let label = self
                    .process(id)
                    .map(|p| p.label.clone())
                    .unwrap_or_default();
                let why = if running {
                    format!("not within {limit:?}")
                } else {
                    "it exited".into()
                };
                return Err(error(format!(
                    "{label}: waited for {needle:?} in {}, {why}; it ends with:\n{}",
                    file.display(),
                    tail(&text, 30)
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits up to `limit` until the process's own output contains `needle`.
    pub(crate) fn wait_for_output(
        &mut self,
        id: ProcessId,
        needle: &str,
        limit: Duration,
    ) -> io::Result<()> {
        let log = self.process(id)?.log.clone();
        self.wait_for_text(id, &log, needle, limit)
    }

    /// Signals the process group of `id`, gives it `grace` to exit, then kills
    /// the group. Returns the leader's exit status.
    pub(crate) fn stop(
        &mut self,
        id: ProcessId,
        signal: Signal,
        grace: Duration,
    ) -> io::Result<Option<ExitStatus>> {
        Ok(self.process(id)?.stop(signal, grace))
    }

    /// A UDP socket bound to `addr` inside `ns`, usable from any thread of this
    /// process. A short thread enters the namespace (setns(2) changes only
    /// the calling thread's namespace) and creates the socket there.
    pub(crate) fn udp_socket(&self, ns: &Netns, addr: SocketAddr) -> io::Result<UdpSocket> {
        let handle = Path::new("/run/netns").join(&ns.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let netns = File::open(&handle)?;
                    move_into_link_name_space(netns.as_fd(), Some(LinkNameSpaceType::Network))?;
                    UdpSocket::bind(addr)
                })
                .join()
                .map_err(|_| error("the thread creating the socket panicked"))?
        })
    }

    /// Everything a person needs to see when a test fails: the end of every
    /// process's output.
    pub(crate) fn report(&self) -> String {
        let mut out = format!("lab {} (files in {})\n", self.tag, self.dir.display());
        for p in &self.processes {
            let text = fs::read(&p.log).map(|b| String::from_utf8_lossy(&b).into_owned());
            out += &format!(
                "--- {} ({}) ---\n{}\n",
                p.label,
                p.log.display(),
                tail(&text.unwrap_or_default(), 40)
            );
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first: a namespace with live processes in it would only
        // lose its name, not die.
        for p in self.processes.iter_mut().rev() {
            p.stop(Signal::TERM, TERM_GRACE);
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = run(&["ip", "netns", "del", &ns.name]) {
                eprintln!("lab cleanup: {e}");
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.report());
            eprintln!(
                "kept {} for inspection (until this test runs again)",
                self.dir.display()
            );
        } else if std::env::var_os("L2TP_INTEROP_KEEP").is_some() {
            eprintln!(
                "L2TP_INTEROP_KEEP set: kept {} (until this test runs again)",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Deletes the namespaces `<test>-<pid>-*` left by a process of this test
/// that died without its guard running (killed): only those whose pid is no
/// longer alive, so a lab of a live run is never touched.
/// Its scratch directory `l2tp-interop-<test>-<pid>` goes too.
fn sweep_orphans(test: &str) {
    // The pid of `<test>-<pid>[-role]` if that process is gone. The role
    // follows the pid; a test name that is a prefix of another (`l2tpns` of
    // `l2tpns-ppp`) leaves a non-number there: not ours.
    let orphan = |name: &str| {
        let rest = name.strip_prefix(test)?.strip_prefix('-')?;
        let pid = rest.split('-').next()?.parse::<u32>().ok()?;
        (!Path::new("/proc").join(pid.to_string()).exists()).then_some(pid)
    };
    for entry in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if orphan(&name).is_some() {
            if let Err(e) = run(&["ip", "netns", "del", &name]) {
                eprintln!("lab: cannot delete the orphaned namespace {name}: {e}");
            }
        }
    }
    let temp = std::env::temp_dir();
    for entry in fs::read_dir(&temp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name
            .strip_prefix("l2tp-interop-")
            .and_then(orphan)
            .is_some()
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
