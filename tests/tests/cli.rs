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
            "--coordinator",
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
    for binary in ["mcdnnctl", "mcdnn-coordinator", "mcdnn-node", "mcdnn-sim"] {
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
