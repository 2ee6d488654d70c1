//! Naming a face: the nearest named descriptor, if it is within the threshold.

use super::describe::{Descriptor, distance};

/// dlib's threshold for its face descriptors: below it, the same person.
pub const DEFAULT_THRESHOLD: f32 = 0.6;

/// Named descriptors (several per name are fine: more photos of one person).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gallery {
    entries: Vec<(String, Descriptor)>,
    pub threshold: f32,
}

/// The answer for one face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// Index of the matching entry, `None` for unknown (nothing within the threshold).
    pub entry: Option<usize>,
    /// Distance to the nearest entry (infinite for an empty gallery).
    pub distance: f32,
}

impl Gallery {
    pub fn new(threshold: f32) -> Self {
        Self {
            entries: Vec::new(),
            threshold,
        }
    }

    pub fn add(&mut self, name: impl Into<String>, descriptor: Descriptor) {
        self.entries.push((name.into(), descriptor));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of entry `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.entries.get(index).map(|(n, _)| n.as_str())
    }

    /// The nearest entry and whether it is close enough to name the face.
    pub fn best(&self, descriptor: &[f32]) -> Match {
        let nearest = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (_, d))| (i, distance(d, descriptor)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match nearest {
            Some((i, d)) => Match {
                entry: (d < self.threshold).then_some(i),
                distance: d,
            },
            None => Match {
                entry: None,
                distance: f32::INFINITY,
            },
        }
    }

    /// The name for `descriptor`, or `None` for unknown.
    pub fn identify(&self, descriptor: &[f32]) -> Option<&str> {
        self.best(descriptor).entry.and_then(|i| self.name(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_within_threshold_is_named_and_far_is_unknown() {
        let mut g = Gallery::new(DEFAULT_THRESHOLD);
        assert_eq!(g.best(&[0.0; 2]).entry, None);
        g.add("ana", vec![0.0, 0.0]);
        g.add("bo", vec![1.0, 0.0]);
        assert_eq!(g.identify(&[0.9, 0.1]), Some("bo"));
        assert_eq!(g.identify(&[0.1, 0.0]), Some("ana"));
        let far = g.best(&[0.5, 2.0]);
        assert_eq!(far.entry, None);
        assert!(far.distance > 1.9);
        // NaN descriptors are never a match.
        assert_eq!(g.identify(&[f32::NAN, 0.0]), None);
    }
}
