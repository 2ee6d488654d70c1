//! Run-time specialisation end to end on real processes, shortened: the leader notices the
//! skew, trains a head on the corpus, registers it through Raft, the node fetches it and answers
//! with the cascade, and once the skew passes the node drops it and the leader retires it.

use mcdnn_tests::specialise::{SpecialiseOptions, run};

#[test]
fn a_skewed_stream_gets_a_specialised_head_until_the_skew_passes() {
    let r = run(&SpecialiseOptions {
        run_s: 60.0,
        onset_s: 5.0,
        until_s: 35.0,
        corpus_train: 4_000,
        corpus_test: 1_000,
        ..Default::default()
    })
    .expect("scenario");
    println!("{}", serde_json::to_string_pretty(&r).expect("json"));
    assert_eq!(r["ok"], true, "{r:#}");
    assert!(r["head"]["answered"].as_u64().unwrap_or(0) > 0, "{r:#}");
    assert!(r["onset_to_serving_s"].as_f64().is_some(), "{r:#}");
}
