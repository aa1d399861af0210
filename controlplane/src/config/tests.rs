use std::path::Path;

use super::*;

const LNS_EXAMPLE: &str = include_str!("../../../deploy/examples/lnsd.toml");
const LAC_EXAMPLE: &str = include_str!("../../../deploy/examples/lacd.toml");

fn file() -> &'static Path {
    Path::new("/etc/l2tp/test.toml")
}

/// Parses `text` as an LNS file and returns the error, checking that it
/// names the file and `key`.
#[track_caller]
fn lns_error(text: &str, key: &str) -> ConfigError {
    let e = LnsConfig::parse(text, file()).expect_err("should be refused");
    assert_eq!(e.file, file(), "{e}");
    assert_eq!(e.key, key, "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with("/etc/l2tp/test.toml"), "{shown}");
    assert!(shown.contains(key), "{shown}");
    e
}

#[track_caller]
fn lac_error(text: &str, key: &str) -> ConfigError {
    let e = LacConfig::parse(text, file()).expect_err("should be refused");
    assert_eq!(e.file, file(), "{e}");
    assert_eq!(e.key, key, "{e}");
    assert!(e.to_string().contains(key), "{e}");
    e
}

const LAC_MIN: &str = "[[lns]]\naddress = \"10.0.0.11\"\n";

#[test]
fn the_examples_parse_with_lab_values() {
    let lns = LnsConfig::parse(LNS_EXAMPLE, Path::new("lnsd.toml")).unwrap();
    assert_eq!(lns.listen.to_string(), "10.0.0.11:1701");
    assert_eq!(lns.pool, ["100.64.0.0/22"]);
    assert_eq!(lns.control.socket, Path::new("/run/l2lab/lns1.sock"));
    assert_eq!(
        lns.dataplane.core_next_hop,
        Some("10.1.0.2".parse().unwrap())
    );
    let (pool, gateway) = lns.address_pool().unwrap();
    assert_eq!(gateway.to_string(), "100.64.0.1");
    assert!(pool.is_in_use(gateway));

    let lac = LacConfig::parse(LAC_EXAMPLE, Path::new("lacd.toml")).unwrap();
    assert_eq!(lac.lns.len(), 2);
    assert_eq!(lac.lns[1].address.to_string(), "10.0.0.12:1701");
    assert_eq!(lac.pppoe.interface, "access0");
    assert_eq!(lac.control.socket, Path::new("/run/l2lab/lac.sock"));
}

#[test]
fn the_examples_still_parse_with_the_fast_path_on() {
    let text = LNS_EXAMPLE.replace("enabled = false", "enabled = true");
    let lns = LnsConfig::parse(&text, file()).unwrap();
    assert!(lns.dataplane.enabled);
    let text = LAC_EXAMPLE.replace("enabled = false", "enabled = true");
    assert!(LacConfig::parse(&text, file()).unwrap().dataplane.enabled);
}

#[test]
fn an_empty_lns_file_is_the_defaults() {
    let lns = LnsConfig::parse("", file()).unwrap();
    assert_eq!(lns, LnsConfig::default());
    assert_eq!(
        lns.hello_interval(),
        Some(std::time::Duration::from_secs(60))
    );
}

#[test]
fn a_lac_needs_an_lns_and_takes_the_default_port() {
    lac_error("", "lns");
    let lac = LacConfig::parse(LAC_MIN, file()).unwrap();
    assert_eq!(lac.lns[0].address.to_string(), "10.0.0.11:1701");
    assert_eq!(lac.lns[0].weight, 1);
}

#[test]
fn unknown_keys_are_named_with_their_table() {
    let e = lns_error(
        "hostname = \"x\"\nlisten_addr = \"1.2.3.4:1701\"\n",
        "listen_addr",
    );
    assert_eq!(e.line, Some(2));
    assert!(e.problem.contains("unknown field"), "{e}");
    let e = lns_error("[radius]\nauth = []\nsecrt = \"x\"\n", "radius.secrt");
    assert_eq!(e.line, Some(3));
    lns_error("[control]\nsockett = \"/tmp/x\"\n", "control.sockett");
    lac_error(
        "[[lns]]\naddress = \"10.0.0.11\"\n[[lns]]\naddress = \"10.0.0.12\"\nweigth = 2\n",
        "lns[1].weigth",
    );
}

#[test]
fn bad_values_name_their_key_and_line() {
    let e = lns_error("listen = \"10.0.0.11\"\n", "listen");
    assert_eq!(e.line, Some(1));
    lns_error("hello = \"soon\"\n", "hello");
    lns_error("[dataplane]\nxdp_mode = \"fast\"\n", "dataplane.xdp_mode");
    lns_error("[dataplane]\npoll_mode = 3\n", "dataplane.poll_mode");
    lns_error("dns = [\"8.8.8\"]\n", "dns");
    lns_error("[radius]\nauth = [\"10.0.0.1\"]\n", "radius.auth");
    lns_error("[control]\nmetrics = \"localhost\"\n", "control.metrics");
    lac_error("[[lns]]\naddress = \"lns1.example\"\n", "lns[0].address");
    lac_error(&format!("mode = \"tunnel\"\n{LAC_MIN}"), "mode");
    lac_error(
        &format!("{LAC_MIN}[pppoe]\nmax_sessions = -1\n"),
        "pppoe.max_sessions",
    );
}

#[test]
fn missing_required_fields_are_named() {
    lac_error("[[lns]]\nweight = 2\n", "lns[0].address");
}

#[test]
fn not_toml_is_reported_with_its_line() {
    let e = LnsConfig::parse("hostname = \"a\"\nthis is not toml\n", file()).unwrap_err();
    assert_eq!(e.file, file());
    assert_eq!(e.line, Some(2));
}

#[test]
fn an_unreadable_file_is_named() {
    let e = LnsConfig::load(Path::new("/nonexistent/lnsd.toml")).unwrap_err();
    assert_eq!(e.file, Path::new("/nonexistent/lnsd.toml"));
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn lns_semantic_errors_name_file_key_and_line() {
    let e = lns_error("require_auth = true\n", "require_auth");
    assert_eq!(e.line, Some(1));
    lns_error("secret = \"\"\n", "secret");
    lns_error("listen = \"10.0.0.11:0\"\n", "listen");
    lns_error("hostname = \" \"\n", "hostname");
    lns_error("hello = -1\n", "hello");
    lns_error("pool = []\n", "pool");
    let e = lns_error(
        "pool = [\"100.64.0.0/22\", \"10.0.0.9-10.0.0.1\"]\n",
        "pool[1]",
    );
    assert_eq!(e.line, Some(1));
    lns_error("pool = [\"100.64.0.0/33\"]\n", "pool[0]");
    lns_error("gateway = \"0.0.0.0\"\n", "gateway");
    lns_error("dns = [\"1.1.1.1\", \"8.8.8.8\", \"9.9.9.9\"]\n", "dns");
    let e = lns_error(
        "hostname = \"x\"\n[radius]\nauth = [\"127.0.0.1:1812\"]\n",
        "radius.secret",
    );
    // No such line: the error points at the table.
    assert_eq!(e.line, Some(2));
    lns_error("[radius]\nacct = [\"127.0.0.1:1813\"]\n", "radius.acct");
    lns_error(
        "[radius]\nauth = [\"127.0.0.1:1812\"]\nsecret = \"s\"\ninterim = 5\n",
        "radius.interim",
    );
    let on =
        "listen = \"10.0.0.11:1701\"\n[dataplane]\nenabled = true\ncore_next_hop = \"10.1.0.2\"\n";
    LnsConfig::parse(on, file()).unwrap();
    lns_error(&format!("{on}wan = \"\"\n"), "dataplane.wan");
    lns_error(
        &format!("{on}core = \"a-very-long-interface-name\"\n"),
        "dataplane.core",
    );
    lns_error(&format!("{on}core = \"wan0\"\n"), "dataplane.core");
    lns_error(&format!("{on}cores = [1, 1]\n"), "dataplane.cores");
    lns_error(&format!("{on}queues = 0\n"), "dataplane.queues");
    lns_error(
        "listen = \"10.0.0.11:1701\"\n[dataplane]\nenabled = true\n",
        "dataplane.core_next_hop",
    );
    lns_error(
        "[dataplane]\nenabled = true\ncore_next_hop = \"10.1.0.2\"\n",
        "listen",
    );
    lns_error("[control]\nsocket = \"\"\n", "control.socket");
    lns_error("[control]\nlog = \"info,[[[\"\n", "control.log");
    lns_error(
        "[control]\nrealtime_priority = 100\n",
        "control.realtime_priority",
    );
    lns_error(
        "[control]\nrealtime_priority = 300\n",
        "control.realtime_priority",
    );
    lns_error(
        "[control]\nrealtime_priority = -1\n",
        "control.realtime_priority",
    );
    lns_error("users = \"\"\n", "users");
}

#[test]
fn lac_semantic_errors_name_file_and_key() {
    lac_error(&format!("require_auth = true\n{LAC_MIN}"), "require_auth");
    lac_error(&format!("hello = 0.001\n{LAC_MIN}"), "hello");
    lac_error(&format!("lockout = -3\n{LAC_MIN}"), "lockout");
    lac_error(&format!("setup_timeout = 0\n{LAC_MIN}"), "setup_timeout");
    lac_error(&format!("hold_depth = 0\n{LAC_MIN}"), "hold_depth");
    lac_error(
        &format!("{LAC_MIN}[[lns]]\naddress = \"10.0.0.11:1701\"\n"),
        "lns[1].address",
    );
    lac_error("[[lns]]\naddress = \"0.0.0.0\"\n", "lns[0].address");
    lac_error(
        "[[lns]]\naddress = \"10.0.0.11\"\nweight = 0\n",
        "lns[0].weight",
    );
    lac_error(
        &format!("{LAC_MIN}[pppoe]\ninterface = \"\"\n"),
        "pppoe.interface",
    );
    lac_error(
        &format!("{LAC_MIN}[pppoe]\nac_name = \"\"\n"),
        "pppoe.ac_name",
    );
    lac_error(
        &format!("{LAC_MIN}[pppoe]\nservice_names = [\"internet\", \"\"]\n"),
        "pppoe.service_names[1]",
    );
    lac_error(
        &format!("{LAC_MIN}[pppoe]\nmax_sessions = 0\n"),
        "pppoe.max_sessions",
    );
    lac_error(
        &format!("{LAC_MIN}[pppoe]\nmax_sessions = 2\nmax_sessions_per_mac = 3\n"),
        "pppoe.max_sessions_per_mac",
    );
    lac_error(
        &format!(
            "listen = \"10.0.0.1:1701\"\n{LAC_MIN}[dataplane]\nenabled = true\nwan = \"access0\"\n"
        ),
        "dataplane.wan",
    );
    lac_error(&format!("{LAC_MIN}[dataplane]\nenabled = true\n"), "listen");
    lac_error(
        &format!("{LAC_MIN}[control]\nsocket = \"\"\n"),
        "control.socket",
    );
}

#[test]
fn changes_split_reloadable_keys_from_the_rest() {
    let old = LnsConfig::parse(LNS_EXAMPLE, file()).unwrap();
    assert!(old.changes(&old.clone()).is_empty());
    let mut new = old.clone();
    new.control.log = Some("debug".to_owned());
    new.hostname = "lns9".to_owned();
    new.radius.auth = vec!["127.0.0.1:1812".parse().unwrap()];
    new.secret = Some("s".to_owned());
    let c = old.changes(&new);
    assert_eq!(c.apply, ["control.log", "radius.auth"]);
    assert!(c.applies("control"));
    // The RADIUS servers are swapped on reload (lns::Node::set_authenticator).
    assert!(c.applies("radius"));
    assert!(c.restart.contains(&"hostname".to_owned()), "{c:?}");
    // A key that appears (None before) counts.
    assert!(c.restart.contains(&"secret".to_owned()), "{c:?}");

    let lac = LacConfig::parse(LAC_EXAMPLE, file()).unwrap();
    let mut new = lac.clone();
    new.lockout = 5.0;
    new.pppoe.max_sessions = 10;
    new.lns[1].weight = 3;
    let c = lac.changes(&new);
    assert_eq!(c.apply, ["lockout", "pppoe.max_sessions"]);
    assert_eq!(c.restart, ["lns"]);
}

#[test]
fn the_node_config_follows_the_file() {
    let text = "hostname = \"lns7\"\nsecret = \"s\"\nrequire_auth = true\nhello = 0\nproxy = \"renegotiate\"\ndns = [\"192.0.2.53\"]\n";
    let c = LnsConfig::parse(text, file()).unwrap();
    let (_, gateway) = c.address_pool().unwrap();
    let node = c.node_config(gateway);
    assert_eq!(node.l2tp.host_name, "lns7");
    assert_eq!(node.l2tp.secret.as_deref(), Some(&b"s"[..]));
    assert!(node.l2tp.require_authentication);
    assert_eq!(node.l2tp.hello_interval, None);
    assert_eq!(node.ppp.proxy, crate::ppp::ProxyPolicy::Renegotiate);
    assert_eq!(node.primary_dns, Some("192.0.2.53".parse().unwrap()));
    assert_eq!(node.gateway.to_string(), "100.64.0.1");
}

#[test]
fn accounting_defaults_to_the_port_after_auth() {
    let text = "[radius]\nauth = [\"127.0.0.1:1812\"]\nsecret = \"s\"\n";
    let c = LnsConfig::parse(text, file()).unwrap();
    assert_eq!(c.accounting_servers(), ["127.0.0.1:1813".parse().unwrap()]);
}

const LNS_HA: &str = "\
listen = \"10.0.0.11:1701\"

[ha]
refresh = 60
hello = 0.2
dead = 0.6

[[ha.peers]]
address = \"10.0.0.12\"
secret = \"lns1-lns2\"
";

#[test]
fn the_ha_section_configures_peering_offload_and_the_lns_lns_timers() {
    let c = LnsConfig::parse(LNS_HA, file()).unwrap();
    let (_, gateway) = c.address_pool().unwrap();
    let node = c.node_config(gateway);
    let ha = node.ha.expect("[ha] given");
    assert_eq!(ha.address.to_string(), "10.0.0.11", "listen's address");
    assert_eq!(ha.peers.len(), 1);
    assert_eq!(ha.peers[0].secret, b"lns1-lns2");
    assert_eq!(
        ha.advertise,
        vec![ha.peers[0].address],
        "the peers by default"
    );
    assert_eq!(ha.offload.refresh_interval, Some(Duration::from_secs(60)));
    assert_eq!(ha.peer_link.hello_interval, Duration::from_millis(200));
    assert_eq!(ha.peer_link.dead_interval, Duration::from_millis(600));
    assert_eq!(ha.adopted_grace, Duration::from_secs(1));
    assert!(usize::from(ha.peer_link.receive_window) >= ha.offload.window);
    // Both endpoints (the LACs' and the LNS-LNS one) take it.
    let (pool, _) = c.address_pool().unwrap();
    let users = crate::aaa::users::Users::parse("", "users").unwrap();
    let rng = Box::new(<rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::seed_from_u64(1));
    let node = crate::lns::Node::new(
        c.node_config(gateway),
        crate::aaa::Authenticator::local(users),
        pool,
        rng,
    )
    .unwrap();
    assert!(node.peer_endpoint().is_some());
    assert_eq!(
        node.endpoint()
            .config()
            .ha
            .as_ref()
            .unwrap()
            .peer_lns_addresses,
        ha.advertise
    );
    // Without [ha], none.
    let plain = LnsConfig::parse("", file()).unwrap();
    assert!(plain.node_config(gateway).ha.is_none());
    // With [ha], the LAC tunnels take a recovery burst: a wider window and
    // quicker acknowledgements than the plain defaults.
    let lac_link = |c: &LnsConfig| {
        let l2tp = c.node_config(gateway).l2tp;
        (l2tp.receive_window, l2tp.ack_delay)
    };
    assert_eq!(lac_link(&c), (64, Duration::from_millis(10)));
    assert_eq!(lac_link(&plain), (16, Duration::from_millis(50)));
    // A change to [ha] needs a restart.
    let mut other = c.clone();
    other.ha.as_mut().unwrap().window = 128;
    assert_eq!(c.changes(&other).restart, ["ha.window"]);
}

#[test]
fn ha_errors_name_their_key() {
    lns_error("[ha]\n", "ha.peers");
    lns_error(
        "[ha]\n[[ha.peers]]\naddress = \"10.0.0.12\"\nsecret = \"s\"\n",
        "ha.address",
    );
    lns_error(
        "listen = \"10.0.0.11:1701\"\n[ha]\n[[ha.peers]]\naddress = \"10.0.0.12\"\nsecret = \"\"\n",
        "ha.peers[0].secret",
    );
    lns_error(
        "listen = \"10.0.0.11:1701\"\n[ha]\nwindow = 0\n[[ha.peers]]\naddress = \"10.0.0.12\"\nsecret = \"s\"\n",
        "ha.window",
    );
    lns_error(
        "listen = \"10.0.0.11:1701\"\n[ha]\nack_delay = 1.0\n[[ha.peers]]\naddress = \"10.0.0.12\"\nsecret = \"s\"\n",
        "ha.ack_delay",
    );
}

#[test]
fn ha_load_sets_the_watermarks_hold_and_switchover() {
    let text = format!(
        "{LNS_HA}\n[ha.load]\nsessions_high = 50000\nsessions_low = 40000\ncpu_high = 85\ncpu_low = 60\nmemory_high = 0\nhold = 2.5\nswitchover = \"all\"\n"
    );
    let c = LnsConfig::parse(&text, file()).unwrap();
    let load =
        c.ha.as_ref()
            .unwrap()
            .load
            .as_ref()
            .expect("[ha.load] given");
    assert_eq!(load.switchover, LoadSwitchover::All);
    let m = load.monitor();
    let w = |high, low| Some(crate::ha::load::Watermarks { high, low });
    assert_eq!(m.sessions, w(50_000.0, 40_000.0));
    assert_eq!(m.cpu_percent, w(85.0, 60.0));
    assert_eq!(m.memory_percent, None, "memory_high = 0: not watched");
    assert_eq!(m.hold, Duration::from_millis(2500));
    let (_, gateway) = c.address_pool().unwrap();
    let node = c.node_config(gateway).ha.unwrap();
    assert_eq!(node.load, Some(m));
    assert_eq!(node.switchover_kind, crate::lns::SwitchoverType::All);
    // The defaults: CPU and memory as the monitor's, new calls only.
    let c = LnsConfig::parse(&format!("{LNS_HA}\n[ha.load]\n"), file()).unwrap();
    let load = c.ha.unwrap().load.unwrap();
    assert_eq!(load.monitor(), crate::ha::load::LoadConfig::default());
    assert_eq!(load.switchover, LoadSwitchover::New);
    // Without [ha.load], no monitor.
    let c = LnsConfig::parse(LNS_HA, file()).unwrap();
    let (_, gateway) = c.address_pool().unwrap();
    assert_eq!(c.node_config(gateway).ha.unwrap().load, None);
    assert!(c.ha.unwrap().load.is_none());
}

#[test]
fn ha_load_errors_name_their_key_and_line() {
    let with = |body: &str| format!("{LNS_HA}\n[ha.load]\n{body}");
    let e = lns_error(
        &with("sessions_high = 100\nsessions_low = 100\n"),
        "ha.load.sessions_low",
    );
    assert_eq!(e.line, Some(LNS_HA.lines().count() + 4), "{e}");
    assert!(e.problem.contains("below ha.load.sessions_high"), "{e}");
    lns_error(&with("sessions_low = 10\n"), "ha.load.sessions_low");
    lns_error(&with("cpu_high = 120\n"), "ha.load.cpu_high");
    lns_error(&with("cpu_low = 95\n"), "ha.load.cpu_low");
    lns_error(
        &with("memory_high = 50\nmemory_low = 60\n"),
        "ha.load.memory_low",
    );
    lns_error(&with("hold = -1\n"), "ha.load.hold");
    lns_error(&with("cpu_high = 0\nmemory_high = 0\n"), "ha.load");
    let e = lns_error(&with("switchover = \"listed\"\n"), "ha.load.switchover");
    assert!(
        e.problem.contains("new") && e.problem.contains("all"),
        "{e}"
    );
    lns_error(&with("cpu = 90\n"), "ha.load.cpu");
}

#[test]
fn the_example_ha_section_parses_once_uncommented() {
    let at = LNS_EXAMPLE.find("# [ha]\n").expect("an [ha] example");
    let (head, tail) = LNS_EXAMPLE.split_at(at);
    let uncommented: String = tail
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .unwrap_or(l.strip_prefix('#').unwrap_or(l))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let c = LnsConfig::parse(&format!("{head}{uncommented}"), Path::new("lnsd.toml")).unwrap();
    let ha = c.ha.expect("[ha]");
    assert_eq!(ha.peers.len(), 1);
    let load = ha.load.expect("[ha.load]");
    assert_eq!(load, HaLoad::default(), "the example shows the defaults");
}
