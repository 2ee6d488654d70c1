//! How a face variant's answers are compared with the reference's when the videos carry no
//! identity labels. Pure arithmetic over descriptors, tested without models.
//!
//! 1. The reference (fp32) descriptors of every detected face of one video are clustered in frame
//!    order: a face joins the nearest cluster whose mean is closer than [`CLUSTER_DISTANCE`], else
//!    starts one. Clusters with at least [`MIN_MEMBERS`] faces become the gallery (their means),
//!    so a person seen for a moment or a false detection stays "unknown", as a stranger would.
//! 2. The answer for a face is what the node serves: the gallery entry within the match
//!    threshold (0.6) nearest to the face's descriptor, or unknown.
//! 3. A variant agrees on a face when its answer equals the reference's answer for that face;
//!    every variant sees the same detections (the detector is shared), so faces pair up exactly.

use vision::face::describe::distance;
use vision::face::{Descriptor, Gallery, gallery::DEFAULT_THRESHOLD};

/// Tighter than the match threshold so two people who are 0.6-0.7 apart are not merged.
pub const CLUSTER_DISTANCE: f32 = 0.5;
/// Faces a cluster needs to become a gallery identity.
pub const MIN_MEMBERS: usize = 3;

/// The gallery a video's reference descriptors form (entries named `<prefix>#<k>`).
pub fn gallery_from(reference: &[Descriptor], prefix: &str) -> Gallery {
    let mut sums: Vec<(Vec<f32>, usize)> = Vec::new();
    for d in reference {
        let nearest = sums
            .iter()
            .enumerate()
            .map(|(i, (sum, n))| (i, distance(&mean(sum, *n), d)))
            .filter(|(_, dist)| *dist < CLUSTER_DISTANCE)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match nearest {
            Some((i, _)) => {
                let (sum, n) = &mut sums[i];
                sum.iter_mut().zip(d).for_each(|(s, x)| *s += x);
                *n += 1;
            }
            None => sums.push((d.clone(), 1)),
        }
    }
    let mut gallery = Gallery::new(DEFAULT_THRESHOLD);
    for (k, (sum, n)) in sums.iter().filter(|(_, n)| *n >= MIN_MEMBERS).enumerate() {
        gallery.add(format!("{prefix}#{k}"), mean(sum, *n));
    }
    gallery
}

fn mean(sum: &[f32], n: usize) -> Vec<f32> {
    sum.iter().map(|s| s / n as f32).collect()
}

/// One variant against the reference over the same faces.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Comparison {
    pub faces: usize,
    /// Faces whose answer equals the reference's.
    pub agreeing: usize,
    /// Distances between the variant's and the reference's descriptor of each face, sorted.
    pub distances: Vec<f32>,
}

impl Comparison {
    /// Adds one video's faces: `variant[i]` and `reference[i]` describe the same face.
    pub fn add(&mut self, gallery: &Gallery, reference: &[Descriptor], variant: &[Descriptor]) {
        for (r, v) in reference.iter().zip(variant) {
            self.faces += 1;
            if gallery.best(r).entry == gallery.best(v).entry {
                self.agreeing += 1;
            }
            self.distances.push(distance(r, v));
        }
        self.distances.sort_by(f32::total_cmp);
    }

    /// Percent of faces answered as the reference answers them (100 with no faces).
    pub fn agreement(&self) -> f64 {
        if self.faces == 0 {
            return 100.0;
        }
        100.0 * self.agreeing as f64 / self.faces as f64
    }

    pub fn mean_distance(&self) -> f64 {
        if self.distances.is_empty() {
            return 0.0;
        }
        self.distances.iter().map(|&d| f64::from(d)).sum::<f64>() / self.distances.len() as f64
    }

    /// Nearest-rank percentile of the distances.
    pub fn distance_percentile(&self, q: f64) -> f64 {
        percentile(&self.distances, q)
    }
}

/// Nearest-rank percentile of sorted distances.
pub fn percentile(sorted: &[f32], q: f64) -> f64 {
    let sorted: Vec<f64> = sorted.iter().map(|&d| f64::from(d)).collect();
    crate::catalog::eval::percentile(&sorted, q)
}

#[cfg(test)]
mod tests {
    use super::super::test_descriptor as at;
    use super::*;

    #[test]
    fn clusters_seen_often_become_the_gallery_and_one_offs_do_not() {
        // Two people (around 0 and 1) seen 3 times each, one passer-by at 5 seen once.
        let faces = [
            at(0.0),
            at(1.0),
            at(0.1),
            at(5.0),
            at(1.1),
            at(0.05),
            at(0.95),
        ];
        let g = gallery_from(&faces, "v");
        assert_eq!(g.len(), 2);
        assert_eq!(g.identify(&at(0.02)), Some("v#0"));
        assert_eq!(g.identify(&at(1.0)), Some("v#1"));
        assert_eq!(g.identify(&at(5.0)), None);
    }

    #[test]
    fn agreement_counts_faces_answered_alike_and_keeps_distances() {
        let g = gallery_from(&[at(0.0), at(0.0), at(0.0)], "v");
        let reference = [at(0.0), at(0.0), at(3.0)];
        // Face 0 same answer, face 1 pushed out of the threshold, face 2 unknown for both.
        let variant = [at(0.1), at(0.7), at(3.2)];
        let mut c = Comparison::default();
        c.add(&g, &reference, &variant);
        assert_eq!((c.faces, c.agreeing), (3, 2));
        assert!((c.agreement() - 200.0 / 3.0).abs() < 1e-9);
        assert!((c.mean_distance() - (0.1 + 0.7 + 0.2) / 3.0).abs() < 1e-6);
        assert!((c.distance_percentile(0.95) - 0.7).abs() < 1e-6);
        assert_eq!(Comparison::default().agreement(), 100.0);
    }
}
