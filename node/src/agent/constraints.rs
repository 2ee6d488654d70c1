//! Turning a coordinator assignment into the constraints the local per-request policy obeys.

use scheduler::state::Constraints;
use wire::msg::Assignment;

/// The assignment's allowed variants per app, whether offload is possible (the assignment names
/// a target and this node can reach one), and the per-request caps of the fleet plan.
pub fn from_assignment(assignment: &Assignment, can_offload: bool) -> Constraints {
    let mut constraints = Constraints::default();
    for app in &assignment.apps {
        if !app.allowed_variants.is_empty() {
            constraints.allowed.insert(
                app.app.clone(),
                app.allowed_variants.iter().cloned().collect(),
            );
        }
    }
    constraints.offload_forbidden =
        !can_offload || assignment.apps.iter().all(|a| a.offload_target.is_none());
    // The policy takes one cap per device; the loosest app's keeps every app's plan feasible.
    let cap = |f: fn(&wire::msg::AppAssignment) -> f64| {
        assignment
            .apps
            .iter()
            .map(f)
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            })
    };
    constraints.energy_cap_j = cap(|a| a.energy_budget_j_per_request);
    constraints.cost_cap_usd = cap(|a| a.cost_budget_usd_per_request);
    constraints
}

/// Narrows `constraints` to variants whose bytes are on the node, so serving never waits on a
/// download. Where the assignment's variants are all missing, the node falls back to any present
/// variant (better an approximate answer than none); with nothing present the app is limited to
/// the empty set and its requests are dropped until the fetch completes.
pub fn restrict_to_available(
    constraints: &mut Constraints,
    apps: &[String],
    catalog_variants: &[String],
    available: &std::collections::BTreeSet<String>,
) {
    for app in apps {
        let present: std::collections::BTreeSet<String> = match constraints.allowed.get(app) {
            Some(set) => set.intersection(available).cloned().collect(),
            None => catalog_variants
                .iter()
                .filter(|v| available.contains(*v))
                .cloned()
                .collect(),
        };
        let chosen = if present.is_empty() {
            catalog_variants
                .iter()
                .filter(|v| available.contains(*v))
                .cloned()
                .collect()
        } else {
            present
        };
        constraints.allowed.insert(app.clone(), chosen);
    }
}

/// Constraints before any assignment arrived: the local policy alone, no offload unless the node
/// was started with an offload server.
pub fn standalone(can_offload: bool) -> Constraints {
    Constraints {
        offload_forbidden: !can_offload,
        ..Constraints::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::msg::{AppAssignment, MixEntry, PlaceTag};

    fn app(name: &str, allowed: &[&str], offload: Option<&str>, cap: f64) -> AppAssignment {
        AppAssignment {
            app: name.into(),
            mix: vec![MixEntry {
                variant: allowed.first().copied().unwrap_or("full").into(),
                place: PlaceTag::Device,
                fraction: 1.0,
            }],
            allowed_variants: allowed.iter().map(|s| s.to_string()).collect(),
            offload_target: offload.map(str::to_string),
            offload_server: offload.map(|_| "srv".to_string()),
            energy_budget_j_per_request: cap,
            cost_budget_usd_per_request: 0.0,
            specialised: None,
        }
    }

    #[test]
    fn assignment_narrows_variants_and_offload() {
        let a = Assignment {
            epoch: 3,
            node_id: "cam-1".into(),
            issued_unix_ms: 0,
            apps: vec![
                app("garment", &["half", "quarter"], None, 0.02),
                app("category", &[], None, 0.05),
            ],
            energy_price: 0.0,
            cost_price: 0.0,
            plan_gap: 0.0,
        };
        let c = from_assignment(&a, true);
        assert!(c.offload_forbidden, "no app has an offload target");
        assert_eq!(c.allowed["garment"].len(), 2);
        assert!(
            !c.allowed.contains_key("category"),
            "empty list means unrestricted"
        );
        assert_eq!(c.energy_cap_j, Some(0.05));
        assert_eq!(c.cost_cap_usd, None);
    }

    #[test]
    fn only_present_variants_are_allowed() {
        let all: Vec<String> = ["full", "half", "quarter"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let apps = vec!["garment".to_string(), "category".to_string()];
        let mut c = Constraints::default();
        c.allowed
            .insert("garment".into(), ["full".to_string()].into_iter().collect());
        let available = ["quarter".to_string()].into_iter().collect();
        restrict_to_available(&mut c, &apps, &all, &available);
        // The planned variant is missing: fall back to what is present.
        assert_eq!(
            c.allowed["garment"].iter().collect::<Vec<_>>(),
            vec!["quarter"]
        );
        assert_eq!(
            c.allowed["category"].iter().collect::<Vec<_>>(),
            vec!["quarter"]
        );
        let mut c = Constraints::default();
        restrict_to_available(&mut c, &apps, &all, &Default::default());
        assert!(
            c.allowed["garment"].is_empty(),
            "nothing present: nothing allowed"
        );
    }
}
