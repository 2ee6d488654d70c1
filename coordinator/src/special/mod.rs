//! Run-time specialisation, the parts without I/O: when a node's stream is skewed
//! ([`trigger`]), fitting a head for its dominant classes on trunk embeddings ([`trainer`]),
//! and how a registered variant is named and handed to a node. The leader task that drives them
//! is `crate::fleet::specialiser`.

pub mod round;
pub mod trainer;
pub mod trigger;

use wire::msg::SpecialisedRun;

use crate::state::SpecialisedVariant;

/// The name of the specialised variant of `base` for `classes`: one per class set and trunk,
/// so nodes with the same skew share it.
pub fn variant_name(base: &str, classes: &[u32]) -> String {
    let ids: Vec<String> = classes.iter().map(u32::to_string).collect();
    format!("spec-{base}-{}", ids.join("_"))
}

/// Each of an app's `classes` classes' share of the corpus's training labels (through the
/// app's `label_map`): what the stream looks like when nothing is skewed.
pub fn prior(corpus: &wire::corpus::Corpus, label_map: &[usize], classes: usize) -> Vec<f64> {
    let mut counts = vec![0f64; classes];
    for &l in &corpus.train.labels {
        if let Some(n) = label_map.get(l as usize).and_then(|&c| counts.get_mut(c)) {
            *n += 1.0;
        }
    }
    let total: f64 = counts.iter().sum::<f64>().max(1.0);
    counts.iter().map(|n| n / total).collect()
}

/// What a node needs to run a registered variant.
pub fn run_of(v: &SpecialisedVariant) -> SpecialisedRun {
    SpecialisedRun {
        variant: v.variant.clone(),
        trunk_variant: v.base_variant.clone(),
        head_sha256: v.digest.clone(),
        classes: v.classes.clone(),
        accuracy: v.accuracy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_trunk_and_class_set() {
        assert_eq!(variant_name("quarter", &[1, 4, 6]), "spec-quarter-1_4_6");
        assert_ne!(
            variant_name("quarter", &[1, 4]),
            variant_name("half", &[1, 4])
        );
    }
}
