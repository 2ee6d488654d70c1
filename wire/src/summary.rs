//! What a node reports about its run when it stops (`mcdnn-node run --summary FILE`). One type for
//! the writer and every reader (the demo, the chaos scenarios), so a field the writer dropped or
//! renamed is a parse error at the reader, never a silent zero. No field has a serde default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Per-app figures at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSummary {
    pub requests: u64,
    pub correct: u64,
    pub dropped: u64,
    /// Of `dropped`: requests whose deadline passed before the serving loop reached them.
    pub late: u64,
    /// Requests without a ground truth (API calls, video frames): `accuracy` leaves them out.
    pub unlabelled: u64,
    /// Answered requests the spool could not hold: never reported, so counted as lost.
    pub spool_failures: u64,
    pub offloaded: u64,
    pub offload_fallbacks: u64,
    pub accuracy: f64,
    pub energy_used_j: f64,
    pub by_variant: BTreeMap<String, u64>,
    pub cascade: CascadeSummary,
    /// A face app's figures; `null` for a gray app (the key must still be there).
    pub face: Option<FaceSummary>,
}

/// What a face app saw and how its answers compare with the reference variant's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaceSummary {
    /// Faces the detector found over the answered requests.
    pub faces: u64,
    /// Watchlist name -> requests (frames) in which it was recognised.
    pub seen: BTreeMap<String, u64>,
    /// Requests also answered by the reference variant (every `--face-audit-every`-th), and
    /// of those, how many got the same answer (the same name, or unknown for both).
    pub audited: u64,
    pub agreed: u64,
    /// `agreed / audited`, percent (0 when nothing was audited).
    pub agreement: f64,
    /// Per variant that ran (the audits' reference included): its time in the loop, detector
    /// included; a recent-gallery cascade's fallback on a miss only describes the faces the
    /// first stage found, and is timed as "FALLBACK after CHEAP".
    pub timing: BTreeMap<String, FaceTiming>,
    /// What the recent-gallery cascade (face specialisation) did.
    #[serde(default)]
    pub recent: RecentSummary,
}

/// Requests a recent gallery answered (hits) and handed to the general variant (misses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentSummary {
    pub hits: u64,
    pub misses: u64,
}

/// A face variant's runs in the serving loop: detector, alignment, descriptors and matching.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaceTiming {
    pub runs: u64,
    pub faces: u64,
    pub ms: f64,
}

impl FaceTiming {
    /// Milliseconds per detected face (`None` before any face).
    pub fn ms_per_face(&self) -> Option<f64> {
        (self.faces > 0).then(|| self.ms / self.faces as f64)
    }
}

/// What the specialised cascade did for one app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CascadeSummary {
    /// Requests a specialised head answered.
    pub answered: u64,
    /// Requests it called "other", handed to the general variant.
    pub fell_back: u64,
    /// Seconds into the stream of its first answer.
    pub first_answer_s: Option<f64>,
    /// The replayed stream's skewed phase alone (`--mix skewed:...:FROM_S:UNTIL_S`).
    pub skewed: Option<PhaseSummary>,
}

/// Figures over one phase of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub requests: u64,
    pub correct: u64,
    pub dropped: u64,
    pub energy_used_j: f64,
    /// `correct / requests`, percent (a dropped request counts as wrong).
    pub accuracy: f64,
}

/// Model store figures of a node that fetches its models from the coordinator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelStoreSummary {
    pub shards_fetched: u64,
    pub bytes_fetched: u64,
    /// Shards found already stored when a variant's fetch (re)started: the resumed part.
    pub shards_resumed: u64,
    /// Shards refused on arrival because their bytes did not match their digest.
    pub shards_rejected_in_transit: u64,
    /// Stored shards that failed verification when read, and were dropped.
    pub corrupt_shards_dropped: u64,
    /// Shard reads verified before use.
    pub shards_verified: u64,
    pub variants_complete: Vec<String>,
    pub variants_collected: u64,
    pub stored_bytes: u64,
    pub fetch_seconds: f64,
}

/// The node's figures at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub accuracy: f64,
    pub energy_used_j: f64,
    pub energy_budget_j: f64,
    pub cost_used_usd: f64,
    pub model_loads: u64,
    pub assignments_applied: u64,
    pub last_epoch: u64,
    pub apps: BTreeMap<String, AppSummary>,
    /// Results this run accepted into the spool (each must reach the coordinator exactly once).
    pub results_accepted: u64,
    /// Results still waiting for the coordinator's ack when the node stopped.
    pub results_pending: u64,
    /// Requests dropped (no affordable or loadable variant) over all apps.
    pub dropped: u64,
    /// Answered requests the spool could not hold; with a spool, `requests == dropped +
    /// results_accepted + spool_failures`, and a sound run has no failures.
    pub spool_failures: u64,
    pub offload_fallbacks: u64,
    /// Offload requests this node served (server role).
    pub served_offload: u64,
    /// Model store figures; `null` when models come from a local folder (the key must still be
    /// there).
    pub models: Option<ModelStoreSummary>,
    /// Seconds into the run when the energy budget ran out (under 1 % of it left); `null` when
    /// it lasted the run (the key must still be there).
    pub energy_out_at_s: Option<f64>,
    /// What the outside inputs (local API, video source) brought; `null` for a replay-only run
    /// (the key must still be there).
    pub input: Option<InputSummary>,
}

/// The node's outside inputs over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputSummary {
    /// Video frames decoded, and how fast the decoder delivered them when not held back by
    /// pacing (frames per second of decoding time).
    pub video_frames: u64,
    pub video_decode_fps: f64,
    /// The stream's own frame rate, at which frames were handed to the serving loop.
    pub video_stream_fps: f64,
    /// (frame, app) pairs the apps sampled at their rates; each is answered, dropped by the
    /// serving loop, or refused at a full intake (`video_intake_full`).
    pub video_sampled: u64,
    pub video_intake_full: u64,
    /// API calls admitted into the serving loop, and refused (429 over rate, 503 intake full).
    pub api_accepted: u64,
    pub api_over_rate: u64,
    pub api_intake_full: u64,
}

/// Why a summary file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a node summary (an old binary, or a truncated file?): {0}")]
pub struct SummaryError(#[from] serde_json::Error);

impl Summary {
    /// Parses a summary written by `mcdnn-node run --summary`; a missing field is an error.
    pub fn from_json(text: &str) -> Result<Self, SummaryError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        // serde fills a missing `Option` with `None`; the key must be present all the same.
        for key in ["models", "energy_out_at_s", "input"] {
            if value.get(key).is_none() {
                return Err(SummaryError(serde::de::Error::missing_field(key)));
            }
        }
        let apps = value.get("apps").and_then(|a| a.as_object());
        if apps.is_some_and(|apps| apps.values().any(|a| a.get("face").is_none())) {
            return Err(SummaryError(serde::de::Error::missing_field("face")));
        }
        Ok(serde_json::from_value(value)?)
    }

    /// Results answered but neither accepted by the spool nor dropped: zero in a sound run.
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.requests)
            - i128::from(self.dropped)
            - i128::from(self.results_accepted)
            - i128::from(self.spool_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            requests: 10,
            accuracy: 90.0,
            energy_used_j: 1.5,
            energy_budget_j: 100.0,
            cost_used_usd: 0.0,
            model_loads: 1,
            assignments_applied: 2,
            last_epoch: 7,
            apps: BTreeMap::from([(
                "garment".to_string(),
                AppSummary {
                    requests: 10,
                    correct: 9,
                    dropped: 1,
                    late: 0,
                    unlabelled: 0,
                    spool_failures: 0,
                    offloaded: 0,
                    offload_fallbacks: 0,
                    accuracy: 90.0,
                    energy_used_j: 1.5,
                    by_variant: BTreeMap::from([("half".to_string(), 9)]),
                    cascade: CascadeSummary::default(),
                    face: None,
                },
            )]),
            results_accepted: 9,
            results_pending: 0,
            dropped: 1,
            spool_failures: 0,
            offload_fallbacks: 0,
            served_offload: 0,
            models: None,
            energy_out_at_s: Some(12.5),
            input: None,
        }
    }

    #[test]
    fn round_trips_and_balances() {
        let s = summary();
        let text = serde_json::to_string_pretty(&s).expect("encode");
        assert_eq!(Summary::from_json(&text).expect("decode"), s);
        assert_eq!(s.unaccounted(), 0);
    }

    #[test]
    fn a_missing_field_is_an_error_not_a_zero() {
        let mut v = serde_json::to_value(summary()).expect("encode");
        for key in [
            "requests",
            "results_accepted",
            "models",
            "energy_out_at_s",
            "input",
            "apps",
        ] {
            let mut without = v.clone();
            without.as_object_mut().expect("object").remove(key);
            let err = Summary::from_json(&without.to_string()).expect_err(key);
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
        v["apps"]["garment"]
            .as_object_mut()
            .expect("app")
            .remove("by_variant");
        assert!(Summary::from_json(&v.to_string()).is_err());
        let mut no_face = serde_json::to_value(summary()).expect("json");
        no_face["apps"]["garment"]
            .as_object_mut()
            .expect("app")
            .remove("face");
        let err = Summary::from_json(&no_face.to_string()).expect_err("face");
        assert!(err.to_string().contains("face"), "{err}");
    }

    #[test]
    fn time_per_face_needs_a_face() {
        let t = FaceTiming {
            runs: 4,
            faces: 0,
            ms: 20.0,
        };
        assert_eq!(t.ms_per_face(), None);
        let t = FaceTiming { faces: 2, ..t };
        assert_eq!(t.ms_per_face(), Some(10.0));
    }
}
