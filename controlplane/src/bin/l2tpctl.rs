//! `l2tpctl`: the operator's command line over a daemon's control socket
//! (`lnsd` or `lacd`, `[control] socket` in their configuration).
//!
//! ```text
//! l2tpctl --socket /run/l2lab/lns1.sock show sessions
//! l2tpctl --socket /run/l2lab/lns1.sock show stats --json
//! l2tpctl --socket /run/l2lab/lns1.sock clear session 12
//! ```
//!
//! `show` prints a table (one row per tunnel or session) or `key: value`
//! lines (stats); `--json` prints the daemon's data as it came. Exit status
//! 0 on success, 1 when the daemon refused the command, 2 when it could not
//! be reached.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use controlplane::ctl::{self, Clear, Request, Show};

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
    /// HA commands (passed to the daemon as they are).
    Ha {
        /// The words after `ha`.
        args: Vec<String>,
        /// Print the daemon's JSON.
        #[arg(long)]
        json: bool,
    },
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
        Command::Ha { args, json } => (Request::Ha { args }, json),
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
