//! `mcdnnctl` as an operator uses it, against a real coordinator and node: reads in every
//! output format, `top`, health exit codes, completion and man pages.

use std::process::{Command, Output};
use std::time::Duration;

use mcdnn_tests::{Fleet, OPERATOR, bin};

fn ctl(fleet: &Fleet, args: &[&str]) -> Output {
    Command::new(bin("mcdnnctl").expect("mcdnnctl"))
        .args(args)
        .env("MCDNN_IDENTITY_DIR", &fleet.ca)
        .env("MCDNN_OPERATOR", OPERATOR)
        .env("MCDNN_ADMIN_ADDRS", fleet.admin())
        .output()
        .expect("run mcdnnctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn operator_reads_follow_one_convention_and_health_sets_the_exit_code() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let _node = fleet.node("cam-a", "phone-2016", 15.0, &[]).expect("node");
    fleet
        .wait_for("the node to report", Duration::from_secs(20), |s| {
            s.nodes.iter().any(|n| n.requests > 0)
        })
        .expect("node reporting");

    let list = ctl(&fleet, &["nodes", "list", "-o", "json"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(rows[0]["name"], "cam-a", "{rows:#}");
    assert_eq!(rows[0]["class"], "phone-2016");
    let yaml = stdout(&ctl(&fleet, &["nodes", "show", "cam-a", "-o", "yaml"]));
    assert!(yaml.contains("device_class: phone-2016"), "{yaml:?}");
    let table = stdout(&ctl(&fleet, &["nodes", "list"]));
    assert!(
        table.starts_with("NAME") && table.contains("cam-a"),
        "{table}"
    );
    let missing = ctl(&fleet, &["nodes", "show", "nobody"]);
    assert!(!missing.status.success(), "an unknown node is an error");

    let top = stdout(&ctl(&fleet, &["top", "--iterations", "1"]));
    assert!(
        top.contains("cam-a") && !top.contains('\x1b'),
        "plain text off a terminal: {top}"
    );

    let members = stdout(&ctl(&fleet, &["members", "list", "-o", "json"]));
    let members: serde_json::Value = serde_json::from_str(&members).expect("json");
    assert_eq!(members[0]["name"], "coord-0", "{members:#}");

    let healthy = ctl(&fleet, &["cluster", "status"]);
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    let unreachable = ctl(
        &fleet,
        &[
            "cluster",
            "status",
            "--admin",
            &format!("{},127.0.0.1:1", fleet.admin()),
        ],
    );
    assert!(
        !unreachable.status.success(),
        "an unreachable replica makes the cluster unhealthy"
    );
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("unreachable"));

    let bash = stdout(&ctl(&fleet, &["completion", "bash"]));
    assert!(bash.contains("mcdnnctl"), "completion script");
    let man_dir = fleet.path().join("man");
    let man = ctl(&fleet, &["man", "--out", &man_dir.to_string_lossy()]);
    assert!(man.status.success());
    assert!(man_dir.join("mcdnnctl.1").is_file());
    // (mcdnn-sim and mcdnn-chaos check theirs in their own unit tests: a workspace test run
    // builds only the binaries of packages with integration tests.)
    for binary in ["mcdnnctl", "mcdnn-coordinator", "mcdnn-node"] {
        let v = Command::new(bin(binary).expect("bin"))
            .arg("--version")
            .output()
            .expect("version");
        assert!(
            v.status.success() && stdout(&v).contains(env!("CARGO_PKG_VERSION")),
            "{binary}"
        );
    }
}

#[test]
fn a_coordinator_runs_from_a_config_file_and_refuses_unknown_keys() {
    let fleet = Fleet::new().expect("fleet");
    fleet
        .enroll(net::identity::Kind::Coordinator, "coord-0")
        .expect("enroll");
    let file = fleet.path().join("coordinator.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"coord-0\"\nlisten = \"{}\"\nadmin = \"{}\"\nhealth_listen = \"{}\"\n\
             raft-listen = \"127.0.0.1:{}\"\nidentity-dir = \"{}\"\ndata-dir = \"{}\"\n\
             catalog = \"{}\"\nsolve-interval-ms = 400\n",
            fleet.quic(),
            fleet.admin(),
            fleet.health(),
            fleet.port + 2,
            fleet.ca.display(),
            fleet.path().join("coordinator").display(),
            mcdnn_tests::catalog().display(),
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(bin("mcdnn-coordinator").expect("bin"));
    cmd.arg("run").arg("--config").arg(&file);
    let _coord = mcdnn_tests::spawn_logged(fleet.path(), "coordinator", cmd).expect("spawn");
    let status = fleet
        .wait_for(
            "the coordinator from its config file",
            Duration::from_secs(20),
            |s| s.coordinator == "coord-0",
        )
        .expect("it serves the operator API named in the file");
    assert_eq!(status.coordinator, "coord-0");

    let typo = fleet.path().join("typo.toml");
    std::fs::write(&typo, "solve-intervl-ms = 5\n").expect("write");
    let out = Command::new(bin("mcdnn-coordinator").expect("bin"))
        .arg("run")
        .arg("--config")
        .arg(&typo)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a typo in the config file must stop the daemon"
    );
    assert!(
        err.contains("unknown key") && err.contains("solve-interval-ms"),
        "{err}"
    );
}
