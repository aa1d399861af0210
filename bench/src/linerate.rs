//! `l2bench linerate`: LNS worker vs raw AF_XDP reflector (being written).

/// Arguments of `l2bench linerate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run the benchmark.
pub fn run(_args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    Err("l2bench linerate: not built yet".into())
}
