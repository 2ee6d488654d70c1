//! Many seeds of the deterministic simulation. `MCDNN_DST_SEEDS` (default 50) seeds run in
//! `many_seeds`; a failure prints the seed and the command that replays it alone
//! (`MCDNN_DST_SEED=<seed> ... one_seed`; `MCDNN_DST_TRACE=1` prints the history as it
//! happens, `RUST_LOG=mcdnn_coordinator=info` the replicas' logs).

use std::time::Instant;

use mcdnn_dst::{SimConfig, explain, run_seed, summary};

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

#[test]
fn many_seeds() {
    let count = env_u64("MCDNN_DST_SEEDS").unwrap_or(50);
    let first = env_u64("MCDNN_DST_FIRST_SEED").unwrap_or(0);
    let config = SimConfig::default();
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in first..first + count {
        let r = run_seed(seed, &config);
        println!("{}", summary(&r));
        assert!(
            r.results_acked > 0 && r.writes_acked > 0,
            "seed {seed} tested nothing: {}",
            summary(&r)
        );
        if !r.ok() {
            eprintln!("{}", explain(&r));
            failures.push(seed);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} seeds in {secs:.1}s: {:.2} seeds/s",
        count as f64 / secs
    );
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?} (each printed with its reproduction command above)"
    );
}

#[test]
fn one_seed() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let seed = env_u64("MCDNN_DST_SEED").unwrap_or(1);
    let config = SimConfig {
        double_disk_loss: std::env::var_os("MCDNN_DST_DOUBLE_DISK_LOSS").is_some(),
        ..SimConfig::default()
    };
    let r = run_seed(seed, &config);
    println!("{}", summary(&r));
    assert!(r.ok(), "{}", explain(&r));
}

#[test]
fn same_seed_same_history() {
    let seed = env_u64("MCDNN_DST_SEED").unwrap_or(7);
    let config = SimConfig::default();
    let a = run_seed(seed, &config);
    let b = run_seed(seed, &config);
    assert!(
        a.events > 100,
        "too little happened to compare: {}",
        summary(&a)
    );
    assert_eq!(
        (a.digest.as_str(), a.events),
        (b.digest.as_str(), b.events),
        "seed {seed} ran differently twice:\n{}\n{}\nfirst run's last events:\n{}\nsecond run's:\n{}",
        summary(&a),
        summary(&b),
        a.tail.join("\n"),
        b.tail.join("\n")
    );
}
