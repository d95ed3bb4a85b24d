//! Sentence embeddings from token embeddings, and their similarity.
//!
//! This is sentence-transformers' `Pooling(mode="mean")` followed by
//! `Normalize()`, the head of all-MiniLM-L6-v2 and most bi-encoders:
//!
//! ```text
//! embedding = sum_t(hidden[t] * mask[t]) / max(sum_t(mask[t]), 1e-9)
//! embedding = embedding / max(||embedding||_2, 1e-12)
//! ```
//!
//! so that the cosine similarity of two texts is the dot product of their
//! embeddings.

/// Masked mean over the sequence axis of `hidden`, a row-major
/// `[batch, seq, dim]` array, with `mask` a `[batch, seq]` attention mask.
///
/// Returns `batch` vectors of `dim` values. A row whose mask is all zeros
/// pools to zeros (the `1e-9` clamp of the reference), never to NaN.
///
/// # Panics
///
/// If `hidden` or `mask` is not `batch * seq * dim` or `batch * seq` long;
/// callers check the back-end's output dimensions first.
pub fn mean_pool(
    hidden: &[f32],
    mask: &[i64],
    batch: usize,
    seq: usize,
    dim: usize,
) -> Vec<Vec<f32>> {
    assert_eq!(hidden.len(), batch * seq * dim, "hidden state size");
    assert_eq!(mask.len(), batch * seq, "attention mask size");
    (0..batch)
        .map(|b| {
            let mut sum = vec![0.0_f32; dim];
            let mut count = 0.0_f32;
            for t in 0..seq {
                let m = mask[b * seq + t] as f32;
                if m == 0.0 {
                    continue;
                }
                count += m;
                let row = &hidden[(b * seq + t) * dim..][..dim];
                for (s, &h) in sum.iter_mut().zip(row) {
                    *s += h * m;
                }
            }
            let count = count.max(1e-9);
            sum.iter_mut().for_each(|s| *s /= count);
            sum
        })
        .collect()
}

/// Scale `v` to unit L2 norm (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// Dot product; the cosine similarity of two [`l2_normalize`]d vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn mean_pool_ignores_masked_positions() {
        // batch 2, seq 3, dim 2.
        let hidden = [
            1.0, 2.0, 3.0, 4.0, 100.0, 100.0, // row 0: last position padded
            5.0, 6.0, 7.0, 8.0, 9.0, 10.0, // row 1: all real
        ];
        let mask = [1, 1, 0, 1, 1, 1];
        let pooled = mean_pool(&hidden, &mask, 2, 3, 2);
        assert_eq!(pooled, vec![vec![2.0, 3.0], vec![7.0, 8.0]]);
    }

    #[test]
    fn two_token_text_is_the_mean_of_cls_and_sep() {
        // An empty text encodes to [CLS] [SEP]: its embedding is their mean.
        let hidden = [1.0, 0.0, 3.0, 2.0, 42.0, 42.0, 42.0, 42.0];
        let mask = [1, 1, 0, 0];
        assert_eq!(mean_pool(&hidden, &mask, 1, 4, 2), vec![vec![2.0, 1.0]]);
    }

    #[test]
    fn all_masked_row_pools_to_zero() {
        let pooled = mean_pool(&[1.0, 2.0], &[0], 1, 1, 2);
        assert_eq!(pooled, vec![vec![0.0, 0.0]]);
        let mut v = pooled[0].clone();
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.0, 0.0]);
    }

    #[test]
    fn normalised_dot_is_cosine() {
        let mut a = vec![3.0, 4.0];
        let mut b = vec![4.0, 3.0];
        l2_normalize(&mut a);
        l2_normalize(&mut b);
        assert!(close(a[0], 0.6) && close(a[1], 0.8));
        assert!(close(dot(&a, &b), 0.96));
        assert!(close(dot(&a, &a), 1.0));
    }

    #[test]
    fn empty_batch() {
        assert!(mean_pool(&[], &[], 0, 7, 384).is_empty());
    }
}
