//! The systemd units of deploy/systemd are valid for systemd
//! (`systemd-analyze verify`), start the daemons this crate builds with
//! their config, and keep the capabilities the fast path was found to need
//! (deploy/systemd/README.md says how that was tried).

// Test code throughout, so the workspace's test allowances for
// unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/systemd")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of the first `key=` line of a unit.
fn value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
fn units_start_the_daemons_with_their_config_and_the_fast_path_capabilities() {
    for daemon in ["lnsd", "lacd"] {
        let text = unit(&format!("{daemon}.service"));
        assert_eq!(
            value(&text, "ExecStart"),
            format!("/usr/local/bin/{daemon} --config /etc/l2tp/{daemon}.toml")
        );
        assert_eq!(value(&text, "Type"), "simple");
        assert_eq!(value(&text, "Restart"), "on-failure");
        assert_eq!(value(&text, "ExecReload"), "/bin/kill -HUP $MAINPID");
        assert_eq!(value(&text, "LimitMEMLOCK"), "infinity");
        // Without any of these, lnsd's fast path does not start (tried in
        // the lab under `setpriv --bounding-set`).
        for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
            let caps: Vec<&str> = value(&text, key).split_whitespace().collect();
            for needed in [
                "CAP_NET_ADMIN",
                "CAP_NET_RAW",
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_IPC_LOCK",
            ] {
                assert!(caps.contains(&needed), "{daemon}: {key} lacks {needed}");
            }
        }
        // AF_XDP sockets must stay allowed by the address-family filter.
        assert!(value(&text, "RestrictAddressFamilies").contains("AF_XDP"));
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        panic!("systemd-analyze not found: install the Debian package `systemd`");
    };
    // verify also insists that ExecStart's program exists: check copies
    // that start /bin/true instead.
    let dir = std::env::temp_dir().join(format!("lab-systemd-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut units = Vec::new();
    for daemon in ["lnsd", "lacd"] {
        let text = unit(&format!("{daemon}.service"))
            .replace(&format!("/usr/local/bin/{daemon}"), "/bin/true");
        let path = dir.join(format!("{daemon}.service"));
        fs::write(&path, text).unwrap();
        units.push(path);
    }
    let output = Command::new(analyze)
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let _ = fs::remove_dir_all(&dir);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
