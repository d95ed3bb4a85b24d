//! Batches of encoded texts, as the bytes of wasi-nn tensors, and back.
//!
//! Transformer inputs are `[batch, seq]` tensors of `int64`: `input_ids`,
//! `attention_mask` and `token_type_ids`. wasi-nn wants each as row-major
//! little-endian bytes. Outputs come back the same way, as bytes plus the
//! dimensions the back-end claims; [`f32_values`] checks the two agree before
//! anything reads them.

/// One encoded text (or text pair), unpadded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment ids: 0 for the first text, 1 for the second of a pair.
    pub type_ids: Vec<u32>,
    /// 1 for every token (unpadded encodings have no masked positions).
    pub attention_mask: Vec<u32>,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens at all (never the case with special
    /// tokens added).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The values padded positions get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PadIds {
    /// `input_ids` value at padded positions.
    pub id: u32,
    /// `token_type_ids` value at padded positions.
    pub type_id: u32,
}

/// Split item indices into batches of at most `batch_size`, grouping items
/// of similar length so that padding to the longest of a batch wastes little.
///
/// Items are ordered by length (stable: equal lengths keep their order) and
/// cut into consecutive chunks. Every index in `0..lengths.len()` appears in
/// exactly one batch; callers scatter results back by index. A `batch_size`
/// of 0 is treated as 1.
pub fn plan_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// A padded `[size, seq_len]` batch, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Rows (texts or pairs).
    pub size: usize,
    /// Columns: the longest encoding of the batch.
    pub seq_len: usize,
    /// `input_ids`, padded with [`PadIds::id`].
    pub input_ids: Vec<i64>,
    /// `attention_mask`: 1 for tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// `token_type_ids`, padded with [`PadIds::type_id`].
    pub token_type_ids: Vec<i64>,
}

impl Batch {
    /// Pad `items` on the right to the longest of them.
    pub fn pad(items: &[&Encoded], pad: PadIds) -> Self {
        let size = items.len();
        let seq_len = items.iter().map(|e| e.len()).max().unwrap_or(0);
        let cells = size * seq_len;
        let mut batch = Self {
            size,
            seq_len,
            input_ids: Vec::with_capacity(cells),
            attention_mask: Vec::with_capacity(cells),
            token_type_ids: Vec::with_capacity(cells),
        };
        for e in items {
            for j in 0..seq_len {
                // Unpadded encodings have a mask of ones and one type id per
                // token; a shorter `attention_mask`/`type_ids` reads as that.
                let (id, mask, type_id) = match e.ids.get(j) {
                    Some(&id) => (
                        id,
                        e.attention_mask.get(j).copied().unwrap_or(1),
                        e.type_ids.get(j).copied().unwrap_or(0),
                    ),
                    None => (pad.id, 0, pad.type_id),
                };
                batch.input_ids.push(i64::from(id));
                batch.attention_mask.push(i64::from(mask));
                batch.token_type_ids.push(i64::from(type_id));
            }
        }
        batch
    }

    /// The tensor dimensions, `[size, seq_len]`.
    ///
    /// # Panics
    ///
    /// If either does not fit in a `u32` (callers bound batch size and token
    /// counts far below that).
    pub fn dims(&self) -> Vec<u32> {
        let to_u32 = |x: usize| u32::try_from(x).expect("tensor dimension overflows u32");
        vec![to_u32(self.size), to_u32(self.seq_len)]
    }
}

/// `int64` values as wasi-nn tensor data: little-endian, row-major.
pub fn i64_le_bytes(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Product of `dims` as an element count, `None` on overflow.
pub fn element_count(dims: &[u32]) -> Option<usize> {
    dims.iter()
        .try_fold(1_usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
}

/// Decode little-endian `f32` tensor data after checking that `data` holds
/// exactly the elements `dims` claims.
pub fn f32_values(dims: &[u32], data: &[u8]) -> Result<Vec<f32>, String> {
    let count = element_count(dims).ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    if count.checked_mul(4) != Some(data.len()) {
        return Err(format!(
            "dimensions {dims:?} claim {count} f32 values but the data has {} bytes",
            data.len()
        ));
    }
    Ok(data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(ids: &[u32], type_ids: &[u32]) -> Encoded {
        Encoded {
            ids: ids.to_vec(),
            type_ids: type_ids.to_vec(),
            attention_mask: vec![1; ids.len()],
        }
    }

    #[test]
    fn plans_length_sorted_batches_covering_every_index() {
        let lengths = [5, 2, 9, 2, 7, 1];
        let plan = plan_batches(&lengths, 4);
        assert_eq!(plan, vec![vec![5, 1, 3, 0], vec![4, 2]]);
        let plan = plan_batches(&lengths, 0);
        assert_eq!(plan.len(), 6);
        assert!(plan_batches(&[], 8).is_empty());
        let mut all: Vec<usize> = plan_batches(&lengths, 3).concat();
        all.sort();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn pads_to_longest_with_pad_ids() {
        let a = enc(&[101, 7, 8, 102], &[0, 0, 0, 0]);
        let b = enc(&[101, 102], &[0, 0]);
        let c = enc(&[101, 5, 102, 6, 102], &[0, 0, 0, 1, 1]);
        let batch = Batch::pad(&[&a, &b, &c], PadIds { id: 9, type_id: 3 });
        assert_eq!((batch.size, batch.seq_len), (3, 5));
        assert_eq!(batch.dims(), vec![3, 5]);
        #[rustfmt::skip]
        assert_eq!(batch.input_ids, vec![
            101, 7, 8, 102, 9,
            101, 102, 9, 9, 9,
            101, 5, 102, 6, 102,
        ]);
        #[rustfmt::skip]
        assert_eq!(batch.attention_mask, vec![
            1, 1, 1, 1, 0,
            1, 1, 0, 0, 0,
            1, 1, 1, 1, 1,
        ]);
        #[rustfmt::skip]
        assert_eq!(batch.token_type_ids, vec![
            0, 0, 0, 0, 3,
            0, 0, 3, 3, 3,
            0, 0, 0, 1, 1,
        ]);
    }

    #[test]
    fn empty_batch() {
        let batch = Batch::pad(&[], PadIds::default());
        assert_eq!(batch.dims(), vec![0, 0]);
        assert!(batch.input_ids.is_empty());
    }

    #[test]
    fn i64_bytes_are_little_endian() {
        assert_eq!(
            i64_le_bytes(&[1, -1, 258]),
            [
                vec![1, 0, 0, 0, 0, 0, 0, 0],
                vec![0xff; 8],
                vec![2, 1, 0, 0, 0, 0, 0, 0]
            ]
            .concat()
        );
    }

    #[test]
    fn f32_values_checks_length_against_dims() {
        let data: Vec<u8> = [1.5_f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(f32_values(&[2], &data).unwrap(), vec![1.5, -2.0]);
        assert_eq!(f32_values(&[1, 2], &data).unwrap(), vec![1.5, -2.0]);
        assert!(f32_values(&[3], &data).is_err());
        assert!(f32_values(&[1], &data).is_err());
        assert!(f32_values(&[2], &data[..7]).is_err());
        assert!(f32_values(&[u32::MAX, u32::MAX, u32::MAX], &data).is_err());
        assert_eq!(f32_values(&[0, 384], &[]).unwrap(), Vec::<f32>::new());
        assert_eq!(element_count(&[]), Some(1));
    }
}
