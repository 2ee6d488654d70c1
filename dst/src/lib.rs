//! Deterministic simulation tests of the coordinator (issue 13, "Seams").
//!
//! One process, one thread, simulated time: three real Raft replicas (`Replica`, sled folders,
//! `FleetState`) and many virtual nodes (real sled result spools) talk over a simulated network
//! ([`net`]) whose loss, duplication, delays (so reordering) and partitions come from the seed,
//! while a seeded schedule ([`faults`]) kills and restarts leaders, cuts minorities off and wipes
//! node stores. Invariants are checked while it runs ([`monitor`], [`exchange::serve`]) and at
//! the end ([`check`]); the same seed gives the same history ([`trace`] digest).
//!
//! Run one seed with [`sim::run_seed`]; `tests/simulation.rs` runs many and prints the command
//! that reproduces a failing one.

pub mod check;
pub mod cluster;
pub mod exchange;
pub mod faults;
pub use mcdnn_coordinator::raft::lock_wait;
pub mod messages;
pub mod monitor;
pub mod net;
pub mod node;
pub mod plans;
pub mod rng;
pub mod sim;
pub mod trace;
pub mod writer;

pub use sim::{SeedReport, SimConfig, run_seed};

/// The replicas' Raft ids: every module that counts majorities uses these.
pub const REPLICAS: [u64; 3] = [1, 2, 3];

/// The command that replays `seed` alone, printed with every failure.
pub fn repro_command(seed: u64) -> String {
    format!(
        "MCDNN_DST_SEED={seed} cargo test -p mcdnn-dst --test simulation -- one_seed --nocapture"
    )
}

/// A failing seed's report: what broke, how to replay it, the last events.
pub fn explain(r: &SeedReport) -> String {
    let mut s = format!(
        "seed {} FAILED:\n  {}\nreproduce with:\n  {}\nlast events:\n",
        r.seed,
        r.problems.join("\n  "),
        repro_command(r.seed)
    );
    for line in &r.tail {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// One line per seed for logs.
pub fn summary(r: &SeedReport) -> String {
    format!(
        "seed {}: {} in {:.1}s simulated; {} results and {} writes acked, {} plan epochs, {} terms led, {} replica starts, faults {:?}, net {:?}, digest {}",
        r.seed,
        if r.ok() { "ok" } else { "FAILED" },
        r.simulated.as_secs_f64(),
        r.results_acked,
        r.writes_acked,
        r.plan_epochs,
        r.terms_led,
        r.replica_starts,
        r.faults,
        r.net,
        &r.digest[..r.digest.len().min(16)]
    )
}
