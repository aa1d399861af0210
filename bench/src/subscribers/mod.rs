//! `l2bench run`: emulated subscribers with traffic (being written).

/// Arguments of `l2bench run`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run the scenario.
pub fn run(_args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    Err("l2bench run: not built yet".into())
}
