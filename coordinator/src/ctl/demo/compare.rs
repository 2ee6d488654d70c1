//! `mcdnnctl demo --compare`: what the fleet scheduler wins. The same fleet (device classes,
//! budgets, seeds, so the same image streams) runs once per policy, and one table shows fleet
//! accuracy with a dropped request counted as wrong, requests answered and dropped, energy used
//! against budget, and which node's budget ran out when.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::{DemoArgs, DemoSummary};

/// The policies compared, in the table's order: the fleet scheduler first, then the
/// per-device baselines (the paper's scheduler, the best variant the device can afford, the
/// cheapest variant).
pub const COMPARED: [&str; 4] = ["mcdnn", "paper", "best-device", "cheapest"];

/// One policy's run of the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRun {
    /// Correct answers over all requests, in percent; a dropped request counts as wrong.
    pub fleet_accuracy: f64,
    pub requests: u64,
    pub answered: u64,
    pub dropped: u64,
    pub energy_used_j: f64,
    pub energy_budget_j: f64,
    /// Nodes whose energy budget ran out, and when (seconds into the run).
    pub budget_ran_out_s: BTreeMap<String, f64>,
}

impl PolicyRun {
    fn of(s: &DemoSummary) -> PolicyRun {
        let dropped: u64 = s.nodes.iter().map(|n| n.dropped).sum();
        PolicyRun {
            fleet_accuracy: s.fleet_accuracy,
            requests: s.requests,
            answered: s.requests.saturating_sub(dropped),
            dropped,
            energy_used_j: s.nodes.iter().map(|n| n.energy_used_j).sum(),
            energy_budget_j: s.nodes.iter().map(|n| n.energy_budget_j).sum(),
            budget_ran_out_s: s
                .nodes
                .iter()
                .filter_map(|n| n.energy_out_at_s.map(|t| (n.id.clone(), t)))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub nodes: usize,
    pub duration_s: f64,
    pub policies: BTreeMap<String, PolicyRun>,
}

/// Runs the demo fleet once per policy in [`COMPARED`], one after the other on the same ports.
pub fn compare(args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<Comparison> {
    let mut policies = BTreeMap::new();
    for policy in COMPARED {
        if !args.json {
            writeln!(
                out,
                "running {} nodes for {:.0} s with policy {policy} ...",
                args.nodes,
                args.duration.as_secs_f64()
            )?;
            out.flush()?;
        }
        let one = DemoArgs {
            policy: policy.to_string(),
            compare: false,
            json: true,
            ..args.clone()
        };
        let summary = super::run(&one, out)?;
        policies.insert(policy.to_string(), PolicyRun::of(&summary));
    }
    Ok(Comparison {
        nodes: args.nodes,
        duration_s: args.duration.as_secs_f64(),
        policies,
    })
}

/// The human table, policies in [`COMPARED`] order.
pub fn comparison_table(c: &Comparison) -> String {
    let mut out = format!(
        "\n{} nodes, {:.0} s each, same streams and budgets; a dropped request counts as wrong\n",
        c.nodes, c.duration_s
    );
    out += &format!(
        "{:<12} {:>9} {:>9} {:>9} {:>8} {:>18}  budget ran out\n",
        "policy", "accuracy", "requests", "answered", "dropped", "energy J / budget"
    );
    for name in COMPARED {
        let Some(p) = c.policies.get(name) else {
            continue;
        };
        let ran_out = if p.budget_ran_out_s.is_empty() {
            "-".to_string()
        } else {
            p.budget_ran_out_s
                .iter()
                .map(|(node, t)| format!("{node} at {t:.0} s"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out += &format!(
            "{:<12} {:>8.2}% {:>9} {:>9} {:>8} {:>8.2} / {:<8.2}  {}\n",
            name,
            p.fleet_accuracy,
            p.requests,
            p.answered,
            p.dropped,
            p.energy_used_j,
            p.energy_budget_j,
            ran_out
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::NodeResult;
    use super::*;

    fn node(id: &str, requests: u64, dropped: u64, out: Option<f64>) -> NodeResult {
        NodeResult {
            id: id.into(),
            device_class: "laptop".into(),
            requests,
            dropped,
            accuracy: 50.0,
            energy_used_j: 2.0,
            energy_budget_j: 3.0,
            energy_out_at_s: out,
            model_loads: 1,
            last_epoch: 1,
            variants: BTreeMap::new(),
            late: 0,
            face: BTreeMap::new(),
        }
    }

    #[test]
    fn face_figures_add_up_over_the_fleet_and_show_per_node() {
        let face = |audited, agreed| wire::summary::FaceSummary {
            faces: 9,
            seen: BTreeMap::from([("Roxanne".to_string(), 7)]),
            audited,
            agreed,
            agreement: 0.0,
            timing: BTreeMap::from([(
                "int8-150".to_string(),
                wire::summary::FaceTiming {
                    runs: 10,
                    faces: 9,
                    ms: 45.0,
                },
            )]),
            recent: Default::default(),
        };
        let mut a = node("cam-1", 10, 0, None);
        a.face.insert("face-id".into(), face(3, 3));
        let mut b = node("cam-2", 10, 0, None);
        b.face.insert("face-id".into(), face(1, 0));
        let s = DemoSummary::new(vec![a, b, node("cam-3", 5, 0, None)], 20.0, None);
        assert_eq!(
            s.face_agreement,
            Some(75.0),
            "agreed over audited, fleet-wide"
        );
        let table = super::super::summary_table(&s);
        assert!(table.contains("Roxanne in 7 frames"), "{table}");
        assert!(table.contains("int8-150 5.0 ms/face"), "{table}");
        let gray = DemoSummary::new(vec![node("cam-1", 5, 0, None)], 20.0, None);
        assert_eq!(gray.face_agreement, None, "no audit, no agreement");
    }

    #[test]
    fn a_run_counts_answers_drops_energy_and_who_ran_out() {
        let s = DemoSummary::new(
            vec![
                node("cam-1", 100, 30, Some(12.0)),
                node("cam-2", 50, 0, None),
            ],
            20.0,
            None,
        );
        let p = PolicyRun::of(&s);
        assert_eq!((p.requests, p.answered, p.dropped), (150, 120, 30));
        assert_eq!((p.energy_used_j, p.energy_budget_j), (4.0, 6.0));
        assert_eq!(p.budget_ran_out_s, BTreeMap::from([("cam-1".into(), 12.0)]));
        let c = Comparison {
            nodes: 2,
            duration_s: 20.0,
            policies: BTreeMap::from([("paper".to_string(), p)]),
        };
        let table = comparison_table(&c);
        assert!(table.contains("cam-1 at 12 s"), "{table}");
        assert!(
            !table.contains("mcdnn"),
            "only policies that ran are listed"
        );
    }
}
