//! The run's summary from the serving thread's counters; `agent::run` completes it with what
//! the spool, the offload server and the model store know when the node stops.

use wire::summary::{AppSummary, CascadeSummary, FaceSummary, PhaseSummary, Summary};

use crate::stats::{AppStats, FaceStats};

fn cascade(s: &AppStats) -> CascadeSummary {
    let c = &s.cascade;
    let skewed = c.skew_start.map(|from| {
        let to = c.skew_end.unwrap_or_else(|| s.totals());
        let requests = to.requests - from.requests;
        let correct = to.correct - from.correct;
        PhaseSummary {
            requests,
            correct,
            dropped: to.dropped - from.dropped,
            energy_used_j: to.energy_used_j - from.energy_used_j,
            accuracy: if requests == 0 {
                0.0
            } else {
                100.0 * correct as f64 / requests as f64
            },
        }
    });
    CascadeSummary {
        answered: c.answered,
        fell_back: c.fell_back,
        first_answer_s: c.first_answer_s,
        skewed,
    }
}

fn face(f: &FaceStats) -> FaceSummary {
    FaceSummary {
        faces: f.faces,
        seen: f.seen.clone(),
        audited: f.audited,
        agreed: f.agreed,
        agreement: if f.audited == 0 {
            0.0
        } else {
            100.0 * f.agreed as f64 / f.audited as f64
        },
        timing: f.timing.clone(),
        recent: f.recent,
    }
}

/// What the summary needs besides the per-app counters.
#[derive(Debug, Clone, Copy)]
pub struct RunFigures {
    pub energy_used_j: f64,
    pub energy_budget_j: f64,
    pub model_loads: u64,
    pub assignments_applied: u64,
    pub last_epoch: u64,
    /// When the energy budget ran out, seconds into the run.
    pub energy_out_at_s: Option<f64>,
}

pub fn summarize(stats: &[AppStats], run: RunFigures) -> Summary {
    let requests: u64 = stats.iter().map(|s| s.requests).sum();
    let correct: u64 = stats.iter().map(|s| s.correct).sum();
    let labelled: u64 = stats.iter().map(|s| s.labelled_requests).sum();
    Summary {
        requests,
        accuracy: if labelled == 0 {
            0.0
        } else {
            100.0 * correct as f64 / labelled as f64
        },
        energy_used_j: run.energy_used_j,
        energy_budget_j: run.energy_budget_j,
        cost_used_usd: stats.iter().map(|s| s.cost_used_usd).sum(),
        model_loads: run.model_loads,
        assignments_applied: run.assignments_applied,
        last_epoch: run.last_epoch,
        results_accepted: 0,
        results_pending: 0,
        dropped: stats.iter().map(|s| s.dropped).sum(),
        spool_failures: stats.iter().map(|s| s.spool_failures).sum(),
        offload_fallbacks: stats.iter().map(|s| s.offload_fallbacks).sum(),
        served_offload: 0,
        models: None,
        energy_out_at_s: run.energy_out_at_s,
        input: None,
        apps: stats
            .iter()
            .map(|s| {
                (
                    s.app.clone(),
                    AppSummary {
                        requests: s.requests,
                        correct: s.correct,
                        dropped: s.dropped,
                        late: s.late,
                        unlabelled: s.requests - s.labelled_requests,
                        spool_failures: s.spool_failures,
                        offloaded: s.offloaded,
                        offload_fallbacks: s.offload_fallbacks,
                        accuracy: s.accuracy_pct(),
                        energy_used_j: s.energy_used_j,
                        by_variant: s.by_variant.clone(),
                        cascade: cascade(s),
                        face: s.face.as_ref().map(face),
                    },
                )
            })
            .collect(),
    }
}

/// An offload server's summary: it serves no requests of its own.
pub fn offload_server(energy_budget_j: f64) -> Summary {
    summarize(
        &[],
        RunFigures {
            energy_used_j: 0.0,
            energy_budget_j,
            model_loads: 0,
            assignments_applied: 0,
            last_epoch: 0,
            energy_out_at_s: None,
        },
    )
}
