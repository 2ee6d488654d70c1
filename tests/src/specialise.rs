//! `mcdnn-chaos specialise`: run-time specialisation on real processes. Two devices of the same
//! class replay the same seeded stream (same frames, same times) that turns 90 % skewed onto three
//! classes after `onset` and uniform again at `until`; one runs the heads the leader assigns, the
//! other ignores them (`--no-specialise`), so the comparison is measured in the same run. The
//! coordinator holds an embedding corpus of the cheapest trunk (`mcdnn-node catalog corpus`).
//!
//! Figures: accuracy, energy per request and requests answered during the skewed phase with and
//! without specialisation, the head's own answers and fall-backs, and the time from skew onset to
//! the first answer of a specialised head. Checks: a head served, was dropped by the node and
//! retired by the leader once the skew passed, and nothing was lost or duplicated.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wire::summary::{AppSummary, PhaseSummary};

use crate::chaos::{node_results, wait_exit};
use crate::{Fleet, NodeOpts, bin, catalog};

/// Knobs the tests shorten.
#[derive(Debug, Clone)]
pub struct SpecialiseOptions {
    /// How long the nodes serve.
    pub run_s: f64,
    /// Seconds into the stream when the skew starts and ends.
    pub onset_s: f64,
    pub until_s: f64,
    /// Corpus size: training and held-out images through the trunk.
    pub corpus_train: usize,
    pub corpus_test: usize,
    /// Requests per second of the one app.
    pub rate: f64,
    /// Energy budget per node over the run, J.
    pub energy_budget_j: f64,
}

impl Default for SpecialiseOptions {
    fn default() -> Self {
        Self {
            run_s: 100.0,
            onset_s: 10.0,
            until_s: 70.0,
            corpus_train: 20_000,
            corpus_test: 5_000,
            rate: 10.0,
            energy_budget_j: 20.0,
        }
    }
}

const APP: &str = "garment";
const CLASS: &str = "phone-2016";
const TRUNK: &str = "quarter";

fn phase(app: &AppSummary, who: &str) -> anyhow::Result<PhaseSummary> {
    app.cascade
        .skewed
        .clone()
        .with_context(|| format!("{who}'s summary has no skewed phase"))
}

fn figures(p: &PhaseSummary) -> Value {
    let per_request = p.energy_used_j / p.requests.max(1) as f64;
    json!({
        "requests": p.requests,
        "answered": p.requests - p.dropped,
        "accuracy_pct": p.accuracy,
        "energy_j": p.energy_used_j,
        "energy_per_request_mj": per_request * 1e3,
    })
}

pub fn run(opts: &SpecialiseOptions) -> anyhow::Result<Value> {
    let mut fleet = Fleet::new()?;
    let corpus = fleet.path().join("corpus.bin");
    let started = Instant::now();
    let made = Command::new(bin("mcdnn-node")?)
        .args(["catalog", "corpus", "--variant", TRUNK])
        .args(["--train", &opts.corpus_train.to_string()])
        .args(["--test", &opts.corpus_test.to_string()])
        .arg("--out")
        .arg(&corpus)
        .arg("--catalog")
        .arg(catalog())
        .output()
        .context("running mcdnn-node catalog corpus")?;
    if !made.status.success() {
        bail!(
            "mcdnn-node catalog corpus failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let corpus_s = started.elapsed().as_secs_f64();
    let corpus_arg = corpus.display().to_string();
    let coord = fleet.coordinator(&[
        "--specialise-corpus",
        &corpus_arg,
        "--specialise-collect-s",
        "5",
    ])?;
    let mix = format!("skewed:3:0.9:1e9:{}:{}", opts.onset_s, opts.until_s);
    let apps = format!("{APP}={}", opts.rate);
    let common = ["--mix", &mix, "--apps", &apps, "--seed", "7"];
    let node_opts = NodeOpts {
        coordinator: None,
        energy_budget_j: Some(opts.energy_budget_j),
    };
    let mut spec = fleet.node_with("cam-spec", CLASS, opts.run_s, &node_opts, &common)?;
    let base_extra: Vec<&str> = common.iter().copied().chain(["--no-specialise"]).collect();
    let mut base = fleet.node_with("cam-base", CLASS, opts.run_s, &node_opts, &base_extra)?;
    let limit = Duration::from_secs_f64(opts.run_s + 60.0);
    wait_exit(&mut spec, limit)?;
    wait_exit(&mut base, limit)?;
    // The skew passed well before the end, so the leader retired the head while the nodes
    // still ran (read at once: nodes leaving would make it idle too, but only seconds later).
    let retired = coord
        .log_text()
        .contains("retiring an unused specialised variant");
    let trained = coord.log_text().contains("trained a specialised head");
    let dropped_by_node = spec
        .log_text()
        .contains("specialised heads no longer assigned were dropped");
    let (s, b) = (fleet.summary("cam-spec")?, fleet.summary("cam-base")?);
    let (s_app, b_app) = (
        s.apps.get(APP).context("cam-spec served no garment")?,
        b.apps.get(APP).context("cam-base served no garment")?,
    );
    let (with, without) = (phase(s_app, "cam-spec")?, phase(b_app, "cam-base")?);
    let onset_to_serving_s = s_app.cascade.first_answer_s.map(|t| t - opts.onset_s);
    let mut problems = Vec::new();
    let (mut lost, mut duplicated) = (0, 0);
    for (name, summary) in [("cam-spec", &s), ("cam-base", &b)] {
        let (v, p, _) = node_results(&fleet, name, &[summary])?;
        lost += v.lost;
        duplicated += v.duplicated;
        problems.extend(p);
    }
    if !trained {
        problems.push("the leader trained no specialised head".into());
    }
    if s_app.cascade.answered == 0 {
        problems.push("no request was answered by a specialised head".into());
    }
    if b_app.cascade.answered != 0 {
        problems.push("the --no-specialise node ran a head".into());
    }
    if !dropped_by_node {
        problems.push("the node did not drop its head after the skew passed".into());
    }
    if !retired {
        problems.push("the leader did not retire the head after the skew passed".into());
    }
    let ok = problems.is_empty() && lost == 0 && duplicated == 0;
    if !ok {
        crate::keep_and_report(&mut fleet.dir);
    }
    Ok(json!({
        "scenario": "specialise",
        "ok": ok,
        "lost": lost,
        "duplicated": duplicated,
        "problems": problems,
        "stream": format!("{} req/s of {APP} on {CLASS}; 90 % from 3 classes from {} s to {} s of {} s", opts.rate, opts.onset_s, opts.until_s, opts.run_s),
        "corpus": { "trunk": TRUNK, "train": opts.corpus_train, "held_out": opts.corpus_test, "build_s": corpus_s },
        "skewed_phase": {
            "with_specialisation": figures(&with),
            "without_specialisation": figures(&without),
        },
        "whole_run_accuracy_pct": { "with": s_app.accuracy, "without": b_app.accuracy },
        "head": {
            "answered": s_app.cascade.answered,
            "fell_back_to_general": s_app.cascade.fell_back,
            "by_variant": s_app.by_variant,
        },
        "onset_to_serving_s": onset_to_serving_s,
        "head_retired_after_skew": retired,
    }))
}
