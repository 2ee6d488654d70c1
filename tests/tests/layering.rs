//! The workspace's layout rules, on its real files: the scheduler and the simulator compile no
//! networking or async runtime, no module import cycle in any crate, no non-test source file over
//! 500 lines. A failure names the files to change.

use std::path::{Path, PathBuf};
use std::process::Command;

use mcdnn_tests::layering::{self, MAX_SOURCE_LINES};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Every crate folder of the workspace (a `Cargo.toml` next to a `src/`).
fn crates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(workspace())
        .expect("read workspace")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file() && p.join("src").is_dir())
        .collect();
    out.sort();
    out
}

#[test]
fn the_scheduler_and_the_simulator_compile_no_networking_or_async_runtime() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for package in ["mcdnn-scheduler", "mcdnn-sim", "mcdnn-wire"] {
        let out = Command::new(&cargo)
            .current_dir(workspace())
            .args(["tree", "--offline", "--prefix", "none", "-p", package])
            .output()
            .expect("run cargo tree");
        assert!(
            out.status.success(),
            "cargo tree -p {package}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(
            tree.lines().count() > 3,
            "cargo tree printed too little: {tree}"
        );
        let banned: Vec<&str> = tree
            .lines()
            .filter(|l| {
                let name = l.split_whitespace().next().unwrap_or("");
                ["tokio", "quinn", "rustls", "mcdnn-net"].contains(&name)
            })
            .collect();
        assert!(banned.is_empty(), "{package} depends on {banned:?}");
    }
}

#[test]
fn no_crate_has_a_module_import_cycle() {
    let mut report = Vec::new();
    for krate in crates() {
        let files = layering::read_crate(&krate.join("src")).expect("read sources");
        for cycle in layering::cycles(&layering::edges(&files)) {
            let parent = cycle[0].parent.join("::");
            report.push(format!(
                "{} {}{}: {}",
                krate.file_name().unwrap_or_default().to_string_lossy(),
                if parent.is_empty() {
                    "crate"
                } else {
                    "crate::"
                },
                parent,
                cycle
                    .iter()
                    .map(|e| format!("{} -> {} ({})", e.from, e.to, e.example))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    assert!(
        report.is_empty(),
        "module import cycles:\n{}",
        report.join("\n")
    );
}

#[test]
fn no_source_file_is_over_the_line_limit() {
    let mut long = Vec::new();
    for krate in crates() {
        let files = layering::read_crate(&krate.join("src")).expect("read sources");
        assert!(!files.is_empty(), "no sources in {}", krate.display());
        for f in files {
            let rel = f.path.strip_prefix(&krate).unwrap_or(&f.path);
            let lines = layering::code_lines(&f.text);
            if !layering::is_test_file(rel) && lines > MAX_SOURCE_LINES {
                long.push(format!("{} ({lines} lines)", f.path.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "source files over {MAX_SOURCE_LINES} lines (split them by purpose):\n{}",
        long.join("\n")
    );
}
