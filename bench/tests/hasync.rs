//! `l2bench hasync` end to end, small: two LNS peerings over loopback
//! bulk-sync 2,000 sessions and offload changes; the peer's store must
//! equal the primary's sessions (the subcommand checks it and the report
//! says so). Loopback only, no root needed.

use std::process::Command;

#[test]
fn hasync_syncs_2000_sessions_and_the_store_equals_the_primary() {
    let output = Command::new(env!("CARGO_BIN_EXE_l2bench"))
        .args([
            "hasync",
            "--sessions",
            "2000",
            "--sessions-per-tunnel",
            "700",
            "--changes",
            "300",
            "--rate",
            "3000",
            "--burst",
            "10",
            "--timeout",
            "60",
            "--json",
        ])
        .output()
        .expect("l2bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "l2bench hasync failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["store_matches"], true, "{report}");
    assert_eq!(report["stored"], 2000, "{report}");
    assert_eq!(report["tunnels"], 3, "{report}");
    // Every tunnel and every session went in the bulk sync.
    assert_eq!(report["bulk_entries"], 2003, "{report}");
    assert!(report["bulk_sync_s"].as_f64().is_some_and(|s| s > 0.0));
    // Each change is acknowledged; changes to a session still unsent are
    // coalesced into one LSORQ, so there may be fewer samples.
    let samples = report["lag_samples"].as_u64().unwrap_or(0);
    assert!((1..=300).contains(&samples), "{report}");
    assert!(report["lag_p99_us"].as_u64().is_some_and(|l| l > 0));
}
