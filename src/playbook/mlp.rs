//! A one-hidden-layer network over the same hashed features (experiment):
//! hashed rows folded to 2^16, ReLU hidden layer, softmax, Adagrad SGD.

use super::features::Feature;
use super::model::{Example, softmax};

const ROWS_BITS: u32 = 16;
const ROWS: usize = 1 << ROWS_BITS;

#[derive(Debug)]
pub(crate) struct Mlp {
    h: usize,
    k: usize,
    /// ROWS x h
    w1: Vec<f32>,
    b1: Vec<f32>,
    /// k x h
    w2: Vec<f32>,
    b2: Vec<f32>,
}

#[inline]
fn row(j: u32) -> usize {
    (j as usize) & (ROWS - 1)
}

impl Mlp {
    fn forward(&self, x: &[Feature], hid: &mut [f32], out: &mut [f32]) {
        hid.copy_from_slice(&self.b1);
        for &(j, v) in x {
            let r = row(j) * self.h;
            for (a, w) in hid.iter_mut().zip(&self.w1[r..r + self.h]) {
                *a += w * v;
            }
        }
        hid.iter_mut().for_each(|a| *a = a.max(0.0));
        for (c, o) in out.iter_mut().enumerate().take(self.k) {
            *o = self.b2[c]
                + self.w2[c * self.h..(c + 1) * self.h]
                    .iter()
                    .zip(hid.iter())
                    .map(|(w, a)| w * a)
                    .sum::<f32>();
        }
    }

    pub(crate) fn probs(&self, x: &[Feature], out: &mut [f32]) {
        let mut hid = vec![0f32; self.h];
        self.forward(x, &mut hid, out);
        softmax(out, 1.0);
    }

    pub(crate) fn train(
        examples: &[Example],
        k: usize,
        h: usize,
        epochs: usize,
        lr: f32,
        seed: u64,
    ) -> Mlp {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            ((rng >> 11) as f64 / (1u64 << 53) as f64) as f32 * 2.0 - 1.0
        };
        let s1 = 0.5 / (h as f32).sqrt();
        let w1: Vec<f32> = (0..ROWS * h).map(|_| next() * s1).collect();
        let s2 = (1.0 / h as f32).sqrt();
        let w2: Vec<f32> = (0..k * h).map(|_| next() * s2).collect();
        let mut m = Mlp {
            h,
            k,
            w1,
            b1: vec![0.01; h],
            w2,
            b2: vec![0.0; k],
        };
        let mut g1 = vec![0f32; ROWS];
        let mut g2 = vec![0f32; k];
        let mut gb1 = 0f32;
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut hid = vec![0f32; h];
        let mut p = vec![0f32; k];
        let mut dh = vec![0f32; h];
        let mut rs = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for _ in 0..epochs {
            for i in (1..order.len()).rev() {
                rs ^= rs << 13;
                rs ^= rs >> 7;
                rs ^= rs << 17;
                order.swap(i, (rs % (i as u64 + 1)) as usize);
            }
            for &i in &order {
                let ex = &examples[i];
                m.forward(&ex.features, &mut hid, &mut p);
                softmax(&mut p, 1.0);
                p[ex.class] -= 1.0;
                p.iter_mut().for_each(|g| *g *= ex.weight);
                // Hidden gradient before W2 changes.
                for (a, d) in dh.iter_mut().enumerate() {
                    *d = if hid[a] > 0.0 {
                        (0..k).map(|c| m.w2[c * h + a] * p[c]).sum()
                    } else {
                        0.0
                    };
                }
                for c in 0..k {
                    let gsq: f32 =
                        hid.iter().map(|a| (a * p[c]).powi(2)).sum::<f32>() + p[c] * p[c];
                    g2[c] += gsq;
                    let step = lr / (g2[c].sqrt() + 1e-6);
                    for (w, a) in m.w2[c * h..(c + 1) * h].iter_mut().zip(&hid) {
                        *w -= step * p[c] * a;
                    }
                    m.b2[c] -= step * p[c];
                }
                let dsq: f32 = dh.iter().map(|d| d * d).sum();
                gb1 += dsq;
                let sb = lr / (gb1.sqrt() + 1e-6);
                for (b, d) in m.b1.iter_mut().zip(&dh) {
                    *b -= sb * d;
                }
                for &(j, v) in &ex.features {
                    let r = row(j);
                    g1[r] += dsq * v * v;
                    let step = lr / (g1[r].sqrt() + 1e-6);
                    for (w, d) in m.w1[r * h..(r + 1) * h].iter_mut().zip(&dh) {
                        *w -= step * (d * v + 1e-5 * *w);
                    }
                }
            }
        }
        m
    }
}
