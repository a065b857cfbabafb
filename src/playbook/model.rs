//! The text classifier: multinomial logistic regression on hashed features.
//!
//! A linear model is fast to train (well under a second for 10,000
//! examples), fast to apply (one row of `k` weights per feature) and its
//! softmax output is a probability that can be calibrated and thresholded.
//! Training is a few epochs of SGD with per-row Adagrad step sizes and L2
//! regularisation, in a fixed (seeded) order so builds are reproducible.

use super::features::{DIM, Feature};

/// One training example: its sparse features, class and weight.
#[derive(Debug, Clone)]
pub(crate) struct Example {
    pub(crate) features: Vec<Feature>,
    pub(crate) class: usize,
    pub(crate) weight: f32,
}

/// Training knobs; the defaults were tuned on the project's data.
#[derive(Debug, Clone)]
pub(crate) struct TrainConfig {
    pub(crate) epochs: usize,
    pub(crate) learning_rate: f32,
    pub(crate) l2: f32,
    pub(crate) seed: u64,
    /// Models trained in different example orders whose weights are
    /// averaged. One SGD run's weights hang on its order: a one-line
    /// playbook edit moved held-out false suggestions by a point. The
    /// average of a few (the same as averaging their logits, the model
    /// being linear) is steadier and abstains more where they disagree.
    pub(crate) runs: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 8,
            learning_rate: 1.2,
            l2: 1e-5,
            seed: 0x5eed,
            runs: 3,
        }
    }
}

/// Trained weights: row `j` (a hash bucket) holds `k` class weights.
#[derive(Clone)]
pub(crate) struct Model {
    /// Number of classes.
    pub(crate) k: usize,
    /// `DIM * k` weights, row-major, so one feature touches one cache line.
    pub(crate) w: Vec<f32>,
    /// Softmax temperature (> 1 softens overconfident training fits).
    pub(crate) temperature: f32,
}

impl std::fmt::Debug for Model {
    /// A summary: the weight table has millions of entries.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("classes", &self.k)
            .field(
                "nonzero_weights",
                &self.w.iter().filter(|w| **w != 0.0).count(),
            )
            .field("temperature", &self.temperature)
            .finish()
    }
}

impl Model {
    /// Adds the logits of `features` into `out` (length `k`).
    #[inline]
    pub(crate) fn add_scores(&self, features: &[Feature], out: &mut [f32]) {
        let k = self.k;
        for &(j, x) in features {
            let row = &self.w[j as usize * k..j as usize * k + k];
            for (o, w) in out.iter_mut().zip(row) {
                *o += w * x;
            }
        }
    }

    /// The `k` class weights of bucket `j`.
    pub(crate) fn row(&self, j: u32) -> &[f32] {
        &self.w[j as usize * self.k..(j as usize + 1) * self.k]
    }

    /// Trains a model on `examples` for `k` classes.
    pub(crate) fn train(examples: &[Example], k: usize, cfg: &TrainConfig) -> Model {
        let runs = cfg.runs.max(1);
        let seed = |r: usize| cfg.seed ^ (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // The runs are independent: train them on their own threads (a
        // reload should not take three times as long), then add them up in
        // run order so the result does not depend on which finished first.
        let mut models: Vec<Model> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..runs)
                .map(|r| s.spawn(move || Self::train_once(examples, k, seed(r), cfg)))
                .collect();
            let first = Self::train_once(examples, k, seed(0), cfg);
            std::iter::once(first)
                .chain(
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("training thread")),
                )
                .collect()
        });
        // Only non-zero weights are written: rows no run touched stay
        // untouched zero pages, which keeps the table as cheap to read as
        // one run's.
        let mut model = models.remove(0);
        for other in &models {
            for (a, &b) in model.w.iter_mut().zip(&other.w) {
                if b != 0.0 {
                    *a += b;
                }
            }
        }
        if runs > 1 {
            let inv = 1.0 / runs as f32;
            for a in model.w.iter_mut().filter(|a| **a != 0.0) {
                *a *= inv;
            }
        }
        model
    }

    /// One SGD run in the order given by `seed`.
    fn train_once(examples: &[Example], k: usize, seed: u64, cfg: &TrainConfig) -> Model {
        let mut w = vec![0f32; DIM * k];
        // Adagrad accumulators, one per row (feature), not per weight: a
        // tenth of the square roots for nearly the same effect.
        let mut g2 = vec![0f32; DIM];
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut rng = seed | 1;
        let mut p = vec![0f32; k];
        for _ in 0..cfg.epochs {
            // Fisher–Yates with xorshift: deterministic, no rand crate.
            for i in (1..order.len()).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            for &i in &order {
                let ex = &examples[i];
                p.iter_mut().for_each(|v| *v = 0.0);
                for &(j, x) in &ex.features {
                    let row = &w[j as usize * k..j as usize * k + k];
                    for (o, wv) in p.iter_mut().zip(row) {
                        *o += wv * x;
                    }
                }
                softmax(&mut p, 1.0);
                // Gradient of the weighted cross-entropy w.r.t. the logits.
                p[ex.class] -= 1.0;
                let grad_sq: f32 = p.iter().map(|g| g * g).sum::<f32>() * ex.weight * ex.weight;
                for &(j, x) in &ex.features {
                    let j = j as usize;
                    g2[j] += grad_sq * x * x;
                    let step = cfg.learning_rate / (g2[j].sqrt() + 1e-6);
                    let row = &mut w[j * k..j * k + k];
                    for (wv, g) in row.iter_mut().zip(&p) {
                        *wv -= step * (g * x * ex.weight + cfg.l2 * *wv);
                    }
                }
            }
        }
        Model {
            k,
            w,
            temperature: 1.0,
        }
    }
}

/// In-place softmax of logits divided by `temperature`.
pub(crate) fn softmax(v: &mut [f32], temperature: f32) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = ((*x - max) / temperature).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_problem() {
        let ex = |j: u32, class| Example {
            features: vec![(j, 1.0), (7, 1.0)],
            class,
            weight: 1.0,
        };
        let examples: Vec<Example> = (0..20).map(|i| ex(i % 2 + 1, (i % 2) as usize)).collect();
        let model = Model::train(&examples, 2, &TrainConfig::default());
        let mut s = vec![0.0; 2];
        model.add_scores(&[(1, 1.0), (7, 1.0)], &mut s);
        softmax(&mut s, 1.0);
        assert!(s[0] > 0.9, "{s:?}");
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut v = vec![1.0, 2.0, 3.0];
        softmax(&mut v, 2.0);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[2] > v[1] && v[1] > v[0]);
    }
}
