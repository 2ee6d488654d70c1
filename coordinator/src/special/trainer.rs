//! Fits a specialised head (K dominant classes plus "other") on a corpus of trunk embeddings:
//! multinomial logistic regression by mini-batch gradient descent on f32, deterministic (fixed
//! shuffle), bounded in rows and epochs so it finishes in seconds on two cores.
//!
//! The stream's class mix is the prior that makes a specialised model win: samples are weighted
//! by (share of the class in the node's window) / (share in the corpus), so the head learns that
//! "other" is rare and what is frequent, and its held-out accuracy is measured at the same mix.

use wire::corpus::{Corpus, Split};
use wire::head::{Head, MAX_CLASSES};

/// Most training rows used (a strided subset of the corpus): bounds memory and time.
pub const MAX_TRAIN_ROWS: usize = 20_000;
const EPOCHS: usize = 12;
const BATCH: usize = 128;
const LEARNING_RATE: f32 = 0.2;
const L2: f32 = 1e-4;
/// Pseudo-count added to every class of the observed histogram, so a class the window never
/// saw still teaches the head that it is "other".
const PRIOR_COUNT: f64 = 1.0;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    #[error("cannot train a head: {0}")]
    Input(String),
}

/// What to specialise for.
#[derive(Debug, Clone)]
pub struct Task<'a> {
    /// The app's class ids the head answers for.
    pub classes: &'a [u32],
    /// Dataset label -> app class id (the manifest's `label_map`).
    pub label_map: &'a [usize],
    /// The node's recent count per app class (index = app class id).
    pub histogram: &'a [u32],
}

/// A trained head and what it measured on held-out images.
#[derive(Debug, Clone)]
pub struct Trained {
    pub head: Head,
    /// Held-out accuracy at the node's class mix, percent: an image of a head class counts when
    /// the head names it, any other image when the head says "other" (the fallback answers it).
    pub accuracy: f64,
    /// The same on head-class images only.
    pub in_set_accuracy: f64,
    pub rows: usize,
}

/// Weight per dataset label: observed share of its app class over its share in `split`.
fn label_weights(split: &Split, task: &Task<'_>) -> Result<Vec<f64>, TrainError> {
    let app_classes = task.histogram.len();
    let mut corpus_counts = vec![0f64; app_classes];
    for &l in &split.labels {
        let c = *task
            .label_map
            .get(l as usize)
            .ok_or_else(|| TrainError::Input(format!("label {l} is not in the app's label map")))?;
        *corpus_counts
            .get_mut(c)
            .ok_or_else(|| TrainError::Input(format!("class {c} outside the histogram")))? += 1.0;
    }
    let observed: Vec<f64> = task
        .histogram
        .iter()
        .map(|&n| f64::from(n) + PRIOR_COUNT)
        .collect();
    let total_obs: f64 = observed.iter().sum();
    let total_corpus: f64 = corpus_counts.iter().sum();
    Ok(task
        .label_map
        .iter()
        .map(|&c| {
            let corpus_share = corpus_counts.get(c).map_or(0.0, |n| n / total_corpus);
            match observed.get(c) {
                Some(o) if corpus_share > 0.0 => (o / total_obs) / corpus_share,
                _ => 0.0,
            }
        })
        .collect())
}

fn target(task: &Task<'_>, label: u8) -> usize {
    let class = task.label_map[label as usize] as u32;
    task.classes
        .iter()
        .position(|&c| c == class)
        .unwrap_or(task.classes.len())
}

/// Trains a head for `task` on `corpus`.
pub fn train(corpus: &Corpus, task: &Task<'_>) -> Result<Trained, TrainError> {
    let k = task.classes.len();
    if k == 0 || k > MAX_CLASSES {
        return Err(TrainError::Input(format!(
            "{k} classes, want 1..={MAX_CLASSES}"
        )));
    }
    if task
        .classes
        .iter()
        .any(|&c| c as usize >= task.histogram.len())
    {
        return Err(TrainError::Input(
            "a class is outside the app's classes".into(),
        ));
    }
    corpus
        .validate()
        .map_err(|e| TrainError::Input(e.to_string()))?;
    let dim = corpus.dim;
    let stride = corpus.train.len().div_ceil(MAX_TRAIN_ROWS).max(1);
    let rows: Vec<usize> = (0..corpus.train.len()).step_by(stride).collect();
    let weights = label_weights(&corpus.train, task)?;
    let (mean, scale) = standardiser(&corpus.train, &rows, dim);
    let outputs = k + 1;
    let mut w = vec![0f32; outputs * dim];
    let mut b = vec![0f32; outputs];
    let mut order = rows.clone();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut z = vec![0f32; dim];
    for _ in 0..EPOCHS {
        shuffle(&mut order, &mut seed);
        for batch in order.chunks(BATCH) {
            let mut gw = vec![0f32; outputs * dim];
            let mut gb = vec![0f32; outputs];
            let mut mass = 0f32;
            for &i in batch {
                let label = corpus.train.labels[i];
                let sw = weights[label as usize] as f32;
                normalise(corpus.train.row(i, dim), &mean, &scale, &mut z);
                let p = softmax(&w, &b, &z);
                let y = target(task, label);
                for (o, &po) in p.iter().enumerate() {
                    let g = sw * (po - f32::from(u8::from(o == y)));
                    gb[o] += g;
                    for (gwi, zi) in gw[o * dim..(o + 1) * dim].iter_mut().zip(&z) {
                        *gwi += g * zi;
                    }
                }
                mass += sw;
            }
            let step = LEARNING_RATE / mass.max(1e-6);
            for (wi, gi) in w.iter_mut().zip(&gw) {
                *wi -= step * gi + LEARNING_RATE * L2 * *wi;
            }
            for (bi, gi) in b.iter_mut().zip(&gb) {
                *bi -= step * gi;
            }
        }
    }
    let head = fold(&w, &b, &mean, &scale, task.classes, dim);
    let (accuracy, in_set_accuracy) = measure(&head, &corpus.test, task, dim)?;
    Ok(Trained {
        head,
        accuracy,
        in_set_accuracy,
        rows: rows.len(),
    })
}

fn standardiser(split: &Split, rows: &[usize], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0f64; dim];
    let mut sq = vec![0f64; dim];
    for &i in rows {
        for (d, &x) in split.row(i, dim).iter().enumerate() {
            mean[d] += f64::from(x);
            sq[d] += f64::from(x) * f64::from(x);
        }
    }
    let mean: Vec<f64> = mean.iter().map(|m| m / n).collect();
    let scale = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| {
            let var = (s / n - m * m).max(0.0);
            // A dead unit (always 0 after ReLU) keeps scale 1 instead of dividing by zero.
            if var > 1e-12 { var.sqrt() as f32 } else { 1.0 }
        })
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), scale)
}

fn normalise(x: &[f32], mean: &[f32], scale: &[f32], out: &mut [f32]) {
    for (((o, xi), m), s) in out.iter_mut().zip(x).zip(mean).zip(scale) {
        *o = (xi - m) / s;
    }
}

fn softmax(w: &[f32], b: &[f32], z: &[f32]) -> Vec<f32> {
    let logits: Vec<f32> = w
        .chunks_exact(z.len())
        .zip(b)
        .map(|(row, bo)| bo + row.iter().zip(z).map(|(a, c)| a * c).sum::<f32>())
        .collect();
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - top).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// Folds the standardisation into the affine layer, so the node applies the head to raw
/// embeddings: `W (x - m) / s + b = (W / s) x + (b - W m / s)`.
fn fold(w: &[f32], b: &[f32], mean: &[f32], scale: &[f32], classes: &[u32], dim: usize) -> Head {
    let mut weights = Vec::with_capacity(w.len());
    let mut bias = Vec::with_capacity(b.len());
    for (row, bo) in w.chunks_exact(dim).zip(b) {
        let mut shift = 0f32;
        for ((wi, m), s) in row.iter().zip(mean).zip(scale) {
            weights.push(wi / s);
            shift += wi * m / s;
        }
        bias.push(bo - shift);
    }
    Head {
        dim,
        classes: classes.to_vec(),
        weights,
        bias,
    }
}

fn measure(
    head: &Head,
    test: &Split,
    task: &Task<'_>,
    dim: usize,
) -> Result<(f64, f64), TrainError> {
    let weights = label_weights(test, task)?;
    let (mut hit, mut mass, mut in_hit, mut in_mass) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..test.len() {
        let label = test.labels[i];
        let sw = weights[label as usize];
        let logits = head
            .logits(test.row(i, dim))
            .map_err(|e| TrainError::Input(e.to_string()))?;
        let predicted = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(o, _)| o);
        let y = target(task, label);
        let right = f64::from(u8::from(predicted == y));
        hit += sw * right;
        mass += sw;
        if y < task.classes.len() {
            in_hit += sw * right;
            in_mass += sw;
        }
    }
    Ok((
        100.0 * hit / mass.max(1e-12),
        100.0 * in_hit / in_mass.max(1e-12),
    ))
}

/// Fisher-Yates with a fixed xorshift stream: the same corpus and task give the same head.
fn shuffle(v: &mut [usize], seed: &mut u64) {
    for i in (1..v.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        v.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten classes as noisy clusters in 8 dimensions: class c sits near unit vector c % 8,
    /// scaled by 1 + c / 8 so classes 0 and 8 differ too.
    fn corpus(per_class: usize) -> Corpus {
        let dim = 8;
        let mut seed = 7u64;
        let mut noise = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.6
        };
        let mut split = |n: usize| {
            let mut s = Split::default();
            for c in 0..10u8 {
                for _ in 0..n {
                    s.labels.push(c);
                    for d in 0..dim {
                        let centre = if d == usize::from(c) % dim {
                            1.0 + f32::from(c / 8)
                        } else {
                            0.0
                        };
                        s.embeddings.push(centre + noise());
                    }
                }
            }
            s
        };
        let train = split(per_class);
        let test = split(per_class / 2);
        Corpus {
            variant: "quarter".into(),
            trunk_sha256: "0".repeat(64),
            dim,
            train,
            test,
        }
    }

    #[test]
    fn learns_the_dominant_classes_and_routes_the_rest_to_other() {
        let c = corpus(200);
        let label_map: Vec<usize> = (0..10).collect();
        let mut histogram = vec![2u32; 10];
        for d in [1, 4, 6] {
            histogram[d] = 100;
        }
        let task = Task {
            classes: &[1, 4, 6],
            label_map: &label_map,
            histogram: &histogram,
        };
        let t = train(&c, &task).expect("train");
        assert!(t.accuracy > 90.0, "held-out accuracy {}", t.accuracy);
        assert!(t.in_set_accuracy > 90.0, "in-set {}", t.in_set_accuracy);
        assert_eq!(t.head.classes, vec![1, 4, 6]);
        let again = train(&c, &task).expect("train");
        assert_eq!(again.head, t.head, "training is deterministic");
        // The head file round-trips and answers on raw embeddings (standardisation folded in).
        let head = Head::decode(&t.head.encode().expect("encode")).expect("decode");
        let probe = c.test.row(
            c.test.labels.iter().position(|&l| l == 4).expect("4"),
            c.dim,
        );
        assert!(matches!(
            head.verdict(probe).expect("verdict"),
            wire::head::Verdict::Class { class: 4, .. }
        ));
    }

    #[test]
    fn bad_tasks_are_refused() {
        let c = corpus(10);
        let label_map: Vec<usize> = (0..10).collect();
        let histogram = vec![1u32; 10];
        let with = |classes: &[u32]| {
            train(
                &c,
                &Task {
                    classes,
                    label_map: &label_map,
                    histogram: &histogram,
                },
            )
        };
        assert!(with(&[]).is_err());
        assert!(with(&[11]).is_err());
        assert!(with(&[0, 1, 2, 3, 4, 5, 6, 7, 8]).is_err());
        let short = Task {
            classes: &[1],
            label_map: &[0, 1],
            histogram: &histogram,
        };
        assert!(train(&c, &short).is_err(), "labels outside the map");
    }
}
