//! Shortened runs of `mcdnn-chaos rogue-node` and `store-wipe` against the real binaries.

use std::time::Duration;

use mcdnn_tests::rogue_chaos::{self, RogueOptions};

fn short() -> RogueOptions {
    RogueOptions {
        run: Duration::from_secs(6),
    }
}

#[test]
fn rogue_node_cannot_stall_the_fleet_or_take_its_frames() {
    let r = rogue_chaos::rogue_node(&short()).expect("scenario");
    assert_eq!(r["scenario"], "rogue-node");
    assert_eq!(r["frames_to_rogue"], 0, "{r}");
    assert!(r["epochs_advanced_while_rogue"].as_u64() >= Some(3), "{r}");
    assert_eq!(r["ok"], true, "{r}");
}

#[test]
fn store_wipe_loses_nothing() {
    let r = rogue_chaos::store_wipe(&short()).expect("scenario");
    assert_eq!(r["scenario"], "store-wipe");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicated"], 0, "{r}");
    assert_eq!(r["ok"], true, "{r}");
}
