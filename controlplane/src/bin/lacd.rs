//! `lacd`: the LAC daemon. For now only its L2TP control plane, as a client
//! that opens a tunnel to an LNS, opens incoming calls on it, keeps them up
//! for a while logging what arrives, and tears everything down cleanly. The
//! PPPoE access side comes later.

mod common;

use std::net::{SocketAddrV4, UdpSocket};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use controlplane::driver::{os_rng, Driver};
use controlplane::l2tp::codes::{cdn, stop_ccn};
use controlplane::l2tp::{CallParams, Config, Endpoint, Event, ResultCode};
use tracing::{error, info, warn};

use common::BoxError;

/// An L2TPv2 LAC (RFC 2661): opens a tunnel to an LNS and N incoming calls
/// on it, keeps them up for --hold seconds logging every event and data
/// message (the LNS's PPP), then closes the calls (CDN) and the tunnel
/// (StopCCN) and exits 0 once the LNS has acknowledged. Exits 1 if the
/// sessions do not all come up within --timeout. Logs go to stderr
/// (RUST_LOG filters, default "info").
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The LNS: IPv4 address and UDP port.
    #[arg(long, value_name = "ADDR:PORT")]
    lns: SocketAddrV4,

    /// Our IPv4 address and UDP port (1701 is usual; 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:0")]
    bind: SocketAddrV4,

    /// Tunnel secret shared with the LNS: answers its Challenge (RFC 2661
    /// §5.1.1) and reveals hidden AVPs.
    #[arg(long)]
    secret: Option<String>,

    /// Challenge the LNS and refuse it if it does not prove the secret.
    #[arg(long, requires = "secret")]
    require_auth: bool,

    /// Our Host Name AVP.
    #[arg(long, default_value = "lacd")]
    hostname: String,

    /// How many incoming calls (sessions) to open.
    #[arg(long, default_value_t = 1)]
    sessions: u32,

    /// Seconds to keep the sessions up once they all are.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    hold: u64,

    /// Seconds the tunnel and every session get to come up.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    timeout: u64,
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
    let mut config = Config::lac(args.hostname.clone());
    config.secret = args.secret.as_ref().map(|s| s.as_bytes().to_vec());
    config.require_authentication = args.require_auth;
    let endpoint = Endpoint::new(config, os_rng()?)?;
    let socket = UdpSocket::bind(args.bind)
        .map_err(|e| format!("cannot bind {} (--bind): {e}", args.bind))?;
    let mut driver = Driver::new(socket, endpoint)?;
    info!(local = %driver.local_addr()?, lns = %args.lns, "connecting");

    let now = driver.now();
    let tunnel = driver.node_mut().connect(now, args.lns)?;
    let mut sessions = Vec::new();
    for _ in 0..args.sessions {
        // The ICRQs wait in the endpoint until the tunnel is up.
        sessions.push(
            driver
                .node_mut()
                .open_session(now, tunnel, CallParams::default())?,
        );
    }

    // Up: the tunnel and every session.
    let mut up = 0u32;
    let mut failure = None;
    let deadline = driver.now() + Duration::from_secs(args.timeout);
    driver.run_until(deadline, |_, event| {
        common::log_event(&event);
        match &event {
            Event::SessionUp { .. } => up += 1,
            Event::SessionDown { .. } => failure = Some("a session went down while coming up"),
            Event::TunnelDown { .. } => failure = Some("the tunnel went down while coming up"),
            _ => {}
        }
        if failure.is_some() || up == args.sessions {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if let Some(why) = failure {
        return Err(why.into());
    }
    if up < args.sessions {
        return Err(format!(
            "only {up} of {} sessions came up within {} s (--timeout)",
            args.sessions, args.timeout
        )
        .into());
    }
    info!(sessions = up, hold_seconds = args.hold, "all sessions up");

    // Hold: log what the LNS sends (its PPP, in data messages).
    let mut lost = false;
    let deadline = driver.now() + Duration::from_secs(args.hold);
    driver.run_until(deadline, |_, event| {
        common::log_event(&event);
        lost |= matches!(event, Event::TunnelDown { .. });
        if lost {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if lost {
        return Err("the LNS closed the tunnel while the sessions were up".into());
    }

    // Down: CDN for each call, then StopCCN, each acknowledged.
    let now = driver.now();
    for session in sessions {
        if let Err(e) =
            driver
                .node_mut()
                .close_session(now, session, ResultCode::new(cdn::ADMINISTRATIVE))
        {
            warn!(session = session.id, "cannot close session: {e}");
        }
    }
    if !common::settle(&mut driver, common::SHUTDOWN_GRACE)? {
        warn!("the LNS did not acknowledge every CDN");
    }
    if !common::shutdown(&mut driver, stop_ccn::GENERAL_REQUEST)? {
        return Err("the LNS did not acknowledge our StopCCN".into());
    }
    Ok(())
}
