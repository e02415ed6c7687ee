//! A short smoke run of every benchmark scenario: the harness works and its counts are right.
//! Timings are printed by the harness, never asserted.

use std::process::Command;

use serde_json::Value;

#[test]
fn every_scenario_runs_and_counts_are_right() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("figures.json");
    let out = Command::new(env!("CARGO_BIN_EXE_facade-bench"))
        .args(["all", "--smoke", "--json", json.to_str().unwrap()])
        .output()
        .expect("facade-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for section in [
        "## chattiness",
        "## batching",
        "## parallelism",
        "## throughput",
        "## overhead",
        "## isolation",
        "## by-id",
    ] {
        assert!(stdout.contains(section), "missing {section}");
    }
    let figures: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    // One call per (level, backend) batched; one per item otherwise.
    assert_eq!(figures["batching"]["total"]["batched"], 6);
    let per_item = figures["batching"]["total"]["per_item"].as_u64().unwrap();
    assert!(per_item > 700, "{per_item}");
    assert_eq!(figures["chattiness"]["rest_batched_calls"], 6);
    assert_eq!(figures["chattiness"]["rest_per_item_calls"], 2 + 4 * 200);
    for side in ["facade", "static"] {
        let s = &figures["throughput"][side];
        assert!(s["requests"].as_u64().unwrap() > 0, "{side}: {s}");
        assert_eq!(s["errors"], 0, "{side}: {s}");
    }
    assert_eq!(figures["overhead"]["facade"]["errors"], 0);
    assert_eq!(
        figures["isolation"]["hanging"]["errors"], 0,
        "a hanging backend still gets HTTP 200 with partial data"
    );
    assert!(figures["parallelism"]["server_ms"].as_f64().unwrap() > 0.0);
}
