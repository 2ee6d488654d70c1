//! The chaos scenarios' verdicts as pure functions over evidence collected at the end of a run,
//! after a drain, so each can be fed a broken history in a unit test and seen to fail.
//!
//! Evidence is independent of the thing being judged: what a client was acknowledged (its own
//! log) against what every replica applied, each node's own counters (summary and telemetry)
//! against the coordinator's ledger, bytes on disk against their digests, datagrams a proxy
//! really dropped. A verdict lists every problem it found; `ok` is "no problems".

use serde::Serialize;
use serde_json::{Value, json};

/// One applied policy write as a replica's audit log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub writer: String,
    pub write_id: u64,
    /// Raft index the write was applied at.
    pub index: u64,
}

/// One write the client was acknowledged: its id, the index the ack named, and how many
/// attempts (same id each time) it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub write_id: u64,
    pub index: u64,
    pub attempts: u32,
}

/// Operator writes: the writer's own log against every replica's applied log.
#[derive(Debug, Clone)]
pub struct WriteEvidence<'a> {
    pub writer: &'a str,
    pub acked: &'a [Ack],
    /// Each replica's whole audit log (every writer), read after every replica applied the
    /// leader's commit index.
    pub replicas: &'a [Vec<LogEntry>],
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WriteVerdict {
    pub acknowledged: usize,
    /// Acknowledged writes missing from some replica (worst replica).
    pub lost: u64,
    /// Writes applied more than once on some replica (worst replica).
    pub duplicated: u64,
    pub in_order: bool,
    /// Every replica holds the same log, entry by entry.
    pub replicas_agree: bool,
    pub replica_log_lengths: Vec<usize>,
    /// Acknowledged writes that needed more than one attempt (same id).
    pub retried: u64,
    /// Retries whose first attempt had already been applied (the log's index differs from the
    /// index the acknowledged attempt named): the lost-ack -> retry -> dedup path, exercised.
    pub deduplicated_retries: u64,
    pub problems: Vec<String>,
}

impl WriteVerdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Judges operator writes: nothing acknowledged lost, nothing applied twice, in order, and
/// every replica identical.
pub fn writes(e: &WriteEvidence<'_>) -> WriteVerdict {
    let mut v = WriteVerdict {
        acknowledged: e.acked.len(),
        in_order: true,
        replicas_agree: true,
        ..WriteVerdict::default()
    };
    if e.acked.is_empty() {
        v.problems
            .push("no write was acknowledged: nothing was tested".into());
    }
    if e.replicas.is_empty() {
        v.problems.push("no replica log was read".into());
    }
    for (r, log) in e.replicas.iter().enumerate() {
        v.replica_log_lengths.push(log.len());
        let mine: Vec<&LogEntry> = log.iter().filter(|w| w.writer == e.writer).collect();
        let mut seen = std::collections::HashSet::new();
        let dup = mine.iter().filter(|w| !seen.insert(w.write_id)).count() as u64;
        let lost = e
            .acked
            .iter()
            .filter(|a| !seen.contains(&a.write_id))
            .count() as u64;
        let ordered = mine.windows(2).all(|w| w[0].write_id < w[1].write_id);
        if lost > 0 {
            v.problems
                .push(format!("replica {r} lacks {lost} acknowledged writes"));
        }
        if dup > 0 {
            v.problems
                .push(format!("replica {r} applied {dup} writes twice"));
        }
        if !ordered {
            v.problems
                .push(format!("replica {r} applied the writer's ids out of order"));
        }
        v.lost = v.lost.max(lost);
        v.duplicated = v.duplicated.max(dup);
        v.in_order &= ordered;
        if let Some(first) = e.replicas.first()
            && let Some(at) = first_difference(first, log)
        {
            v.replicas_agree = false;
            v.problems.push(format!(
                "replica {r} differs from replica 0 at log entry {at}"
            ));
        }
    }
    if let Some(first) = e.replicas.first() {
        for a in e.acked {
            v.retried += u64::from(a.attempts > 1);
            let applied_at = first
                .iter()
                .find(|w| w.writer == e.writer && w.write_id == a.write_id)
                .map(|w| w.index);
            v.deduplicated_retries += u64::from(applied_at.is_some_and(|i| i != a.index));
        }
    }
    v
}

fn first_difference(a: &[LogEntry], b: &[LogEntry]) -> Option<usize> {
    let common = a.iter().zip(b).position(|(x, y)| x != y);
    common.or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))
}

/// What one node run left behind, from the node's own summary and the coordinator's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeEvidence {
    pub node: String,
    pub requests: u64,
    pub dropped: u64,
    /// Results accepted into the spool this run.
    pub accepted: u64,
    /// Answered requests the spool could not hold.
    pub spool_failures: u64,
    /// Results still unacknowledged when the node exited (after its drain).
    pub pending: u64,
    /// Results the coordinator's replicated ledger recorded for this node.
    pub recorded: u64,
    /// Sequence numbers the ledger saw skipped (results lost before they were sent).
    pub gaps: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ResultVerdict {
    pub accepted: u64,
    pub recorded: u64,
    /// Accepted but never recorded, plus answered but never accepted (spool failures).
    pub lost: u64,
    /// Recorded more often than accepted.
    pub duplicated: u64,
    pub pending: u64,
    pub spool_failures: u64,
    pub problems: Vec<String>,
}

impl ResultVerdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Judges node results after the drain: every request dropped or accepted (`requests ==
/// dropped + accepted`), no spool failure, nothing pending, every accepted result recorded once.
/// A pending result is a failure, not "delivered later": the drain was the chance to deliver
/// it, and counting it as safe would hide a recorded-but-unacknowledged one elsewhere.
pub fn results(nodes: &[NodeEvidence]) -> ResultVerdict {
    let mut v = ResultVerdict::default();
    if nodes.is_empty() {
        v.problems.push("no node summary was read".into());
    }
    for n in nodes {
        v.accepted += n.accepted;
        v.recorded += n.recorded;
        v.pending += n.pending;
        v.spool_failures += n.spool_failures;
        let lost = n.accepted.saturating_sub(n.recorded) + n.spool_failures;
        let dup = n.recorded.saturating_sub(n.accepted);
        v.lost += lost;
        v.duplicated += dup;
        let name = &n.node;
        if n.requests != n.dropped + n.accepted + n.spool_failures {
            v.problems.push(format!(
                "{name}: {} requests but {} dropped + {} accepted + {} spool failures",
                n.requests, n.dropped, n.accepted, n.spool_failures
            ));
        }
        if n.spool_failures > 0 {
            v.problems.push(format!(
                "{name}: the spool refused {} answered requests",
                n.spool_failures
            ));
        }
        if n.pending > 0 {
            v.problems.push(format!(
                "{name}: {} results still pending after the drain",
                n.pending
            ));
        }
        if n.accepted > n.recorded {
            v.problems.push(format!(
                "{name}: {} accepted results never recorded",
                n.accepted - n.recorded
            ));
        }
        if dup > 0 {
            v.problems
                .push(format!("{name}: {dup} results recorded more than once"));
        }
        if n.gaps > 0 {
            v.problems.push(format!(
                "{name}: the ledger saw {} skipped sequence numbers",
                n.gaps
            ));
        }
    }
    if !nodes.is_empty() && v.accepted == 0 {
        v.problems
            .push("no node accepted a result: nothing was tested".into());
    }
    v
}

/// The spool intake a node's telemetry reported, as the coordinator's `/status` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryCounters {
    pub requests: u64,
    pub dropped: u64,
    pub accepted: u64,
    pub spool_failures: u64,
}

/// Problems in a node's last telemetry: each snapshot is taken between frames, so `requests ==
/// dropped + accepted + failures` must hold in it, and failures must be 0.
pub fn telemetry(node: &str, t: &TelemetryCounters) -> Vec<String> {
    let mut out = Vec::new();
    if t.requests != t.dropped + t.accepted + t.spool_failures {
        out.push(format!(
            "{node} telemetry: {} requests but {} dropped + {} accepted + {} spool failures",
            t.requests, t.dropped, t.accepted, t.spool_failures
        ));
    }
    if t.spool_failures > 0 {
        out.push(format!(
            "{node} telemetry: {} spool failures",
            t.spool_failures
        ));
    }
    out
}

/// Evidence that a partition happened: datagrams the proxy dropped, and the coordinator's
/// count before and after the cut (read once the cut settled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionEvidence {
    pub datagrams_dropped: u64,
    pub recorded_at_cut: u64,
    pub recorded_at_heal: u64,
    /// Results the coordinator recorded after the heal that had been waiting in the spool.
    pub backlog_after_heal: u64,
}

/// Problems with a partition claim: a proxy that dropped nothing, a "cut" node that kept
/// delivering, or a heal after which nothing flowed.
pub fn partition(e: &PartitionEvidence) -> Vec<String> {
    let mut out = Vec::new();
    if e.datagrams_dropped == 0 {
        out.push("the proxy dropped no datagram: no partition happened".into());
    }
    if e.recorded_at_heal > e.recorded_at_cut {
        out.push(format!(
            "{} results were recorded while the node was cut off",
            e.recorded_at_heal - e.recorded_at_cut
        ));
    }
    if e.backlog_after_heal == 0 {
        out.push("nothing spooled during the cut arrived after the heal".into());
    }
    out
}

/// Corrupt-shard evidence: shards flipped and checked corrupt on disk before the restart, what
/// the node detected, what was left corrupt after, and how many corrupt shards belong to
/// variants that served requests while still corrupt on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorruptionEvidence {
    pub flipped: u64,
    /// Of the flipped shards, those whose bytes no longer matched their digest on disk.
    pub corrupt_on_disk_before: u64,
    pub detected: u64,
    pub refetched: u64,
    pub corrupt_left: u64,
    pub loaded_corrupt: u64,
}

pub fn corruption(e: &CorruptionEvidence) -> Vec<String> {
    let mut out = Vec::new();
    if e.flipped == 0 || e.corrupt_on_disk_before != e.flipped {
        out.push(format!(
            "{} shards flipped but {} corrupt on disk before the restart",
            e.flipped, e.corrupt_on_disk_before
        ));
    }
    if e.detected < e.flipped {
        out.push(format!(
            "only {} of {} corrupt shards detected",
            e.detected, e.flipped
        ));
    }
    if e.refetched < e.detected {
        out.push(format!(
            "{} corrupt shards dropped but {} refetched",
            e.detected, e.refetched
        ));
    }
    if e.corrupt_left > 0 {
        out.push(format!(
            "{} corrupt shards left in the store",
            e.corrupt_left
        ));
    }
    if e.loaded_corrupt > 0 {
        out.push(format!(
            "{} corrupt shards served requests",
            e.loaded_corrupt
        ));
    }
    out
}

/// The report every scenario prints: `ok` is computed from the problems found, never set.
pub fn report(
    scenario: &str,
    lost: u64,
    duplicated: u64,
    problems: &[String],
    figures: Value,
) -> Value {
    let mut out = json!({
        "scenario": scenario,
        "ok": problems.is_empty(),
        "lost": lost,
        "duplicated": duplicated,
        "problems": problems,
    });
    if let (Some(o), Value::Object(f)) = (out.as_object_mut(), figures) {
        for (k, v) in f {
            o.entry(k).or_insert(v);
        }
    }
    out
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
