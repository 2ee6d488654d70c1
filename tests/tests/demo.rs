//! The README's main job, `mcdnnctl demo`, as a user runs it: its comparison form, the same
//! fleet once per policy on real processes, shortened; and the face workload on Megamind.avi
//! (needs ffmpeg, opencv-doc and the face models: `scripts/setup.sh`).

use std::process::Command;

use mcdnn_tests::{bin, catalog, free_port};

/// `mcdnnctl demo ARGS --json` in the repo's root on a free port; its JSON summary.
fn demo(dir: &mut tempfile::TempDir, args: &[&str]) -> serde_json::Value {
    let port = free_port().to_string();
    let out = Command::new(bin("mcdnnctl").expect("mcdnnctl"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .arg("demo")
        .args(args)
        .args(["--json", "--port", &port, "--dir"])
        .arg(dir.path())
        .output()
        .expect("run mcdnnctl demo");
    if !out.status.success() {
        mcdnn_tests::keep_and_report(dir);
        panic!("{}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn demo_face_workload_names_the_enrolled_person_from_the_video_and_audits_its_answers() {
    let mut dir = tempfile::tempdir().expect("tempdir");
    // The default catalog: both catalogs planned together (models/fleet.json).
    let v = demo(
        &mut dir,
        &["--workload", "face", "--nodes", "1", "--duration", "8s"],
    );
    let node = &v["nodes"][0];
    let face = &node["face"]["face-id"];
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    let answered: u64 = node["variants"]["face-id"]
        .as_object()
        .expect("variants")
        .values()
        .map(n)
        .sum();
    assert!(answered > 0, "{v}");
    assert_eq!(answered + n(&node["dropped"]), n(&node["requests"]), "{v}");
    // Roxanne fills the video's first seconds (her enrolment frames are 30 and 90).
    assert!(n(&face["seen"]["Roxanne"]) > 0, "{v}");
    assert!(n(&face["faces"]) >= n(&face["seen"]["Roxanne"]), "{v}");
    assert!(n(&face["agreed"]) <= n(&face["audited"]), "{v}");
    let used = node["energy_used_j"].as_f64().expect("energy");
    assert!(used > 0.0, "{v}");
    assert!(
        v["fleet_accuracy"].as_f64() == Some(0.0),
        "no labels, no accuracy: {v}"
    );
}

#[test]
fn demo_compare_runs_every_policy_on_the_same_fleet_and_counts_drops_as_wrong() {
    let mut dir = tempfile::tempdir().expect("tempdir");
    let catalog = catalog();
    let catalog = catalog.to_str().expect("a UTF-8 path");
    let args = [
        "--compare",
        "--nodes",
        "2",
        "--duration",
        "6s",
        "--catalog",
        catalog,
    ];
    let v = demo(&mut dir, &args);
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
