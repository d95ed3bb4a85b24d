//! Cross-encoder scoring, independent of wasi-nn.
//!
//! [`score`] takes the encoded `(query, passage)` pairs and a function that
//! runs the model on one padded batch; it plans length-sorted batches, checks
//! each logits output and puts the scores back in passage order. The
//! component glue passes a function that calls wasi-nn; the tests pass fakes.

use nboost_nn_common::tensors::{plan_batches, Batch, Encoded, PadIds};

/// The logits a model returned for one batch: dimensions as the back-end
/// claims them, and the values (already checked to be as many as the
/// dimensions say).
pub type Logits = (Vec<u32>, Vec<f32>);

/// One relevance score per row of a logits output of a batch of `rows`
/// pairs.
///
/// * `[rows]` or `[rows, 1]`: a single relevance logit (the usual
///   `cross-encoder/ms-marco-*` head): the score is the logit.
/// * `[rows, 2]`: a two-class (not relevant, relevant) head: the score is
///   `logit[1] - logit[0]`, the log-odds of "relevant", which ranks exactly
///   like the softmax probability of the relevant class (the last column
///   alone would not).
///
/// Anything else, or a non-finite score, is an error.
pub fn scores_from_logits(dims: &[u32], values: &[f32], rows: usize) -> Result<Vec<f32>, String> {
    let columns = match dims {
        [r] if *r as usize == rows => 1,
        [r, c @ (1 | 2)] if *r as usize == rows => *c as usize,
        _ => {
            return Err(format!(
                "logits have dimensions {dims:?}, expected [{rows}], [{rows}, 1] or [{rows}, 2]"
            ))
        }
    };
    if values.len() != rows * columns {
        return Err(format!(
            "logits have {} values for dimensions {dims:?}",
            values.len()
        ));
    }
    let scores: Vec<f32> = values
        .chunks_exact(columns)
        .map(|row| match row {
            [relevant] => *relevant,
            [other, relevant] => relevant - other,
            _ => unreachable!("one or two columns"),
        })
        .collect();
    if scores.iter().any(|s| !s.is_finite()) {
        return Err("logits contain non-finite values".to_owned());
    }
    Ok(scores)
}

/// One score per pair, in the order given.
///
/// Pairs are batched by [`plan_batches`] (sorted by length, at most
/// `batch_size` per batch), padded with `pad`, and passed to `run`; errors
/// from `run` and malformed logits are returned as back-end messages.
pub fn score(
    pairs: &[Encoded],
    pad: PadIds,
    batch_size: usize,
    mut run: impl FnMut(&Batch) -> Result<Logits, String>,
) -> Result<Vec<f32>, String> {
    let lengths: Vec<usize> = pairs.iter().map(Encoded::len).collect();
    let mut scores = vec![0.0_f32; pairs.len()];
    for indices in plan_batches(&lengths, batch_size) {
        let items: Vec<&Encoded> = indices.iter().map(|&i| &pairs[i]).collect();
        let batch = Batch::pad(&items, pad);
        let (dims, values) = run(&batch)?;
        let batch_scores = scores_from_logits(&dims, &values, batch.size)?;
        for (i, s) in indices.into_iter().zip(batch_scores) {
            scores[i] = s;
        }
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(ids: &[u32]) -> Encoded {
        Encoded {
            ids: ids.to_vec(),
            type_ids: vec![0; ids.len()],
            attention_mask: vec![1; ids.len()],
        }
    }

    /// A fake model: the logit of a pair is the sum of its unmasked ids.
    fn sum_model(batch: &Batch) -> Result<Logits, String> {
        let values = batch
            .input_ids
            .chunks(batch.seq_len.max(1))
            .zip(batch.attention_mask.chunks(batch.seq_len.max(1)))
            .map(|(ids, mask)| ids.iter().zip(mask).map(|(i, m)| (i * m) as f32).sum())
            .collect();
        Ok((vec![batch.size as u32, 1], values))
    }

    #[test]
    fn scores_in_order_whatever_the_batching() {
        let pairs = vec![
            enc(&[1, 2, 3, 4]),
            enc(&[10]),
            enc(&[5, 5, 5]),
            enc(&[7, 0]),
        ];
        for batch_size in 1..=5 {
            let s = score(&pairs, PadIds { id: 99, type_id: 0 }, batch_size, sum_model).unwrap();
            assert_eq!(s, vec![10.0, 10.0, 15.0, 7.0], "batch {batch_size}");
        }
        assert_eq!(score(&[], PadIds::default(), 4, sum_model), Ok(vec![]));
    }

    #[test]
    fn logits_shapes() {
        assert_eq!(scores_from_logits(&[2], &[1.0, 2.0], 2), Ok(vec![1.0, 2.0]));
        assert_eq!(
            scores_from_logits(&[2, 1], &[1.0, 2.0], 2),
            Ok(vec![1.0, 2.0])
        );
        assert_eq!(
            scores_from_logits(&[2, 2], &[1.0, 3.0, 0.5, -0.5], 2),
            Ok(vec![2.0, -1.0])
        );
        for (dims, n) in [
            (vec![3], 2),
            (vec![2, 3], 6),
            (vec![1, 2], 2),
            (vec![2, 1, 1], 2),
            (vec![], 1),
        ] {
            assert!(
                scores_from_logits(&dims, &vec![0.0; n], 2).is_err(),
                "{dims:?}"
            );
        }
        assert!(scores_from_logits(&[2], &[1.0], 2).is_err());
        assert!(scores_from_logits(&[2], &[1.0, f32::NAN], 2).is_err());
        assert!(scores_from_logits(&[1], &[f32::INFINITY], 1).is_err());
    }

    #[test]
    fn backend_errors_pass_through() {
        let r = score(&[enc(&[1])], PadIds::default(), 4, |_| {
            Err("boom".to_owned())
        });
        assert_eq!(r, Err("boom".to_owned()));
    }
}
