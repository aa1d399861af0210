//! `l2bench`: the subscriber emulator, traffic generator and line-rate
//! benchmark. Each subcommand lives in its own module of the `bench`
//! library; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Subscriber emulator, traffic generator and line-rate benchmark for the
/// LAC/LNS (see bench/README.md).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Emulate PPPoE subscribers (or a LAC with PPP sessions straight over
    /// L2TP), bring them up, run traffic both ways and report.
    Run(Box<bench::subscribers::Args>),
    /// Drive an LNS worker and a raw AF_XDP reflector over veth pairs and
    /// report both rates and their ratio.
    Linerate(bench::linerate::Args),
    /// Two LNS peerings over loopback: bulk-sync sessions from one to the
    /// other, then offload changes; report the sync's wall time and the
    /// offload lag, and check the peer's store.
    Hasync(bench::hasync::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => bench::subscribers::run(&args),
        Command::Linerate(args) => bench::linerate::run(&args),
        Command::Hasync(args) => bench::hasync::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l2bench: {e}");
            ExitCode::FAILURE
        }
    }
}
