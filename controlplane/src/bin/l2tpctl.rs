//! `l2tpctl`: the operator's command line over a daemon's control socket
//! (`lnsd` or `lacd`, `[control] socket` in their configuration).
//!
//! ```text
//! l2tpctl --socket /run/l2lab/lns1.sock show sessions
//! l2tpctl --socket /run/l2lab/lns1.sock show stats --json
//! l2tpctl --socket /run/l2lab/lns1.sock clear session 12
//! l2tpctl --socket /run/l2lab/lns1.sock ha status
//! l2tpctl --socket /run/l2lab/lns1.sock ha switchover all
//! l2tpctl --socket /run/l2lab/lns1.sock ha switchover 12 13
//! ```
//!
//! HA (`ha`): `status` (both daemons: peers, offload lag, load, moves),
//! `drain` (ask every LAC to move every session to the peers and send new
//! calls there, for maintenance), `switchover all|new|SESSION...` (ask the
//! LACs to move all sessions, only new calls, or the sessions listed by
//! their `show sessions` id), `failback` (give adopted sessions back to
//! their primary, or stop steering new calls away from this LNS). The
//! LNS-only commands answer with the number of LACs asked; the LACs' answers
//! (STPLRP) show in the daemon's log and in `ha status`.
//!
//! `show` prints a table (one row per tunnel or session) or `key: value`
//! lines (stats); `--json` prints the daemon's data as it came. Exit status
//! 0 on success, 1 when the daemon refused the command, 2 when it could not
//! be reached.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use controlplane::ctl::{self, Clear, HaCommand, Request, Show};

/// Ask a running lnsd or lacd what it holds, or tell it to clear a session
/// or a tunnel.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The daemon's control socket (`[control] socket` of its config).
    #[arg(long, value_name = "PATH", default_value = "/run/lnsd.sock")]
    socket: PathBuf,

    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    timeout: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show tunnels, sessions or counters.
    Show {
        /// What to show.
        what: ShowWhat,
        /// Print the daemon's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Clear a session (CDN) or a tunnel (StopCCN) by the id `show` lists.
    Clear {
        /// What to clear.
        what: ClearWhat,
        /// Its id (the ID column of `show`).
        id: u64,
    },
    /// HA: status, drain, switchover all|new|SESSION..., failback.
    Ha {
        /// What to do.
        #[command(subcommand)]
        what: HaWhat,
        /// Print the daemon's JSON.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum HaWhat {
    /// Peers and their connection state, offload lag (p50/p99), sessions
    /// offloaded, adopted and fenced, load state, switchovers asked and
    /// answered.
    Status,
    /// Move every session to the peers and steer new calls there (LNS).
    Drain,
    /// Ask the LACs to move sessions to the peers (LNS): `all`, `new` (new
    /// calls only), or session ids as `show sessions` lists them.
    Switchover {
        /// all, new, or SESSION...
        #[arg(required = true, value_name = "all|new|SESSION")]
        what: Vec<String>,
    },
    /// Give adopted sessions back to their primary, or stop steering new
    /// calls away from this LNS.
    Failback,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ShowWhat {
    Tunnels,
    Sessions,
    Stats,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ClearWhat {
    Session,
    Tunnel,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (request, json) = match args.command {
        Command::Show { what, json } => {
            let what = match what {
                ShowWhat::Tunnels => Show::Tunnels,
                ShowWhat::Sessions => Show::Sessions,
                ShowWhat::Stats => Show::Stats,
            };
            (Request::Show { what }, json)
        }
        Command::Clear { what, id } => {
            let what = match what {
                ClearWhat::Session => Clear::Session,
                ClearWhat::Tunnel => Clear::Tunnel,
            };
            (Request::Clear { what, id }, false)
        }
        Command::Ha { what, json } => {
            let words: Vec<String> = match what {
                HaWhat::Status => vec!["status".into()],
                HaWhat::Drain => vec!["drain".into()],
                HaWhat::Failback => vec!["failback".into()],
                HaWhat::Switchover { what } => std::iter::once("switchover".to_owned())
                    .chain(what)
                    .collect(),
            };
            match HaCommand::parse(&words) {
                Ok(command) => (Request::ha(&command), json),
                Err(e) => {
                    eprintln!("l2tpctl: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let reply = match ctl::request(
        &args.socket,
        &request,
        Duration::from_secs(args.timeout.max(1)),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("l2tpctl: {e}");
            return ExitCode::from(2);
        }
    };
    match reply.result() {
        Ok(data) if json => {
            println!("{data}");
            ExitCode::SUCCESS
        }
        Ok(data) => match ctl::render(data) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("l2tpctl: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("l2tpctl: {e}");
            ExitCode::FAILURE
        }
    }
}
