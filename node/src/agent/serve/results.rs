//! Results: every answered request is appended to the spool (written and flushed before it
//! counts) and the link delivers it. A result the spool cannot hold is not accepted: it is
//! counted as a spool failure and serving goes on.

use net::clock::Clock;
use scheduler::catalog::Place;
use wire::msg::{InferenceResult, PlaceTag};

use crate::engine::Prediction;
use crate::spool::Spool;

/// One answered request, as it is reported.
#[derive(Debug, Clone)]
pub struct Answer<'a> {
    pub app: &'a str,
    pub prediction: Prediction,
    /// The image's label in the app's classes, if it has one there.
    pub truth: Option<u32>,
    pub variant: &'a str,
    pub place: Place,
    pub energy_j: f64,
    pub cost_usd: f64,
    pub latency_ms: f64,
}

/// Where results go (no spool: a bench run, nothing is reported).
#[derive(Debug, Clone, Default)]
pub struct Results {
    spool: Option<Spool>,
}

impl Results {
    pub fn new(spool: Option<Spool>) -> Self {
        Self { spool }
    }

    /// Results this process accepted.
    pub fn accepted(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::accepted)
    }

    /// Spools `answer`; `false` if the spool could not hold it (a spool failure).
    pub fn record(&self, clock: &dyn Clock, answer: &Answer<'_>) -> bool {
        let Some(spool) = &self.spool else {
            return true;
        };
        let result = InferenceResult {
            seq: 0,
            app: answer.app.to_string(),
            at_unix_ms: clock.unix_ms(),
            label: answer.prediction.label,
            truth: answer.truth,
            score: answer.prediction.score,
            variant: answer.variant.to_string(),
            place: match answer.place {
                Place::Device => PlaceTag::Device,
                Place::Server => PlaceTag::Server,
            },
            energy_j: answer.energy_j,
            cost_usd: answer.cost_usd,
            latency_ms: answer.latency_ms,
        };
        match spool.append(result) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot spool a result");
                false
            }
        }
    }
}
