//! The README's main job, `mcdnnctl demo`, as a user runs it: here its comparison form, the same
//! fleet once per policy on real processes, shortened.

use std::process::Command;

use mcdnn_tests::{bin, catalog, free_port};

#[test]
fn demo_compare_runs_every_policy_on_the_same_fleet_and_counts_drops_as_wrong() {
    let mut dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().to_string();
    let out = Command::new(bin("mcdnnctl").expect("mcdnnctl"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "demo",
            "--compare",
            "--json",
            "--nodes",
            "2",
            "--duration",
            "6s",
        ])
        .args(["--port", &port, "--dir"])
        .arg(dir.path())
        .arg("--catalog")
        .arg(catalog())
        .output()
        .expect("run mcdnnctl demo");
    if !out.status.success() {
        mcdnn_tests::keep_and_report(&mut dir);
        panic!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let policies = v["policies"].as_object().expect("policies");
    let names: Vec<&str> = policies.keys().map(String::as_str).collect();
    assert_eq!(names, ["best-device", "cheapest", "mcdnn", "paper"]);
    let budget = policies["mcdnn"]["energy_budget_j"]
        .as_f64()
        .expect("budget");
    assert!(budget > 0.0);
    for (name, p) in policies {
        let n = |k: &str| {
            p[k].as_f64()
                .unwrap_or_else(|| panic!("{name}: {k} missing"))
        };
        assert!(n("requests") > 0.0, "{name} served nothing");
        assert_eq!(n("answered") + n("dropped"), n("requests"), "{name}");
        assert_eq!(n("energy_budget_j"), budget, "{name} ran on another budget");
        assert!(n("energy_used_j") > 0.0, "{name}");
        // A dropped request counts as wrong: accuracy cannot exceed the answered share.
        assert!(
            n("fleet_accuracy") <= 100.0 * n("answered") / n("requests") + 1e-6,
            "{name}: {p}"
        );
        assert!(p["budget_ran_out_s"].is_object(), "{name}");
    }
}
