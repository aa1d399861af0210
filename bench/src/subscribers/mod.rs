//! `l2bench run`: emulated subscribers with traffic both ways, and a
//! report.
//!
//! * [`emulator`]: PPPoE subscribers (discovery, LCP, CHAP/PAP, IPCP),
//!   sans-IO.
//! * [`l2tp`]: mode `l2tp`, a LAC with PPP sessions straight over L2TP
//!   ([`controlplane::subscriber::Node`]) for LNS-only tests.
//! * [`stream`]: the probe in every test packet and the per-stream
//!   statistics; [`traffic`]: the packets and their pacing.
//! * [`report`]: the JSON report (schema in bench/README.md) and the
//!   human summary.
//! * [`runner`]: the threads: the subscribers' side in `--netns` on a raw
//!   port, the traffic side in `--traffic-netns` on a UDP socket.

pub mod emulator;
pub mod l2tp;
pub mod port;
pub mod report;
pub mod runner;
pub mod stream;
#[cfg(test)]
mod tests;
pub mod traffic;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

/// Which subscribers to emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// PPPoE subscribers on a raw Ethernet port (in front of a LAC).
    Pppoe,
    /// A LAC with PPP sessions straight over L2TP (in front of an LNS).
    L2tp,
}

/// How the PPPoE subscribers reach their interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    /// An AF_PACKET raw socket (any interface, through the kernel).
    Packet,
    /// AF_XDP, copy mode, with a steering program that takes every frame
    /// of the interface (the kernel sees none of them).
    Afxdp,
}

/// Authentication the subscribers agree to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Auth {
    /// CHAP-MD5 only.
    Chap,
    /// PAP only.
    Pap,
    /// Whichever the server asks for.
    Either,
}

impl From<Auth> for controlplane::subscriber::AuthChoice {
    fn from(a: Auth) -> Self {
        match a {
            Auth::Chap => Self::Chap,
            Auth::Pap => Self::Pap,
            Auth::Either => Self::Either,
        }
    }
}

/// Arguments of `l2bench run`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// pppoe: subscribers on --interface; l2tp: a LAC toward --lns.
    #[arg(long, value_enum, default_value = "pppoe")]
    pub mode: Mode,
    /// Network namespace of the subscribers' side (name under /run/netns
    /// or a path); none: stay in the current one.
    #[arg(long)]
    pub netns: Option<String>,
    /// pppoe: the interface the subscribers are on.
    #[arg(long, default_value = "cpe0")]
    pub interface: String,
    /// pppoe: the raw port on --interface.
    #[arg(long, value_enum, default_value = "packet")]
    pub io: Io,
    /// l2tp: the LNS to call.
    #[arg(long, default_value = "10.0.0.11:1701")]
    pub lns: SocketAddrV4,
    /// l2tp: the local address to bind (port 0: any).
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: SocketAddrV4,
    /// l2tp: the tunnel secret (none: no tunnel authentication).
    #[arg(long)]
    pub secret: Option<String>,
    /// How many subscribers.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// The number of the first subscriber (user "sub{N}").
    #[arg(long, default_value_t = 0)]
    pub first_subscriber: usize,
    /// Every subscriber's password.
    #[arg(long, default_value = "lab")]
    pub password: String,
    /// Authentication the subscribers agree to.
    #[arg(long, value_enum, default_value = "chap")]
    pub auth: Auth,
    /// Subscribers setting up (discovery to IPCP up) at once at most.
    #[arg(long, default_value_t = 64)]
    pub max_setting_up: usize,
    /// Give up waiting for sessions after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub setup_timeout: f64,
    /// Network namespace of the traffic side (none: the current one).
    #[arg(long)]
    pub traffic_netns: Option<String>,
    /// The traffic side's address (in --traffic-netns): upstream packets go
    /// there, downstream ones come from there. None: no traffic.
    #[arg(long)]
    pub traffic_addr: Option<Ipv4Addr>,
    /// Packets per second in each direction, summed over all subscribers
    /// (each subscriber's stream gets RATE / subscribers up).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// UDP payload bytes per test packet (at least 24, the probe).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds of traffic once the sessions are up.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds into the traffic at which to run `--event-command` (an HA
    /// test: kill an LNS, ask for a switchover); the report then gives each
    /// direction's gaps after that moment.
    #[arg(long, requires = "event_command")]
    pub event_at: Option<f64>,
    /// The event: a shell command (`sh -c`), run from the namespace
    /// l2bench was started in, its output on stderr.
    #[arg(long, requires = "event_at")]
    pub event_command: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Exit non-zero when any test packet was lost.
    #[arg(long)]
    pub expect_zero_loss: bool,
    /// Do not hang the subscribers up at the end (leave the sessions).
    #[arg(long)]
    pub no_hang_up: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Seed for magic numbers, Host-Uniqs and CHAP.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Run the scenario: bring the subscribers up, run the traffic, write the
/// report; an error when not all sessions came up or (with
/// `--expect-zero-loss`) a packet was lost.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let report = runner::run(args)?;
    println!("{report}");
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write the report to {}: {e}", path.display()))?;
    }
    if !report.all_up() {
        return Err(format!(
            "{} of {} sessions came up",
            report.sessions_up, report.sessions_requested
        )
        .into());
    }
    if args.expect_zero_loss && report.lost() > 0 {
        return Err(format!(
            "{} packets lost (upstream {}, downstream {})",
            report.lost(),
            report.upstream.lost,
            report.downstream.lost
        )
        .into());
    }
    Ok(())
}
