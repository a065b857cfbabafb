//! Sub-classes: each class's training texts split by spherical k-means.
//!
//! A class such as `none` or a broad playbook is a union of different
//! requests; one linear weight vector per class fits such a union badly.
//! Training the softmax over sub-classes (clusters of each class's texts)
//! and adding their probabilities back up gives each kind of request its
//! own weights.

use std::collections::HashMap;

use super::features::Feature;

/// Splits the texts of every class into clusters.
///
/// `vecs[i]` is text `i`'s unit-length sparse vector, `class[i]` its class
/// (`< k`). A class of `n` texts gets `round(n / size)` clusters, between
/// 1 and `max`. Returns the sub-class of every text and the class of every
/// sub-class; every class has at least one sub-class, so a class without
/// texts keeps its place. Deterministic for the same input.
pub(crate) fn split(
    vecs: &[&[Feature]],
    class: &[usize],
    k: usize,
    size: f32,
    max: usize,
    none_only: bool,
) -> (Vec<usize>, Vec<usize>) {
    let mut sub = vec![0usize; vecs.len()];
    let mut sub_class = Vec::new();
    for c in 0..k {
        let members: Vec<usize> = (0..vecs.len()).filter(|&i| class[i] == c).collect();
        let want = if size > 0.0 && (c == 0 || !none_only) {
            ((members.len() as f32 / size).round() as usize).clamp(1, max.max(1))
        } else {
            1
        };
        let assign = if want > 1 && members.len() > want {
            kmeans(&members.iter().map(|&i| vecs[i]).collect::<Vec<_>>(), want)
        } else {
            vec![0; members.len()]
        };
        let base = sub_class.len();
        let used = assign.iter().copied().max().map_or(1, |m| m + 1);
        sub_class.extend(std::iter::repeat_n(c, used));
        for (&i, a) in members.iter().zip(assign) {
            sub[i] = base + a;
        }
    }
    (sub, sub_class)
}

/// Spherical k-means with a seeded k-means++ start; returns a cluster per
/// vector, numbered densely from 0.
fn kmeans(vecs: &[&[Feature]], want: usize) -> Vec<usize> {
    // Local dense ids for the buckets these texts use.
    let mut ids: HashMap<u32, u32> = HashMap::new();
    let local: Vec<Vec<(u32, f32)>> = vecs
        .iter()
        .map(|v| {
            v.iter()
                .map(|&(b, x)| {
                    let n = ids.len() as u32;
                    (*ids.entry(b).or_insert(n), x)
                })
                .collect()
        })
        .collect();
    let dim = ids.len();
    let n = local.len();
    let dot = |c: &[f32], v: &[(u32, f32)]| v.iter().map(|&(j, x)| c[j as usize] * x).sum::<f32>();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ (n as u64);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    // k-means++: each new centre drawn with probability ∝ its distance
    // (1 - best similarity) from the centres so far.
    let mut centres: Vec<Vec<f32>> = Vec::with_capacity(want);
    let as_dense = |v: &[(u32, f32)]| {
        let mut c = vec![0f32; dim];
        for &(j, x) in v {
            c[j as usize] = x;
        }
        c
    };
    centres.push(as_dense(&local[0]));
    let mut best_sim: Vec<f32> = local.iter().map(|v| dot(&centres[0], v)).collect();
    while centres.len() < want {
        let d: Vec<f64> = best_sim
            .iter()
            .map(|&s| (1.0 - s).max(0.0) as f64)
            .collect();
        let total: f64 = d.iter().sum();
        if total <= 1e-9 {
            break;
        }
        let mut r = next() * total;
        let mut pick = n - 1;
        for (i, &di) in d.iter().enumerate() {
            if r < di {
                pick = i;
                break;
            }
            r -= di;
        }
        let c = as_dense(&local[pick]);
        for (b, v) in best_sim.iter_mut().zip(&local) {
            *b = b.max(dot(&c, v));
        }
        centres.push(c);
    }
    let mut assign = vec![0usize; n];
    for _ in 0..15 {
        let mut changed = false;
        for (i, v) in local.iter().enumerate() {
            let mut best = (f32::NEG_INFINITY, 0);
            for (ci, c) in centres.iter().enumerate() {
                let s = dot(c, v);
                if s > best.0 {
                    best = (s, ci);
                }
            }
            if assign[i] != best.1 {
                assign[i] = best.1;
                changed = true;
            }
        }
        for (ci, c) in centres.iter_mut().enumerate() {
            let mut sum = vec![0f32; dim];
            let mut any = false;
            for (v, _) in local.iter().zip(&assign).filter(|(_, a)| **a == ci) {
                any = true;
                for &(j, x) in v {
                    sum[j as usize] += x;
                }
            }
            if any {
                let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
                sum.iter_mut().for_each(|x| *x /= norm);
                *c = sum;
            }
        }
        if !changed {
            break;
        }
    }
    // Renumber densely (a centre may have lost all its members).
    let mut map = vec![usize::MAX; centres.len()];
    let mut used = 0;
    for a in assign.iter_mut() {
        if map[*a] == usize::MAX {
            map[*a] = used;
            used += 1;
        }
        *a = map[*a];
    }
    assign
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_two_groups_of_one_class() {
        let a: Vec<Feature> = vec![(1, 0.8), (2, 0.6)];
        let b: Vec<Feature> = vec![(7, 0.6), (8, 0.8)];
        let vecs: Vec<&[Feature]> = vec![&a, &b, &a, &b, &a, &b];
        let class = vec![0, 0, 0, 0, 0, 0];
        let (sub, sub_class) = split(&vecs, &class, 2, 3.0, 8, false);
        assert_eq!(
            sub_class,
            vec![0, 0, 1],
            "two for class 0, one for empty class 1"
        );
        assert_eq!(sub[0], sub[2]);
        assert_ne!(sub[0], sub[1]);
    }
}
