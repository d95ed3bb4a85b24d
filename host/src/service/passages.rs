//! From documents to the passages a component scores: truncation to a
//! token budget (from the start or the end) and chunking of long documents,
//! a document then scoring as its best chunk (Cohere's `max_tokens_per_doc`
//! and `max_chunks_per_doc`, TEI's `truncation_direction`).
//!
//! The host does not hold the component's tokenizer (the component carries
//! its own), so it counts *pre-tokens*: runs of letters and digits, and
//! each other non-space character alone — the split BERT-style tokenizers
//! make before word pieces. A word piece tokenizer makes at least as many
//! tokens, about 1.2–1.3 per pre-token on English prose, so a cut to N
//! pre-tokens never keeps less text than a cut to N tokens would, and the
//! component still truncates what is left to its own `max_tokens`. Chunks
//! are sized to fit a component's window: `max_tokens × 3 / 4` pre-tokens.
//! Cuts fall on pre-token boundaries and keep the original text.

/// Which end of a document a cut keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Keep {
    /// The beginning (cut the end off).
    #[default]
    Start,
    /// The end (cut the beginning off).
    End,
}

/// How documents become passages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shaping {
    /// Keep at most this many pre-tokens of each document (of each chunk
    /// when chunking).
    pub max_tokens: Option<usize>,
    /// Which end a cut keeps.
    pub keep: Keep,
    /// Split each document into up to this many chunks; the document scores
    /// as its best one. `None`: one passage per document.
    pub max_chunks: Option<usize>,
    /// Refuse a document with more pre-tokens than the component reads,
    /// instead of letting it truncate (TEI's `truncate: false`). Pre-tokens
    /// are a lower bound, so a refused document is surely too long; one a
    /// little over the window in word pieces passes and is truncated.
    pub refuse_longer: bool,
}

/// The byte spans of `text`'s pre-tokens.
fn pre_tokens(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut word: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            word.get_or_insert(i);
            continue;
        }
        if let Some(start) = word.take() {
            spans.push((start, i));
        }
        if !c.is_whitespace() {
            spans.push((i, i + c.len_utf8()));
        }
    }
    if let Some(start) = word {
        spans.push((start, text.len()));
    }
    spans
}

/// How many pre-tokens `text` has (a lower bound of its word pieces).
pub fn count_pre_tokens(text: &str) -> usize {
    pre_tokens(text).len()
}

/// The chunk size, in pre-tokens, for a component reading `max_tokens`
/// tokens (0: not token based, so no chunking by length).
pub fn chunk_tokens(model_max_tokens: u32) -> Option<usize> {
    (model_max_tokens > 0).then(|| (model_max_tokens as usize * 3 / 4).max(1))
}

/// The first document longer than `max_tokens` pre-tokens, if any, with
/// its count.
pub fn first_longer(documents: &[String], max_tokens: usize) -> Option<(usize, usize)> {
    documents
        .iter()
        .map(|d| count_pre_tokens(d))
        .enumerate()
        .find(|&(_, n)| n > max_tokens)
}

/// The passages of `documents` under `shaping`, and for each passage the
/// document it came from; `None` when the documents are the passages as
/// they are (no copy). `window` is [`chunk_tokens`] of the component.
pub fn shape(
    documents: &[String],
    shaping: &Shaping,
    window: Option<usize>,
) -> Option<(Vec<String>, Vec<usize>)> {
    if shaping.max_tokens.is_none() && shaping.max_chunks.is_none() && shaping.keep == Keep::Start {
        return None;
    }
    let mut passages = Vec::with_capacity(documents.len());
    let mut owners = Vec::with_capacity(documents.len());
    for (d, text) in documents.iter().enumerate() {
        let spans = pre_tokens(text);
        let cut = |from: usize, to: usize| -> String {
            if from >= to {
                return String::new();
            }
            text[spans[from].0..spans[to - 1].1].to_string()
        };
        match shaping.max_chunks {
            Some(max_chunks) => {
                let size = shaping.max_tokens.or(window).unwrap_or(usize::MAX).max(1);
                let n = spans.len().div_ceil(size).clamp(1, max_chunks.max(1));
                for c in 0..n {
                    let from = c * size;
                    passages.push(cut(from, (from + size).min(spans.len())));
                    owners.push(d);
                }
            }
            None => {
                // Keeping the end needs a cut to the window even without a
                // budget: the component would keep the start.
                let keep = match (shaping.max_tokens, shaping.keep) {
                    (Some(n), _) => n,
                    (None, Keep::End) => window.unwrap_or(usize::MAX),
                    (None, Keep::Start) => usize::MAX,
                };
                let passage = if spans.len() <= keep {
                    text.clone()
                } else {
                    match shaping.keep {
                        Keep::Start => cut(0, keep),
                        Keep::End => cut(spans.len() - keep, spans.len()),
                    }
                };
                passages.push(passage);
                owners.push(d);
            }
        }
    }
    Some((passages, owners))
}

/// Per-document scores from per-passage ones: each document's best
/// passage, and how many passages it had.
pub fn best_per_document(
    scores: &[f32],
    owners: &[usize],
    documents: usize,
) -> (Vec<f32>, Vec<usize>) {
    let mut best = vec![f32::NEG_INFINITY; documents];
    let mut counts = vec![0; documents];
    for (&s, &d) in scores.iter().zip(owners) {
        if counts[d] == 0 || s > best[d] {
            best[d] = s;
        }
        counts[d] += 1;
    }
    (best, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokens_split_words_and_punctuation() {
        assert_eq!(count_pre_tokens("Hello, world! état-civil 42"), 8);
        assert_eq!(count_pre_tokens("   "), 0);
    }

    #[test]
    fn truncation_keeps_either_end_with_original_text() {
        let docs = vec!["one two, three four".to_string(), "short".to_string()];
        let start = Shaping {
            max_tokens: Some(3),
            ..Shaping::default()
        };
        assert_eq!(
            shape(&docs, &start, None).unwrap().0,
            vec!["one two,", "short"]
        );
        let end = Shaping {
            keep: Keep::End,
            ..start
        };
        assert_eq!(
            shape(&docs, &end, None).unwrap().0,
            vec![", three four", "short"]
        );
        let window_end = Shaping {
            keep: Keep::End,
            ..Shaping::default()
        };
        assert_eq!(
            shape(&docs, &window_end, Some(2)).unwrap().0,
            vec!["three four", "short"]
        );
    }

    #[test]
    fn chunks_cover_the_document_up_to_the_limit() {
        let docs = vec!["a b c d e f g".to_string(), "x".to_string()];
        let s = Shaping {
            max_chunks: Some(3),
            ..Shaping::default()
        };
        let (p, owners) = shape(&docs, &s, Some(2)).unwrap();
        assert_eq!(p, vec!["a b", "c d", "e f", "x"]);
        assert_eq!(owners, vec![0, 0, 0, 1]);
        let (best, counts) = best_per_document(&[0.1, 0.9, 0.3, 0.5], &owners, 2);
        assert_eq!(best, vec![0.9, 0.5]);
        assert_eq!(counts, vec![3, 1]);
    }

    #[test]
    fn the_first_document_over_the_window_is_found() {
        let docs = vec!["a b".to_string(), "a b c d".to_string()];
        assert_eq!(first_longer(&docs, 3), Some((1, 4)));
        assert_eq!(first_longer(&docs, 4), None);
    }

    #[test]
    fn no_shaping_is_the_identity() {
        let docs = vec!["a b".to_string()];
        assert!(shape(&docs, &Shaping::default(), Some(1)).is_none());
    }
}
