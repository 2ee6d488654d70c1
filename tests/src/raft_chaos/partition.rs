//! `minority-partition` (run by `mcdnn-chaos`): the leader is cut off (all its UDP: Raft and
//! node traffic). From the instant of the cut it must not commit, apply an operator write, push
//! an assignment or advance its plan epoch; the majority elects a leader and goes on; after
//! healing, every replica holds the same log. Every figure is read from the replicas' admin
//! APIs; a read that fails is an error, never a 0.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{T, WRITER, audit, start_nodes, wait_nodes_on, write_figures};
use crate::cluster::Cluster;
use crate::verdict::{self, Ack};

fn assignments_sent(c: &Cluster, i: usize) -> anyhow::Result<f64> {
    let m =
        mcdnn_coordinator::ctl::http::health_get(&c.health(i), "/metrics", Duration::from_secs(2))?;
    crate::metric(&m, "mcdnn_assignments_sent_total")
        .ok_or_else(|| anyhow::anyhow!("replica {i} has no mcdnn_assignments_sent_total"))
}

pub fn minority_partition(cut_s: f64, nodes: usize) -> anyhow::Result<Value> {
    let mut c = Cluster::new(3)?;
    c.start_all()?;
    let leader = c.wait_leader(T, None)?;
    let mut node_procs = start_nodes(&c, nodes, cut_s + 20.0)?;
    wait_nodes_on(&c, leader, nodes, 0, T)?;
    let cut = c.isolate(leader)?;
    let t0 = Instant::now();
    // Read right after the rules are in: anything the isolated replica does from here on
    // happened while it was cut off (its admin API is TCP, which stays open).
    let at_cut = c.status(leader)?;
    let sent_at_cut = assignments_sent(&c, leader)?;
    let next = c.wait_leader(T, Some(leader))?;
    let new_leader_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut acked = Vec::new();
    let mut id = 1u64;
    while t0.elapsed().as_secs_f64() < cut_s {
        if let Ok(index) = c.write_policy(
            "fleet.cost_budget_usd",
            crate::writer::budget_for(id),
            WRITER,
            id,
        ) {
            acked.push(Ack {
                write_id: id,
                index,
                attempts: 1,
            });
            id += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let isolated = c.status(leader)?;
    let stale_plans_pushed = (assignments_sent(&c, leader)? - sent_at_cut).max(0.0) as u64;
    let majority_epoch = c.status(next)?.plan_epoch;
    let nodes_moved = wait_nodes_on(&c, next, nodes, 0, T).is_ok();
    drop(cut);
    let w = audit(&c, WRITER, &acked)?;
    for p in &mut node_procs {
        p.kill();
    }
    let mut problems = w.problems.clone();
    if isolated.commit > at_cut.commit {
        problems.push(format!(
            "the isolated replica's commit index moved {} -> {} while cut off",
            at_cut.commit, isolated.commit
        ));
    }
    if isolated.policy_writes > at_cut.policy_writes {
        problems.push("the isolated replica applied an operator write while cut off".into());
    }
    if isolated.plan_epoch > at_cut.plan_epoch {
        problems.push(format!(
            "the isolated replica's plan epoch moved {} -> {} while cut off",
            at_cut.plan_epoch, isolated.plan_epoch
        ));
    }
    if stale_plans_pushed > 0 {
        problems.push(format!(
            "the isolated replica pushed {stale_plans_pushed} assignments while cut off"
        ));
    }
    if isolated.role == "Leader" {
        problems.push("the isolated replica still calls itself leader".into());
    }
    if !nodes_moved {
        problems.push("the nodes did not move to the majority's leader".into());
    }
    Ok(verdict::report(
        "minority-partition",
        w.lost,
        w.duplicated,
        &problems,
        crate::chaos::merge(
            json!({
                "cut_s": cut_s,
                "isolated_role_at_end": isolated.role,
                "isolated_commit": { "at_cut": at_cut.commit, "at_end": isolated.commit },
                "isolated_commit_advanced": isolated.commit > at_cut.commit,
                "isolated_plan_epoch": isolated.plan_epoch,
                "isolated_epoch_advanced": isolated.plan_epoch > at_cut.plan_epoch,
                "stale_plans_pushed": stale_plans_pushed,
                "majority_plan_epoch": majority_epoch,
                "new_leader_ms": new_leader_ms,
                "nodes_moved_to_majority": nodes_moved,
            }),
            write_figures(&w, None),
        ),
    ))
}
