//! The end-of-seed invariants, over evidence independent of what is judged: what clients were
//! acknowledged (their own records) against the final state of every replica.
//! - Writes: every acknowledged write is in every replica's policy log exactly once, in order,
//!   and the logs agree ([`mcdnn_tests::verdict::writes`], the chaos scenarios' verdict).
//! - Results, per node and spool incarnation: the ledger's mark covers everything acknowledged
//!   and nothing never appended; a store that survived got everything acknowledged; the results
//!   counted equal the distinct sequence numbers under the marks (nothing twice, no gap).
//! - Plans: no node adopted an epoch above the committed one.
//! - Every replica ends with the same state, byte for byte.

use mcdnn_coordinator::state::FleetState;
use mcdnn_tests::verdict::{self, Ack, LogEntry, WriteEvidence};

use crate::exchange::serve::writer_name;
use crate::exchange::session::node_name;
use crate::node::NodeEvidence;
use crate::writer::WriterEvidence;

/// Problems found (empty: the seed passed), and a digest-friendly summary of the final state.
pub fn final_state(
    states: &[(u64, FleetState)],
    nodes: &[NodeEvidence],
    writers: &[WriterEvidence],
) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut summary = Vec::new();
    let Some((_, first)) = states.first() else {
        return (vec!["no replica state to check".into()], summary);
    };
    agree(states, &mut problems);
    writes(states, writers, &mut problems);
    for (n, ev) in nodes.iter().enumerate() {
        results(n, first, ev, &mut problems, &mut summary);
        if let Some(&e) = ev.adopted_epochs.last()
            && e > first.plan_epoch()
        {
            problems.push(format!(
                "node {n} follows plan epoch {e}, above the committed {}",
                first.plan_epoch()
            ));
        }
    }
    summary.push(format!(
        "applied {} plan epoch {} policy writes {}",
        first.applied_index(),
        first.plan_epoch(),
        first.policy_log().len()
    ));
    (problems, summary)
}

fn agree(states: &[(u64, FleetState)], problems: &mut Vec<String>) {
    let bytes: Vec<(u64, Result<Vec<u8>, String>)> = states
        .iter()
        .map(|(id, s)| (*id, s.to_snapshot_bytes().map_err(|e| e.to_string())))
        .collect();
    for (id, b) in &bytes {
        match (b, &bytes[0].1) {
            (Err(e), _) => problems.push(format!("replica {id}: state does not encode: {e}")),
            (Ok(b), Ok(first)) if b != first => problems.push(format!(
                "replica {id} ends with a state different from replica {}'s",
                bytes[0].0
            )),
            _ => {}
        }
    }
}

fn writes(states: &[(u64, FleetState)], writers: &[WriterEvidence], problems: &mut Vec<String>) {
    let logs: Vec<Vec<LogEntry>> = states
        .iter()
        .map(|(_, s)| {
            s.policy_log()
                .iter()
                .map(|w| LogEntry {
                    writer: w.writer.clone(),
                    write_id: w.write_id,
                    index: w.index,
                })
                .collect()
        })
        .collect();
    for (w, ev) in writers.iter().enumerate() {
        let acked: Vec<Ack> = ev
            .acked
            .iter()
            .map(|a| Ack {
                write_id: a.write_id,
                index: a.index,
                attempts: a.attempts,
            })
            .collect();
        let name = writer_name(w);
        let v = verdict::writes(&WriteEvidence {
            writer: &name,
            acked: &acked,
            replicas: &logs,
        });
        problems.extend(v.problems.into_iter().map(|p| format!("{name}: {p}")));
    }
}

fn results(
    n: usize,
    state: &FleetState,
    ev: &NodeEvidence,
    problems: &mut Vec<String>,
    summary: &mut Vec<String>,
) {
    let ledger = state.results().get(&node_name(n));
    let mut expected = 0;
    for (k, inc) in ev.incarnations.iter().enumerate() {
        let Some(first) = inc.first_seq else {
            continue;
        };
        let mark = ledger.map_or(0, |l| l.up_to_seq(inc.id));
        let at = format!("node {n} incarnation {k}");
        if mark < inc.acked {
            problems.push(format!(
                "{at}: acknowledged up to {} but the ledger holds only up to {mark}: acknowledged results lost",
                inc.acked
            ));
        }
        if mark > inc.last_seq {
            problems.push(format!(
                "{at}: the ledger holds up to {mark}, but only {} were appended",
                inc.last_seq
            ));
        }
        if !inc.lost && inc.acked < inc.last_seq {
            problems.push(format!(
                "{at}: results {}..={} never acknowledged although the store survived",
                inc.acked + 1,
                inc.last_seq
            ));
        }
        if mark >= first {
            expected += mark - first + 1;
        }
        summary.push(format!("{at}: {first}..={} mark {mark}", inc.last_seq));
    }
    let (received, gaps) = ledger.map_or((0, 0), |l| (l.received, l.gaps));
    if received != expected {
        problems.push(format!(
            "node {n}: the ledger counted {received} results, but {expected} distinct ones lie under its marks (counted twice or skipped)"
        ));
    }
    if gaps > 0 {
        problems.push(format!(
            "node {n}: the ledger saw {gaps} skipped sequence numbers"
        ));
    }
}

#[cfg(test)]
mod tests {
    use mcdnn_coordinator::state::{Command, PolicyValue, ResultRecord};

    use super::*;
    use crate::node::Incarnation;
    use crate::writer::WriteAck;

    const INC: u64 = 0xfeed;

    fn state(results: u64, writes: u64) -> FleetState {
        let mut s = FleetState::default();
        let mut index = 0;
        let mut apply = |cmd: Command| {
            index += 1;
            s.apply(index, &cmd);
        };
        apply(Command::RecordResults {
            node_id: node_name(0),
            incarnation: INC,
            records: (1..=results)
                .map(|seq| ResultRecord {
                    seq,
                    correct: None,
                    offloaded: false,
                    cost_usd: 0.0,
                })
                .collect(),
        });
        for write_id in 1..=writes {
            apply(Command::SetPolicy {
                key: crate::exchange::serve::WRITE_KEY.into(),
                value: PolicyValue::Number(1.0),
                writer: writer_name(0),
                write_id,
            });
        }
        s
    }

    fn node(acked: u64, last_seq: u64, lost: bool) -> NodeEvidence {
        NodeEvidence {
            incarnations: vec![Incarnation {
                id: INC,
                first_seq: Some(1),
                last_seq,
                acked,
                lost,
            }],
            ..NodeEvidence::default()
        }
    }

    fn writer(ids: std::ops::RangeInclusive<u64>) -> WriterEvidence {
        WriterEvidence {
            acked: ids
                .map(|write_id| WriteAck {
                    write_id,
                    index: write_id + 1,
                    attempts: 1,
                })
                .collect(),
            done: true,
        }
    }

    fn judge(states: &[FleetState], n: NodeEvidence, w: WriterEvidence) -> Vec<String> {
        let states: Vec<(u64, FleetState)> = (1..).zip(states.iter().cloned()).collect();
        final_state(&states, &[n], &[w]).0
    }

    #[test]
    fn a_clean_history_passes() {
        let s = state(5, 3);
        assert_eq!(
            judge(&[s.clone(), s], node(5, 5, false), writer(1..=3)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_broken_invariant_is_named() {
        let s = state(5, 3);
        let both = [s.clone(), s.clone()];
        let has = |problems: Vec<String>, what: &str| {
            assert!(
                problems.iter().any(|p| p.contains(what)),
                "{what:?} not in {problems:?}"
            );
        };
        has(
            judge(&both, node(7, 7, false), writer(1..=3)),
            "acknowledged results lost",
        );
        has(
            judge(&both, node(4, 4, true), writer(1..=3)),
            "only 4 were appended",
        );
        has(
            judge(&both, node(5, 6, false), writer(1..=3)),
            "never acknowledged although the store survived",
        );
        has(
            judge(&both, node(5, 5, false), writer(1..=4)),
            "lacks 1 acknowledged writes",
        );
        has(
            judge(&[s, state(5, 2)], node(5, 5, false), writer(1..=2)),
            "ends with a state different",
        );
    }
}
