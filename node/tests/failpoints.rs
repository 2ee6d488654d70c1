//! Faults injected where the node writes what it must not lose or must not trust: spool
//! appends and acknowledgements, and shard writes (fail-rs failpoints, feature `failpoints`,
//! which this crate's tests turn on through a dev-dependency on itself).

use fail::FailScenario;
use mcdnn_node::agent::serve::{Answer, Results};
use mcdnn_node::engine::Prediction;
use mcdnn_node::models::ShardStore;
use mcdnn_node::models::shards::sha256_hex;
use mcdnn_node::spool::Spool;
use mcdnn_node::store::NodeStore;
use wire::manifest::FileSpec;
use wire::msg::{FileShards, InferenceResult, PlaceTag, VariantManifest};

fn result(label: u32) -> InferenceResult {
    InferenceResult {
        seq: 0,
        app: "garment".into(),
        at_unix_ms: 1,
        label,
        truth: Some(label),
        score: 0.9,
        variant: "half".into(),
        place: PlaceTag::Device,
        energy_j: 0.01,
        cost_usd: 0.0,
        latency_ms: 2.0,
    }
}

fn seqs(spool: &Spool, after: u64) -> Vec<u64> {
    spool
        .batch_after(after, 100)
        .expect("batch")
        .results
        .iter()
        .map(|r| r.seq)
        .collect()
}

#[test]
fn a_failed_append_is_not_accepted_and_loses_nothing_acknowledged() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tmp");
    {
        let store = NodeStore::open(dir.path()).expect("store");
        let spool = Spool::open(&store).expect("spool");
        for i in 0..3 {
            spool.append(result(i)).expect("append");
        }
        assert!(spool.ack(2).expect("ack"));
        fail::cfg("spool-append", "return").expect("failpoint");
        let err = spool.append(result(9)).expect_err("the append must fail");
        assert!(err.to_string().contains("spool-append"), "{err}");
        assert_eq!((spool.accepted(), spool.pending()), (3, 1));
        fail::remove("spool-append");
        // Numbering stays dense: the failed append used no sequence number.
        assert_eq!(spool.append(result(4)).expect("append"), 4);
    }
    let store = NodeStore::open(dir.path()).expect("reopen");
    let spool = Spool::open(&store).expect("spool");
    assert_eq!(spool.acked_up_to().expect("acked"), 2);
    assert_eq!(seqs(&spool, 2), vec![3, 4]);
    scenario.teardown();
}

#[test]
fn an_answer_the_spool_cannot_hold_is_a_spool_failure_not_an_acceptance() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tmp");
    let store = NodeStore::open(dir.path()).expect("store");
    let spool = Spool::open(&store).expect("spool");
    let results = Results::new(Some(spool.clone()));
    let clock = net::clock::ManualClock::new(42_000);
    let answer = Answer {
        app: "garment",
        prediction: Prediction {
            label: 3,
            score: 0.8,
        },
        truth: Some(3),
        variant: "half",
        place: scheduler::catalog::Place::Device,
        energy_j: 0.1,
        cost_usd: 0.0,
        latency_ms: 4.0,
    };
    assert!(results.record(&clock, &answer));
    fail::cfg("spool-append", "return").expect("failpoint");
    assert!(
        !results.record(&clock, &answer),
        "the failure must be reported"
    );
    fail::remove("spool-append");
    assert_eq!((results.accepted(), spool.pending()), (1, 1));
    let kept = spool.batch_after(0, 10).expect("batch");
    assert_eq!(
        kept.results[0].at_unix_ms, 42_000,
        "stamped by the injected clock"
    );
    scenario.teardown();
}

#[test]
fn a_crash_before_an_ack_is_recorded_resends_everything_unacknowledged() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tmp");
    let incarnation = {
        let store = NodeStore::open(dir.path()).expect("store");
        let spool = Spool::open(&store).expect("spool");
        for i in 0..5 {
            spool.append(result(i)).expect("append");
        }
        fail::cfg("spool-ack", "return").expect("failpoint");
        assert!(spool.ack(3).is_err());
        fail::remove("spool-ack");
        spool.incarnation()
    };
    let store = NodeStore::open(dir.path()).expect("reopen");
    let spool = Spool::open(&store).expect("spool");
    // Sent again under the first incarnation with the same numbers: the coordinator's ledger
    // (per node and incarnation) drops the ones it already holds.
    let again = spool
        .batch_after(spool.acked_up_to().expect("acked"), 100)
        .expect("batch");
    assert_eq!(again.incarnation, incarnation);
    assert_eq!(
        again.results.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    scenario.teardown();
}

#[test]
fn a_crash_between_recording_an_ack_and_deleting_finishes_on_reopen() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tmp");
    {
        let store = NodeStore::open(dir.path()).expect("store");
        let spool = Spool::open(&store).expect("spool");
        for i in 0..5 {
            spool.append(result(i)).expect("append");
        }
        fail::cfg("spool-ack-recorded", "return").expect("failpoint");
        assert!(spool.ack(3).is_err());
        fail::remove("spool-ack-recorded");
        assert_eq!(spool.pending(), 5, "the crash came before the deletion");
    }
    let store = NodeStore::open(dir.path()).expect("reopen");
    let spool = Spool::open(&store).expect("spool");
    assert_eq!(spool.acked_up_to().expect("acked"), 3);
    assert_eq!(spool.pending(), 2);
    assert_eq!(seqs(&spool, 3), vec![4, 5]);
    // Numbering never reuses an acknowledged number.
    assert_eq!(spool.append(result(7)).expect("append"), 6);
    scenario.teardown();
}

#[test]
fn a_torn_shard_write_never_verifies_and_is_fetched_again() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tmp");
    let store = NodeStore::open(dir.path()).expect("store");
    let shards = ShardStore::open(&store, 1 << 20).expect("shards");
    let chunks: [&[u8]; 2] = [b"abcd", b"efgh"];
    let whole = chunks.concat();
    let file = FileSpec {
        file: "v.trunk.onnx".into(),
        sha256: sha256_hex(&whole),
        bytes: whole.len() as u64,
    };
    let m = VariantManifest {
        variant: "v".into(),
        chunk_size: 4,
        files: vec![FileShards {
            file: file.file.clone(),
            sha256: file.sha256.clone(),
            bytes: file.bytes,
            shards: chunks.iter().map(|c| sha256_hex(c)).collect(),
        }],
    };
    shards.put_manifest(&m).expect("manifest");
    shards
        .put_shard(&sha256_hex(chunks[0]), chunks[0])
        .expect("shard");
    fail::cfg("shard-write", "return(torn)").expect("failpoint");
    let err = shards
        .put_shard(&sha256_hex(chunks[1]), chunks[1])
        .expect_err("the write must fail");
    assert!(err.to_string().contains("shard-write"), "{err}");
    fail::remove("shard-write");
    // Even if a fetcher took the torn shard for present and marked the variant complete, its
    // bytes never verify: reading drops it and the variant leaves the complete set.
    shards.mark_complete("v").expect("complete");
    assert!(shards.read_file(&file).is_err());
    assert!(!shards.complete_variants().expect("list").contains("v"));
    assert_eq!(
        shards.missing(&m).expect("missing"),
        vec![sha256_hex(chunks[1])]
    );
    // A plain failed write leaves nothing at all.
    fail::cfg("shard-write", "return").expect("failpoint");
    assert!(shards.put_shard(&sha256_hex(chunks[1]), chunks[1]).is_err());
    fail::remove("shard-write");
    assert_eq!(shards.missing(&m).expect("missing").len(), 1);
    // Fetched again, it verifies and serves.
    shards
        .put_shard(&sha256_hex(chunks[1]), chunks[1])
        .expect("shard");
    shards.mark_complete("v").expect("complete");
    assert_eq!(shards.read_file(&file).expect("read"), whole);
    assert!(shards.verify_variant("v").expect("verify"));
    scenario.teardown();
}
