//! `l2bench linerate`: end-to-end rate of the LNS worker over AF_XDP,
//! against a raw AF_XDP reflector on the same link (issue 4 §6).
//!
//! # What runs
//!
//! One veth pair between two namespaces it creates, `l2lr-<pid>-gen`
//! (`lrgen0`) and `l2lr-<pid>-dut` (`lrdut0`), deleted at the end, also on
//! failure (and left-overs of a dead run with the same pid at the start).
//! Every `ip` call is bounded by `timeout`.
//!
//! The **generator** owns `lrgen0` whole (steering option `everything`): it
//! sends LNS upstream traffic as fast as the link takes it, L2TP data
//! messages from the LAC (`testkit`: 192.0.2.2:40000 → 192.0.2.1:1701,
//! Ethernet/IPv4/UDP/L2TP/PPP/IPv4/UDP with `--payload` bytes) spread over
//! `--sessions` sessions, and counts what comes back.
//!
//! On `lrdut0`, with the ordinary steering program (L2TP data to the
//! socket), two kinds of run, alternated `--rounds` times (each round a
//! slice of `--duration`, so that a change in the machine's load weighs
//! on both alike):
//! 1. a **raw reflector**: receive a burst, swap the MAC addresses, the
//!    IPv4 addresses and the UDP ports, send it back: no lookup, no
//!    rewrite, the floor of what AF_XDP on this link costs;
//! 2. the **LNS worker** (`dataplane::worker::Worker` over one
//!    `AfXdpPort`, a one-armed LNS: the tunnel and the core are the same
//!    link), with the testkit's tables for `--sessions` sessions: it
//!    checks tunnel and session, strips Ethernet/IPv4/UDP/L2TP/PPP,
//!    decrements the TTL and sends the inner IPv4 packet to the gateway,
//!    whose MAC is the generator's.
//!
//! Both rates are what the generator received back per second after
//! each run's `--warmup`, over all rounds; the ratio is LNS / reflector
//! (target ≥ 0.8).
//!
//! # Pinning
//!
//! Two cores: the generator on `--generator-core` (0), the reflector or
//! worker on `--worker-core` (1), both busy-polling. Note that on veth the
//! kernel side of a transmission (the peer's generic XDP program and the
//! copy into the peer's UMEM) runs in the sender's `sendto`, so each side
//! also pays for the other's receive: both runs are measured the same way.
//! `--adaptive`: no pinning, and both sides back off when idle (the
//! worker in `PollMode::Adaptive`), for machines that share their cores
//! (CI).

use std::fs::File;
use std::io;
use std::path::Path as FsPath;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use dataplane::counters::Counters;
use dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, Steering, SteeringOptions, XdpMode};
use dataplane::io::{Descriptor, Port};
use dataplane::table::Neighbour;
use dataplane::testkit::{self as lab, Encoding};
use dataplane::update::{Event, Update};
use dataplane::worker::{PollMode, Role, Worker, WorkerConfig, MAX_BURST};
use serde::Serialize;

/// Arguments of `l2bench linerate`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seconds each run is measured for.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of traffic before measuring starts.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Sessions in the LNS tables; the generator spreads its packets over
    /// all of them.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// UDP payload bytes of the subscriber's packets.
    #[arg(long, default_value_t = crate::PAYLOAD)]
    pub payload: usize,
    /// Packets per burst, for the generator, the reflector and the worker.
    #[arg(long, default_value_t = 32)]
    pub burst: usize,
    /// Core the generator is pinned to.
    #[arg(long, default_value_t = 0)]
    pub generator_core: usize,
    /// Core the reflector and the worker are pinned to.
    #[arg(long, default_value_t = 1)]
    pub worker_core: usize,
    /// Do not pin, and back off when idle instead of busy-polling (CI,
    /// shared machines).
    #[arg(long)]
    pub adaptive: bool,
    /// Print the report as JSON instead of one line.
    #[arg(long)]
    pub json: bool,
    /// Alternate reflector and LNS this many times (each run then lasts
    /// `duration / rounds`), so that a change in the machine's load hits
    /// both alike.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            duration: 5.0,
            warmup: 0.5,
            sessions: 1000,
            payload: crate::PAYLOAD,
            burst: 32,
            generator_core: 0,
            worker_core: 1,
            adaptive: false,
            json: false,
            rounds: 3,
        }
    }
}

/// One run: what the generator sent and got back.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RunReport {
    /// Packets per second that came back, measured after the warm-up.
    pub pps: f64,
    /// Packets per second the generator put on the link meanwhile.
    pub offered_pps: f64,
    /// Packets sent and received in the measured window.
    pub sent: u64,
    /// See `sent`.
    pub received: u64,
    /// Seconds measured.
    pub seconds: f64,
}

/// What `l2bench linerate` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The raw reflector.
    pub reflector: RunReport,
    /// The LNS worker (upstream).
    pub lns: RunReport,
    /// `lns.pps / reflector.pps`.
    pub ratio: f64,
    /// The worker's drops and punts, by name (none expected).
    pub lns_drops_and_punts: Vec<(String, u64)>,
    /// Seconds measured per kind of run, over all rounds.
    pub duration_s: f64,
    /// Rounds of reflector then LNS.
    pub rounds: usize,
    /// Sessions in the tables.
    pub sessions: usize,
    /// Bytes on the wire of one generated frame.
    pub frame_len: usize,
    /// Packets per burst.
    pub burst: usize,
    /// "busy-poll, generator on core G, worker on core W" or "adaptive".
    pub mode: String,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Run the benchmark and print the report.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let report = measure(args).map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "linerate: reflector {:.0} pps, LNS upstream {:.0} pps, ratio {:.2} \
             ({} sessions, {}-byte frames, burst {}, {}, {:.1} s each in {} rounds)",
            report.reflector.pps,
            report.lns.pps,
            report.ratio,
            report.sessions,
            report.frame_len,
            report.burst,
            report.mode,
            report.duration_s,
            report.rounds,
        );
        if !report.lns_drops_and_punts.is_empty() {
            println!(
                "linerate: LNS worker drops/punts: {:?}",
                report.lns_drops_and_punts
            );
        }
    }
    Ok(())
}

/// Build the link, run the reflector and the LNS worker, and take the
/// link down again.
pub fn measure(args: &Args) -> Result<Report, Error> {
    if !rustix::process::geteuid().is_root() {
        return Err("l2bench linerate needs root (network namespaces, veth, BPF, AF_XDP)".into());
    }
    let sessions = args.sessions.clamp(1, 100_000);
    let burst = args.burst.clamp(1, MAX_BURST);
    let frames: Vec<Vec<u8>> = (0..sessions.min(4096))
        .map(|n| lab::lns_upstream((n * 7919) % sessions, args.payload, Encoding::default()))
        .collect();
    let frame_len = frames.first().map_or(0, Vec::len);
    let link = Link::new()?;
    // Alternate the two, each round a slice of the duration: the machine's
    // load (other processes on the same cores) then weighs on both alike.
    let rounds = args.rounds.max(1);
    let slice = Args {
        duration: args.duration / rounds as f64,
        ..args.clone()
    };
    let (mut reflector, mut lns) = (Totals::default(), Totals::default());
    let mut counters = Counters::default();
    for _ in 0..rounds {
        reflector.add(link.run(&slice, &frames, Dut::Reflector)?.0);
        let (report, worker) = link.run(&slice, &frames, Dut::Lns { sessions })?;
        lns.add(report);
        if let Some(worker) = worker {
            counters.add(&worker);
        }
    }
    drop(link);
    let (reflector, lns) = (reflector.report(), lns.report());
    let lns_drops_and_punts = counters
        .nonzero()
        .filter(|(name, _)| !name.starts_with("lns_upstream"))
        .map(|(name, n)| (name.to_owned(), n))
        .collect();
    Ok(Report {
        ratio: if reflector.pps > 0.0 {
            lns.pps / reflector.pps
        } else {
            0.0
        },
        reflector,
        lns,
        lns_drops_and_punts,
        duration_s: args.duration,
        rounds,
        sessions,
        frame_len,
        burst,
        mode: if args.adaptive {
            "adaptive, unpinned".to_owned()
        } else {
            format!(
                "busy-poll, generator on core {}, worker on core {}",
                args.generator_core, args.worker_core
            )
        },
    })
}

/// Runs of one kind added up.
#[derive(Debug, Default)]
struct Totals {
    sent: u64,
    received: u64,
    seconds: f64,
}

impl Totals {
    fn add(&mut self, run: RunReport) {
        self.sent += run.sent;
        self.received += run.received;
        self.seconds += run.seconds;
    }

    fn report(&self) -> RunReport {
        let per_second = |n: u64| {
            if self.seconds > 0.0 {
                n as f64 / self.seconds
            } else {
                0.0
            }
        };
        RunReport {
            pps: per_second(self.received),
            offered_pps: per_second(self.sent),
            sent: self.sent,
            received: self.received,
            seconds: self.seconds,
        }
    }
}

/// What sits on the far end of the link.
#[derive(Debug, Clone, Copy)]
enum Dut {
    Reflector,
    Lns { sessions: usize },
}

const GEN_IF: &str = "lrgen0";
const DUT_IF: &str = "lrdut0";

/// The two namespaces and the veth pair; deleted on drop.
struct Link {
    gen_ns: String,
    dut_ns: String,
}

impl Link {
    fn new() -> Result<Link, Error> {
        let pid = std::process::id();
        let link = Link {
            gen_ns: format!("l2lr-{pid}-gen"),
            dut_ns: format!("l2lr-{pid}-dut"),
        };
        // From here on, Drop removes whatever was made.
        for ns in [&link.gen_ns, &link.dut_ns] {
            if FsPath::new("/run/netns").join(ns).exists() {
                ip(&["netns", "del", ns])?;
            }
            ip(&["netns", "add", ns])?;
        }
        #[rustfmt::skip]
        ip(&["link", "add", GEN_IF, "netns", &link.gen_ns, "type", "veth",
             "peer", "name", DUT_IF, "netns", &link.dut_ns])?;
        for (ns, ifname, mac) in [
            (&link.gen_ns, GEN_IF, lab::PEER_MAC),
            (&link.dut_ns, DUT_IF, lab::ACCESS_MAC),
        ] {
            // No IPv6: nothing but the generator's traffic on the link.
            let _ = Command::new("timeout")
                .args(["10s", "ip", "netns", "exec", ns, "sysctl", "-qw"])
                .arg(format!("net.ipv6.conf.{ifname}.disable_ipv6=1"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let mac = mac.0.map(|b| format!("{b:02x}")).join(":");
            ip(&["-n", ns, "link", "set", ifname, "address", &mac])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
        }
        Ok(link)
    }

    /// One run against `dut`: the generator's report, and the worker's
    /// counters for the LNS.
    fn run(
        &self,
        args: &Args,
        frames: &[Vec<u8>],
        dut: Dut,
    ) -> Result<(RunReport, Option<Counters>), Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(Barrier::new(2));
        let burst = args.burst.clamp(1, MAX_BURST);
        let pin = |core: usize| {
            if !args.adaptive {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
            }
        };
        std::thread::scope(|scope| {
            let dut_thread = scope.spawn(|| -> Result<Option<Counters>, String> {
                // Whatever happens, let the generator go on (it stops on
                // its own clock) rather than wait for us forever.
                let result = (|| {
                    enter_netns(&self.dut_ns).map_err(|e| e.to_string())?;
                    let steering =
                        Steering::attach(DUT_IF, XdpMode::Skb).map_err(|e| e.to_string())?;
                    let port = open_port(&AfXdpConfig::new(DUT_IF, 0), &steering)?;
                    Ok::<_, String>((steering, port))
                })();
                ready.wait();
                let (steering, port) = result?;
                pin(args.worker_core);
                let counters = match dut {
                    Dut::Reflector => {
                        reflect(port, burst, &stop, args.adaptive);
                        None
                    }
                    Dut::Lns { sessions } => {
                        Some(lns(port, sessions, burst, &stop, args.adaptive)?)
                    }
                };
                drop(steering);
                Ok(counters)
            });
            let generator = (|| -> Result<RunReport, String> {
                // As on the far side: whatever happens, meet it at the
                // barrier, or it would wait there for ever.
                let result = (|| {
                    enter_netns(&self.gen_ns).map_err(|e| e.to_string())?;
                    let options = SteeringOptions {
                        everything: true,
                        ..SteeringOptions::default()
                    };
                    let steering = Steering::attach_with(GEN_IF, XdpMode::Skb, options)
                        .map_err(|e| e.to_string())?;
                    let config = AfXdpConfig {
                        frames: 8192,
                        ring_size: 2048,
                        alloc_reserve: 4096,
                        ..AfXdpConfig::new(GEN_IF, 0)
                    };
                    let port = open_port(&config, &steering)?;
                    Ok::<_, String>((steering, port))
                })();
                ready.wait();
                let (steering, mut port) = result?;
                pin(args.generator_core);
                let window = Window {
                    warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
                    duration: Duration::from_secs_f64(args.duration.max(0.1)),
                };
                let report = generate(&mut port, frames, burst, window, args.adaptive);
                drop(port);
                drop(steering);
                Ok(report)
            })();
            stop.store(true, Ordering::Relaxed);
            let counters = dut_thread
                .join()
                .map_err(|_| "the reflector/worker thread panicked")?;
            let report = generator.map_err(|e| format!("generator: {e}"))?;
            let counters = counters.map_err(|e| format!("{dut:?}: {e}"))?;
            Ok((report, counters))
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.gen_ns, &self.dut_ns] {
            let _ = Command::new("timeout")
                .args(["--kill-after=2s", "20s", "ip", "netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Open a port, waiting up to 2 s while the queue is still busy: the
/// previous run's socket stays bound until its last descriptor closes, and
/// a process that another thread forks (parallel tests spawn `ip`) holds
/// copies of every descriptor until its exec.
fn open_port(config: &AfXdpConfig, steering: &Steering) -> Result<AfXdpPort, String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match AfXdpPort::open(config, Some(steering)) {
            Ok(port) => return Ok(port),
            Err(e)
                if e.cause().raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// `ip ARGS`, bounded; its stderr in the error.
fn ip(args: &[&str]) -> Result<(), Error> {
    let out = Command::new("timeout")
        .args(["--kill-after=2s", "20s", "ip"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running ip (iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// Move the calling thread into network namespace `name`.
fn enter_netns(name: &str) -> io::Result<()> {
    let file = File::open(FsPath::new("/run/netns").join(name))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(io::Error::from)
}

/// When the generator measures.
#[derive(Debug, Clone, Copy)]
struct Window {
    warmup: Duration,
    duration: Duration,
}

/// Send `frames` round and round as fast as the port takes them, count
/// what comes back, and report the measured window.
fn generate(
    port: &mut AfXdpPort,
    frames: &[Vec<u8>],
    burst: usize,
    window: Window,
    adaptive: bool,
) -> RunReport {
    let mut rx = [Descriptor::default(); MAX_BURST];
    let mut tx = [Descriptor::default(); MAX_BURST];
    let (mut sent, mut received) = (0u64, 0u64);
    let mut next = 0;
    let started = Instant::now();
    let measure_from = started + window.warmup;
    let end = measure_from + window.duration;
    let mut mark: Option<(u64, u64, Instant)> = None;
    let mut idle = 0u32;
    loop {
        let now = Instant::now();
        if mark.is_none() && now >= measure_from {
            mark = Some((sent, received, now));
        }
        if now >= end {
            break;
        }
        let n = port.receive(&mut rx[..burst]);
        received += n as u64;
        for d in &rx[..n] {
            port.free(*d);
        }
        let mut k = 0;
        while k < burst {
            let Some(mut d) = port.alloc() else { break };
            let frame = &frames[next];
            next = (next + 1) % frames.len();
            d.len = frame.len() as u32;
            let range = d.range();
            match port.frame_mut(d.frame).get_mut(range) {
                Some(to) => to.copy_from_slice(frame),
                None => {
                    port.free(d);
                    break;
                }
            }
            tx[k] = d;
            k += 1;
        }
        let accepted = port.transmit(&tx[..k]);
        for d in &tx[accepted..k] {
            port.free(*d);
        }
        sent += accepted as u64;
        port.flush();
        if adaptive && n == 0 && accepted == 0 {
            idle = idle.saturating_add(1);
            back_off(idle);
        } else {
            idle = 0;
        }
    }
    let (sent0, received0, from) = mark.unwrap_or((0, 0, started));
    let seconds = from.elapsed().as_secs_f64().max(1e-9);
    RunReport {
        pps: (received - received0) as f64 / seconds,
        offered_pps: (sent - sent0) as f64 / seconds,
        sent: sent - sent0,
        received: received - received0,
        seconds,
    }
}

/// The raw reflector: receive, swap addresses and ports, send back.
fn reflect(mut port: AfXdpPort, burst: usize, stop: &AtomicBool, adaptive: bool) {
    let mut rx = [Descriptor::default(); MAX_BURST];
    let mut idle = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let n = port.receive(&mut rx[..burst]);
        for d in &rx[..n] {
            let range = d.range();
            if let Some(frame) = port.frame_mut(d.frame).get_mut(range) {
                swap(frame);
            }
        }
        let accepted = port.transmit(&rx[..n]);
        for d in &rx[accepted..n] {
            port.free(*d);
        }
        port.flush();
        if n == 0 {
            idle = idle.saturating_add(1);
            if adaptive {
                back_off(idle);
            } else {
                core::hint::spin_loop();
            }
        } else {
            idle = 0;
        }
    }
}

/// Swap the Ethernet addresses and, for IPv4, the addresses and (UDP,
/// TCP) ports: the checksums stay right, since both are sums.
#[inline]
fn swap(frame: &mut [u8]) {
    let Some(eth) = frame.first_chunk_mut::<14>() else {
        return;
    };
    let (dst, src) = eth.split_at_mut(6);
    dst.swap_with_slice(&mut src[..6]);
    if eth[12..14] != [0x08, 0x00] {
        return;
    }
    let Some(ip) = frame.get_mut(14..).and_then(|b| b.first_chunk_mut::<20>()) else {
        return;
    };
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let protocol = ip[9];
    let (src, dst) = ip[12..20].split_at_mut(4);
    src.swap_with_slice(dst);
    if matches!(protocol, 6 | 17) {
        if let Some(ports) = frame.get_mut(14 + ihl..14 + ihl + 4) {
            let (a, b) = ports.split_at_mut(2);
            a.swap_with_slice(b);
        }
    }
}

/// The LNS worker over `port` with the testkit's tables, one-armed: the
/// LAC and the gateway are both behind `port`, and the gateway's MAC is
/// the generator's.
fn lns(
    port: AfXdpPort,
    sessions: usize,
    burst: usize,
    stop: &AtomicBool,
    adaptive: bool,
) -> Result<Counters, String> {
    let config = WorkerConfig {
        burst,
        mode: if adaptive {
            PollMode::Adaptive
        } else {
            PollMode::BusyPoll
        },
        ..lab::config(Role::Lns, sessions)
    };
    let mut worker = Worker::new(config, vec![port]).map_err(|e| e.to_string())?;
    let channels = worker.channels();
    for update in lab::updates(Role::Lns, sessions) {
        let mut update = match update {
            Update::UpsertNeighbour { addr, .. } => Update::UpsertNeighbour {
                addr,
                neighbour: Neighbour {
                    mac: lab::PEER_MAC,
                    port: 0,
                },
            },
            other => other,
        };
        while let Err(back) = channels.send(update) {
            worker.apply_all_updates();
            update = back;
        }
    }
    worker.apply_all_updates();
    while let Some(event) = channels.poll_event() {
        if let Event::Refused { .. } = event {
            return Err(format!("the worker refused an update: {event:?}"));
        }
    }
    worker.run(stop);
    Ok(worker.counters().clone())
}

/// Spin, then yield, then sleep briefly (the worker's adaptive mode).
fn back_off(idle: u32) {
    if idle < 64 {
        core::hint::spin_loop();
    } else if idle < 128 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_exchanges_addresses_and_ports_only() {
        let mut f = lab::lns_upstream(0, 8, Encoding::default());
        let orig = f.clone();
        swap(&mut f);
        assert_eq!(f[..6], orig[6..12]);
        assert_eq!(f[6..12], orig[..6]);
        assert_eq!(f[14 + 12..14 + 16], orig[14 + 16..14 + 20]);
        assert_eq!(f[14 + 16..14 + 20], orig[14 + 12..14 + 16]);
        assert_eq!(f[34..36], orig[36..38]);
        assert_eq!(f[36..38], orig[34..36]);
        assert_eq!(f[38..], orig[38..]);
        swap(&mut f);
        assert_eq!(f, orig, "swapping twice is the identity");
        for cut in 0..40 {
            swap(&mut orig.clone()[..cut]);
        }
    }

    /// Runs the whole thing for about a second (root): both rates are
    /// above zero and the worker dropped nothing. Not a timing assertion.
    #[test]
    fn linerate_smoke() {
        if !rustix::process::geteuid().is_root() {
            panic!("linerate_smoke needs root (namespaces, veth, BPF, AF_XDP); run it as root, as CI does");
        }
        let args = Args {
            duration: 0.4,
            warmup: 0.1,
            sessions: 100,
            adaptive: true,
            ..Args::default()
        };
        let report = measure(&args).unwrap();
        assert!(report.reflector.pps > 0.0, "{report:?}");
        assert!(report.lns.pps > 0.0, "{report:?}");
        assert!(report.ratio > 0.0);
        let pid = std::process::id();
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(!list.contains(&format!("l2lr-{pid}-")), "left over: {list}");
    }
}
