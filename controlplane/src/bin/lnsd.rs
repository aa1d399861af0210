//! `lnsd`: the LNS daemon. For now only its L2TP control plane: it accepts
//! tunnels and incoming calls from LACs and logs what happens. PPP
//! termination, the data plane and the HA extension come later.

mod common;

use std::net::{SocketAddrV4, UdpSocket};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use controlplane::driver::{os_rng, Driver};
use controlplane::l2tp::codes::stop_ccn;
use controlplane::l2tp::{Config, Endpoint};
use tracing::{error, info};

use common::BoxError;

/// An L2TPv2 LNS (RFC 2661): accepts tunnels and incoming calls from LACs
/// and logs every tunnel and session event to stderr (RUST_LOG filters,
/// default "info"). Data messages are logged, not forwarded: PPP and the data
/// plane are not wired in yet.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// IPv4 address and UDP port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:1701")]
    listen: SocketAddrV4,

    /// Tunnel secret shared with the LACs: answers their Challenge (RFC 2661
    /// §5.1.1) and reveals hidden AVPs. Without it, a LAC that challenges us
    /// is refused.
    #[arg(long)]
    secret: Option<String>,

    /// Challenge every LAC and refuse those that do not prove the secret.
    #[arg(long, requires = "secret")]
    require_auth: bool,

    /// Our Host Name AVP.
    #[arg(long, default_value = "lnsd")]
    hostname: String,

    /// Seconds between Hellos on an idle tunnel (RFC 2661 §6.5); 0 disables.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    hello: u64,

    /// Stop after this many seconds, closing every tunnel with StopCCN.
    /// Without it, lnsd runs until it is killed.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), BoxError> {
    let mut config = Config::lns(args.hostname.clone());
    config.secret = args.secret.as_ref().map(|s| s.as_bytes().to_vec());
    config.require_authentication = args.require_auth;
    config.hello_interval = (args.hello > 0).then(|| Duration::from_secs(args.hello));
    let endpoint = Endpoint::new(config, os_rng()?)?;
    let socket = UdpSocket::bind(args.listen)
        .map_err(|e| format!("cannot listen on {} (--listen): {e}", args.listen))?;
    let mut driver = Driver::new(socket, endpoint)?;
    info!(listen = %driver.local_addr()?, host_name = %args.hostname, "listening");

    let end = args.duration.map(|s| driver.now() + Duration::from_secs(s));
    loop {
        // Without --duration, run in hour-long slices: the driver's runs are
        // always bounded.
        let slice = driver.now() + Duration::from_secs(3600);
        let deadline = end.map_or(slice, |e| e.min(slice));
        driver.run_until(deadline, |_, event| {
            common::log_event(&event);
            ControlFlow::Continue(())
        })?;
        if end.is_some_and(|e| driver.now() >= e) {
            break;
        }
    }
    info!("duration reached, closing every tunnel");
    common::shutdown(&mut driver, stop_ccn::SHUTTING_DOWN)?;
    Ok(())
}
