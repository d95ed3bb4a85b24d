//! Bi-encoder scoring, independent of wasi-nn.
//!
//! [`score`] takes encoded texts (the query first, then the passages) and a
//! function that runs the model on one padded batch; it plans length-sorted
//! batches, checks every output the model returns, mean-pools, normalises and
//! returns the cosine of the query with each passage, in passage order. The
//! component glue passes a function that calls wasi-nn; the tests pass a fake
//! model.

use nboost_nn_common::pooling::{dot, l2_normalize, mean_pool};
use nboost_nn_common::tensors::{plan_batches, Batch, Encoded, PadIds};

/// The largest hidden size accepted from a back-end (all-MiniLM-L6-v2 has
/// 384; BERT-large 1024).
pub const MAX_HIDDEN: usize = 16_384;

/// Why scoring failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The model or its back-end failed, or returned something malformed.
    Backend(String),
}

/// The token embeddings a model returned for one batch: dimensions as the
/// back-end claims them, and the values (already checked to be as many as
/// the dimensions say).
pub type HiddenState = (Vec<u32>, Vec<f32>);

/// Check that `dims` is `[batch.size, batch.seq_len, hidden]` and return
/// `hidden`, which must equal `expected_hidden` when that is known.
pub fn check_hidden_dims(
    dims: &[u32],
    batch: &Batch,
    expected_hidden: Option<usize>,
) -> Result<usize, String> {
    let [b, s, h] = dims else {
        return Err(format!(
            "last_hidden_state has dimensions {dims:?}, expected [batch, seq, hidden]"
        ));
    };
    let (b, s, h) = (*b as usize, *s as usize, *h as usize);
    if b != batch.size || s != batch.seq_len {
        return Err(format!(
            "last_hidden_state has dimensions {dims:?} for an input of [{}, {}]",
            batch.size, batch.seq_len
        ));
    }
    if h == 0 || h > MAX_HIDDEN || expected_hidden.is_some_and(|e| e != h) {
        return Err(format!(
            "last_hidden_state has hidden size {h}, expected {}",
            expected_hidden.map_or_else(|| format!("1..={MAX_HIDDEN}"), |e| e.to_string())
        ));
    }
    Ok(h)
}

/// One L2-normalised embedding per encoding, in the order given.
///
/// Encodings are batched by [`plan_batches`] (sorted by length, at most
/// `batch_size` per batch; with `sort` false, in the order given, which only
/// exists to measure what sorting saves), padded with `pad`, and passed to
/// `run`.
pub fn embed(
    encodings: &[Encoded],
    pad: PadIds,
    batch_size: usize,
    sort: bool,
    mut run: impl FnMut(&Batch) -> Result<HiddenState, Failure>,
) -> Result<Vec<Vec<f32>>, Failure> {
    let lengths: Vec<usize> = encodings.iter().map(Encoded::len).collect();
    let mut embeddings: Vec<Vec<f32>> = vec![Vec::new(); encodings.len()];
    let mut hidden_size = None;
    let plan = if sort {
        plan_batches(&lengths, batch_size)
    } else {
        let order: Vec<usize> = (0..lengths.len()).collect();
        order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    };
    for indices in plan {
        let items: Vec<&Encoded> = indices.iter().map(|&i| &encodings[i]).collect();
        let batch = Batch::pad(&items, pad);
        let (dims, values) = run(&batch)?;
        let h = check_hidden_dims(&dims, &batch, hidden_size).map_err(Failure::Backend)?;
        hidden_size = Some(h);
        if values.len() != batch.size * batch.seq_len * h {
            return Err(Failure::Backend(format!(
                "last_hidden_state has {} values for dimensions {dims:?}",
                values.len()
            )));
        }
        let pooled = mean_pool(&values, &batch.attention_mask, batch.size, batch.seq_len, h);
        for (i, mut v) in indices.into_iter().zip(pooled) {
            l2_normalize(&mut v);
            embeddings[i] = v;
        }
    }
    Ok(embeddings)
}

/// Cosine similarity of the query with each passage.
///
/// `encodings[0]` is the query, the rest are the passages; returns one score
/// per passage, in order. No passages: no model call, empty result. A
/// non-finite score (a back-end that returned NaN or infinity) is an error.
pub fn score(
    encodings: &[Encoded],
    pad: PadIds,
    batch_size: usize,
    sort: bool,
    run: impl FnMut(&Batch) -> Result<HiddenState, Failure>,
) -> Result<Vec<f32>, Failure> {
    if encodings.len() <= 1 {
        return Ok(Vec::new());
    }
    let embeddings = embed(encodings, pad, batch_size, sort, run)?;
    let (query, passages) = embeddings.split_first().expect("at least two embeddings");
    let scores: Vec<f32> = passages.iter().map(|p| dot(query, p)).collect();
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(Failure::Backend(
            "last_hidden_state contains non-finite values".to_owned(),
        ));
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

    /// A fake model: token id `t` embeds to the one-hot vector of `t % 4`
    /// (hidden size 4), padding embeds to garbage that must be masked out.
    fn one_hot_model(batch: &Batch) -> Result<HiddenState, Failure> {
        let mut values = Vec::new();
        for (id, mask) in batch.input_ids.iter().zip(&batch.attention_mask) {
            let mut v = [0.0_f32; 4];
            if *mask == 1 {
                v[(*id % 4) as usize] = 1.0;
            } else {
                v = [1e6; 4];
            }
            values.extend(v);
        }
        Ok((vec![batch.size as u32, batch.seq_len as u32, 4], values))
    }

    #[test]
    fn scores_in_passage_order_whatever_the_batching() {
        let encodings = vec![
            enc(&[101, 1, 102]),             // query: tokens 1,1,2 -> mostly dim 1
            enc(&[101, 1, 1, 1, 1, 1, 102]), // long, dim 1 heavy
            enc(&[101, 102]),                // "empty" passage: [CLS] [SEP]
            enc(&[101, 3, 3, 102]),          // dim 3
        ];
        let expected = score(&encodings, PadIds::default(), 100, true, one_hot_model).unwrap();
        assert_eq!(expected.len(), 3);
        assert!(expected[0] > expected[2] && expected[0] > expected[1]);
        for batch_size in 1..=4 {
            let got = score(
                &encodings,
                PadIds::default(),
                batch_size,
                true,
                one_hot_model,
            )
            .unwrap();
            let unsorted = score(
                &encodings,
                PadIds::default(),
                batch_size,
                false,
                one_hot_model,
            )
            .unwrap();
            assert_eq!(
                got, unsorted,
                "batch {batch_size}: the order of batching changes nothing"
            );
            for (a, b) in got.iter().zip(&expected) {
                assert!(
                    (a - b).abs() < 1e-6,
                    "batch {batch_size}: {got:?} vs {expected:?}"
                );
            }
        }
    }

    #[test]
    fn empty_text_embeds_as_mean_of_cls_and_sep() {
        // 101 % 4 = 1, 102 % 4 = 2: mean (0, .5, .5, 0), normalised.
        let encodings = vec![enc(&[101, 102]), enc(&[1, 2, 7, 7, 7])];
        let e = embed(&encodings, PadIds::default(), 2, true, one_hot_model).unwrap();
        let r = 0.5_f32.sqrt();
        assert_eq!(e[0], vec![0.0, r, r, 0.0]);
    }

    #[test]
    fn no_passages_means_no_model_call() {
        let s = score(&[enc(&[101, 102])], PadIds::default(), 8, true, |_| {
            panic!("model called")
        });
        assert_eq!(s, Ok(vec![]));
    }

    #[test]
    fn rejects_malformed_outputs() {
        let encodings = vec![enc(&[1, 2]), enc(&[1, 2, 3])];
        type Dims = dyn Fn(&Batch) -> Vec<u32>;
        let bad_dims: [&Dims; 5] = [
            &|b| vec![b.size as u32, b.seq_len as u32],
            &|b| vec![b.size as u32 + 1, b.seq_len as u32, 4],
            &|b| vec![b.size as u32, b.seq_len as u32 + 1, 4],
            &|b| vec![b.size as u32, b.seq_len as u32, 0],
            &|b| vec![b.size as u32, b.seq_len as u32, 1 << 20],
        ];
        for dims in bad_dims {
            let r = score(&encodings, PadIds::default(), 8, true, |b| {
                Ok((dims(b), one_hot_model(b).unwrap().1))
            });
            assert!(matches!(r, Err(Failure::Backend(_))), "{r:?}");
        }
        // Hidden size changing between batches.
        let mut h = 3;
        let r = score(&encodings, PadIds::default(), 1, true, |b| {
            h += 1;
            let n = b.size * b.seq_len * h;
            Ok((
                vec![b.size as u32, b.seq_len as u32, h as u32],
                vec![1.0; n],
            ))
        });
        assert!(matches!(r, Err(Failure::Backend(_))), "{r:?}");
        // NaN in the hidden state.
        let r = score(&encodings, PadIds::default(), 8, true, |b| {
            let (d, mut v) = one_hot_model(b)?;
            v[0] = f32::NAN;
            Ok((d, v))
        });
        assert!(matches!(r, Err(Failure::Backend(_))), "{r:?}");
        // Back-end errors pass through.
        let r = score(&encodings, PadIds::default(), 8, true, |_| {
            Err(Failure::Backend("boom".into()))
        });
        assert_eq!(r, Err(Failure::Backend("boom".into())));
    }
}
