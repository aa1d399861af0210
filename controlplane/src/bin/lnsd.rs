//! `lnsd`: the LNS daemon. It accepts tunnels and incoming calls from LACs,
//! terminates each subscriber's PPP (LCP, PAP/CHAP, IPCP), authenticates
//! against a local users file or RADIUS, assigns addresses from a pool and
//! logs every session up and down with the user and the address. The data
//! plane and the HA extension come later; the full TOML configuration too
//! (these flags are the small honest subset).

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::radius::{Client, ClientConfig, Server};
use controlplane::aaa::users::Users;
use controlplane::aaa::Authenticator;
use controlplane::driver::{os_rng, Driver};
use controlplane::l2tp::codes::stop_ccn;
use controlplane::lns;
use controlplane::ppp::ProxyPolicy;
use tracing::{error, info, warn};

use common::BoxError;

/// What to do with the LAC's proxy LCP and authentication (RFC 2661
/// §4.4.5).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Proxy {
    /// Take the LAC's negotiation when acceptable.
    Accept,
    /// Always renegotiate LCP with the subscriber.
    Renegotiate,
}

/// An L2TPv2 LNS (RFC 2661) that terminates PPP: accepts tunnels and
/// incoming calls from LACs, authenticates subscribers with PAP or CHAP
/// against --users or --radius, gives them addresses from --pool, and logs
/// every tunnel and session to stderr (RUST_LOG filters, default "info").
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// IPv4 address and UDP port to listen on. RADIUS requests leave from
    /// the same socket.
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

    /// Our Host Name AVP, and the name in our CHAP Challenges.
    #[arg(long, default_value = "lnsd")]
    hostname: String,

    /// Seconds between Hellos on an idle tunnel (RFC 2661 §6.5); 0 disables.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    hello: u64,

    /// The local users file (format: controlplane::aaa::users): who may log
    /// in when no --radius is given. With neither, every subscriber is
    /// refused (tunnels and calls still come up).
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,

    /// Subscriber addresses: a range `10.64.0.10-10.64.3.250` or a CIDR
    /// block `10.64.0.0/22`; repeat for more ranges.
    #[arg(long, value_name = "RANGE", default_value = "100.64.0.0/22")]
    pool: Vec<String>,

    /// Our IPCP address (the subscribers' next hop). Default: the first
    /// address of the first --pool range, taken out of the pool.
    #[arg(long, value_name = "ADDR")]
    gateway: Option<Ipv4Addr>,

    /// DNS server offered to subscribers (RFC 1877); give it twice for a
    /// primary and a secondary.
    #[arg(long, value_name = "ADDR")]
    dns: Vec<Ipv4Addr>,

    /// RADIUS authentication server (replaces --users); repeat for
    /// failover, in order of preference.
    #[arg(long, value_name = "ADDR:PORT", requires = "radius_secret")]
    radius: Vec<SocketAddr>,

    /// RADIUS accounting server; repeat for failover. Default: each
    /// --radius server at its port + 1.
    #[arg(long, value_name = "ADDR:PORT", requires = "radius")]
    radius_acct: Vec<SocketAddr>,

    /// The secret shared with the RADIUS servers.
    #[arg(long, value_name = "SECRET")]
    radius_secret: Option<String>,

    /// Seconds between accounting Interim-Updates (0: only when RADIUS
    /// sends Acct-Interim-Interval).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    interim: u64,

    /// Proxy LCP and authentication from the LAC's ICCN.
    #[arg(long, value_enum, default_value_t = Proxy::Accept)]
    proxy: Proxy,

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

fn authenticator(args: &Args) -> Result<Authenticator, BoxError> {
    if args.radius.is_empty() {
        let Some(path) = &args.users else {
            warn!("neither --users nor --radius: every subscriber will be refused");
            return Ok(Authenticator::local(Users::parse("", "(none)")?));
        };
        let users = Users::load(path)?;
        info!(file = %path.display(), users = users.len(), "local users file");
        return Ok(Authenticator::local(users));
    }
    let secret = args
        .radius_secret
        .as_ref()
        .ok_or("--radius needs --radius-secret")?
        .as_bytes()
        .to_vec();
    let server = |address: SocketAddr| Server {
        address,
        secret: secret.clone(),
    };
    let acct: Vec<SocketAddr> = if args.radius_acct.is_empty() {
        args.radius
            .iter()
            .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
            .collect()
    } else {
        args.radius_acct.clone()
    };
    let mut config = ClientConfig::new(
        args.radius.iter().copied().map(server).collect(),
        acct.iter().copied().map(server).collect(),
    );
    config.nas_identifier = Some(args.hostname.clone());
    config.nas_ip_address = Some(*args.listen.ip()).filter(|a| !a.is_unspecified());
    config.interim_interval = (args.interim > 0).then(|| Duration::from_secs(args.interim));
    info!(auth = ?args.radius, acct = ?acct, "RADIUS");
    Ok(Authenticator::Radius(Box::new(Client::new(
        config,
        os_rng()?,
    )?)))
}

fn run(args: &Args) -> Result<(), BoxError> {
    let mut pool = AddressPool::parse(&args.pool).map_err(|e| format!("--pool: {e}"))?;
    let gateway = match args.gateway {
        Some(g) => g,
        None => {
            let first = pool
                .ranges()
                .first()
                .ok_or("--pool holds no address")?
                .first();
            pool.reserve(first)
                .map_err(|e| format!("--pool: gateway {first}: {e}"))?;
            first
        }
    };
    let mut config = lns::Config::new(args.hostname.clone(), gateway);
    config.l2tp.secret = args.secret.as_ref().map(|s| s.as_bytes().to_vec());
    config.l2tp.require_authentication = args.require_auth;
    config.l2tp.hello_interval = (args.hello > 0).then(|| Duration::from_secs(args.hello));
    config.ppp.proxy = match args.proxy {
        Proxy::Accept => ProxyPolicy::Accept,
        Proxy::Renegotiate => ProxyPolicy::Renegotiate,
    };
    config.primary_dns = args.dns.first().copied();
    config.secondary_dns = args.dns.get(1).copied();
    let node = lns::Node::new(config, authenticator(args)?, pool, os_rng()?)?;
    let socket = UdpSocket::bind(args.listen)
        .map_err(|e| format!("cannot listen on {} (--listen): {e}", args.listen))?;
    let mut driver = Driver::new(socket, node)?;
    info!(
        listen = %driver.local_addr()?,
        host_name = %args.hostname,
        %gateway,
        pool = ?args.pool,
        "listening"
    );

    let end = args.duration.map(|s| driver.now() + Duration::from_secs(s));
    loop {
        // Event-Timestamp in accounting follows the wall clock; tell the
        // RADIUS client where it is now and then.
        let now = driver.now();
        if let (Some(radius), Ok(wall)) = (
            driver.node_mut().radius_mut(),
            SystemTime::now().duration_since(UNIX_EPOCH),
        ) {
            radius.set_wall_clock(now, wall);
        }
        // Without --duration, run in minute-long slices: the driver's runs
        // are always bounded.
        let slice = driver.now() + Duration::from_secs(60);
        let deadline = end.map_or(slice, |e| e.min(slice));
        driver.run_until(deadline, |_, event| {
            common::log_lns_event(&event);
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
