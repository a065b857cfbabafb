//! Nearest-neighbour evidence: cosine similarity of a ticket to the
//! training texts, through an inverted index over hashed features.

use std::cell::RefCell;

use super::features::{DIM, Feature};

/// Inverted index of the training texts' n-gram vectors.
#[derive(Debug)]
pub(crate) struct Knn {
    /// Start of each bucket's postings in `postings` (length `DIM + 1`).
    offsets: Vec<u32>,
    /// (text, value) per bucket.
    postings: Vec<(u32, f32)>,
    /// Class of each text.
    class: Vec<u16>,
    k: usize,
}

thread_local! {
    static ACC: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Knn {
    /// Indexes `vecs` (unit length) of classes `class`; buckets used by
    /// more than `df_cap` of the texts are left out (they say little and
    /// cost the most).
    pub(crate) fn build(vecs: &[&[Feature]], class: &[usize], k: usize, df_cap: f32) -> Knn {
        let mut count = vec![0u32; DIM + 1];
        for v in vecs {
            for &(b, _) in *v {
                count[b as usize] += 1;
            }
        }
        let cap = ((vecs.len() as f32 * df_cap) as u32).max(1);
        let mut offsets = vec![0u32; DIM + 1];
        let mut total = 0u32;
        for b in 0..DIM {
            offsets[b] = total;
            if count[b] <= cap {
                total += count[b];
            }
        }
        offsets[DIM] = total;
        let mut fill = offsets.clone();
        let mut postings = vec![(0u32, 0f32); total as usize];
        for (i, v) in vecs.iter().enumerate() {
            for &(b, x) in *v {
                let b = b as usize;
                if count[b] <= cap {
                    postings[fill[b] as usize] = (i as u32, x);
                    fill[b] += 1;
                }
            }
        }
        Knn {
            offsets,
            postings,
            class: class.iter().map(|&c| c as u16).collect(),
            k,
        }
    }

    /// Per class, the mean similarity of its `top` most similar texts
    /// (written into `out`, length `k`).
    pub(crate) fn class_scores(&self, query: &[Feature], top: usize, out: &mut [f32]) {
        let n = self.class.len();
        let top = top.clamp(1, 4);
        ACC.with(|acc| {
            let mut acc = acc.borrow_mut();
            acc.clear();
            acc.resize(n, 0.0);
            for &(b, x) in query {
                let b = b as usize;
                if b >= DIM {
                    continue;
                }
                let (s, e) = (self.offsets[b] as usize, self.offsets[b + 1] as usize);
                for &(i, y) in &self.postings[s..e] {
                    acc[i as usize] += x * y;
                }
            }
            let mut best = vec![[0f32; 4]; self.k];
            for (i, &s) in acc.iter().enumerate() {
                if s <= 0.0 {
                    continue;
                }
                let b = &mut best[self.class[i] as usize];
                if s > b[top - 1] {
                    let mut at = top - 1;
                    while at > 0 && b[at - 1] < s {
                        b[at] = b[at - 1];
                        at -= 1;
                    }
                    b[at] = s;
                }
            }
            for (o, b) in out.iter_mut().zip(&best) {
                *o = b[..top].iter().sum::<f32>() / top as f32;
            }
        });
    }
}
