//! Tokenizer set-up and encoding.
//!
//! A Hugging Face `tokenizer.json` often has the truncation and padding of
//! some training run baked in (all-MiniLM-L6-v2's pads every input to a fixed
//! 128 tokens and truncates at 128). Those are replaced here by what the
//! plugin was configured with: truncation at `max-tokens` with the
//! `longest_first` strategy (what `transformers` and sentence-transformers
//! do), and no padding at all: padding is done per batch by
//! [`crate::tensors::Batch::pad`], after the plugin has sorted texts by
//! length, so that short texts are never padded to a long neighbour.
//!
//! Parsing a `tokenizer.json` takes tens of milliseconds in WebAssembly, so a
//! plugin builds one [`TextEncoder`] in `configure` and keeps it.

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::tensors::{Encoded, PadIds};

/// How many bytes of a text are read per token of `max-tokens`.
///
/// Text past `max_tokens * CLIP_BYTES_PER_TOKEN` bytes can never reach the
/// model (truncation would drop it), so it is cut before tokenizing, which
/// keeps a megabyte-long passage from costing a megabyte of tokenizer work.
/// WordPiece and byte-level BPE produce at most one token per byte except for
/// words longer than 100 characters (one `[UNK]` each); 64 bytes per token
/// leaves room for those too in any realistic text.
pub const CLIP_BYTES_PER_TOKEN: usize = 64;

/// The longest prefix of `text` that is at most `max_bytes` long and ends on
/// a character boundary.
pub fn clip(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A parsed tokenizer with the plugin's truncation and no padding.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    pad: PadIds,
    max_tokens: usize,
}

impl TextEncoder {
    /// Parse the text of a `tokenizer.json` and set truncation to
    /// `max_tokens` (special tokens included, `longest_first`, from the
    /// right); padding is removed.
    ///
    /// The padding ids for [`crate::tensors::Batch::pad`] are taken from the
    /// file's own padding section when it has one, else from the `[PAD]`
    /// token, else 0 (ids at masked positions do not affect the outputs at
    /// unmasked ones, but a model's own pad id is the faithful choice).
    pub fn from_json(json: &str, max_tokens: usize) -> Result<Self, String> {
        // Encoding runs on the calling thread: a component has no threads,
        // and tokenizers would otherwise consult rayon (and the environment).
        tokenizers::utils::parallelism::set_parallelism(false);
        let mut tokenizer = Tokenizer::from_bytes(json.as_bytes())
            .map_err(|e| format!("cannot parse tokenizer.json: {e}"))?;
        let pad = match tokenizer.get_padding() {
            Some(p) => PadIds {
                id: p.pad_id,
                type_id: p.pad_type_id,
            },
            None => PadIds {
                id: tokenizer.token_to_id("[PAD]").unwrap_or(0),
                type_id: 0,
            },
        };
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| format!("cannot set truncation to {max_tokens} tokens: {e}"))?;
        Ok(Self {
            tokenizer,
            pad,
            max_tokens,
        })
    }

    /// The ids to pad batches with.
    pub fn pad_ids(&self) -> PadIds {
        self.pad
    }

    /// The truncation length, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn clip<'t>(&self, text: &'t str) -> &'t str {
        clip(text, self.max_tokens.saturating_mul(CLIP_BYTES_PER_TOKEN))
    }

    /// Encode each text on its own (`[CLS] text [SEP]` for BERT), with
    /// special tokens, truncated to `max_tokens`.
    ///
    /// An empty or whitespace-only text encodes to the special tokens alone.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>, String> {
        texts
            .iter()
            .map(|text| {
                self.tokenizer
                    .encode_fast(self.clip(text), true)
                    .map(|e| Encoded::from(&e))
                    .map_err(|e| format!("tokenizer failed: {e}"))
            })
            .collect()
    }

    /// Encode `(first, second)` for each `second` as a pair (`[CLS] first
    /// [SEP] second [SEP]` with token type ids 0 then 1, for BERT), truncated
    /// together to `max_tokens` with `longest_first`.
    pub fn encode_pairs(&self, first: &str, seconds: &[&str]) -> Result<Vec<Encoded>, String> {
        let first = self.clip(first);
        seconds
            .iter()
            .map(|second| {
                self.tokenizer
                    .encode_fast((first, self.clip(second)), true)
                    .map(|e| Encoded::from(&e))
                    .map_err(|e| format!("tokenizer failed: {e}"))
            })
            .collect()
    }
}

impl From<&tokenizers::Encoding> for Encoded {
    fn from(e: &tokenizers::Encoding) -> Self {
        Self {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            attention_mask: e.get_attention_mask().to_vec(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny BERT-style tokenizer.json (uncased WordPiece, `[CLS] A [SEP]`
    /// and `[CLS] A [SEP] B [SEP]` templates, fixed padding to 16 and
    /// truncation at 16 baked in, like the real all-MiniLM-L6-v2 file).
    pub(crate) const TINY_TOKENIZER: &str = r###"{
      "version": "1.0",
      "truncation": {"max_length": 16, "strategy": "LongestFirst", "stride": 0},
      "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null,
                  "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
      "added_tokens": [
        {"id": 0, "special": true, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
        {"id": 1, "special": true, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
        {"id": 2, "special": true, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
        {"id": 3, "special": true, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false}
      ],
      "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                     "strip_accents": null, "lowercase": true},
      "pre_tokenizer": {"type": "BertPreTokenizer"},
      "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
        "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                           "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
      "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
      "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100,
                "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "cat": 5, "sat": 6,
                          "on": 7, "mat": 8, "dog": 9, "##s": 10, ".": 11, "a": 12}}
    }"###;

    #[test]
    fn single_texts_are_truncated_and_unpadded() {
        let enc = TextEncoder::from_json(TINY_TOKENIZER, 6).unwrap();
        assert_eq!(enc.pad_ids(), PadIds { id: 0, type_id: 0 });
        let out = enc
            .encode(&["The cat sat.", "cats", "the cat sat on the mat", ""])
            .unwrap();
        assert_eq!(out[0].ids, vec![2, 4, 5, 6, 11, 3]);
        assert_eq!(out[0].attention_mask, vec![1; 6]);
        assert_eq!(out[1].ids, vec![2, 5, 10, 3]);
        // Truncated to 6 tokens, special tokens included.
        assert_eq!(out[2].ids, vec![2, 4, 5, 6, 7, 3]);
        // Empty text: the special tokens alone, not padded to 16.
        assert_eq!(out[3].ids, vec![2, 3]);
        assert_eq!(out[3].type_ids, vec![0, 0]);
        assert_eq!(enc.encode(&["  \t\n "]).unwrap()[0].ids, vec![2, 3]);
        assert_eq!(enc.encode(&["zebra"]).unwrap()[0].ids, vec![2, 1, 3]);
    }

    #[test]
    fn pairs_use_type_ids_and_longest_first() {
        let enc = TextEncoder::from_json(TINY_TOKENIZER, 9).unwrap();
        let out = enc
            .encode_pairs("the cat", &["a dog sat on the mat", ""])
            .unwrap();
        // 9 = 3 specials + 2 (query) + 4 (passage truncated from 6).
        assert_eq!(out[0].ids, vec![2, 4, 5, 3, 12, 9, 6, 7, 3]);
        assert_eq!(out[0].type_ids, vec![0, 0, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(out[1].ids, vec![2, 4, 5, 3, 3]);
        assert_eq!(out[1].type_ids, vec![0, 0, 0, 0, 1]);
        // longest_first trims the longer side first, then both alternately.
        let out = enc
            .encode_pairs("the cat sat on the mat", &["a dog sat on the mat"])
            .unwrap();
        assert_eq!(out[0].ids.len(), 9);
        assert_eq!(out[0].type_ids.iter().filter(|&&t| t == 1).count(), 4);
    }

    #[test]
    fn pad_ids_fall_back_to_pad_token() {
        let json = TINY_TOKENIZER.replace(
            r#""padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null,
                  "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},"#,
            r#""padding": null,"#,
        );
        assert!(json.contains(r#""padding": null"#));
        let json = json.replace(r#""[PAD]": 0, "[UNK]": 1"#, r#""[PAD]": 13, "[UNK]": 1"#);
        let enc = TextEncoder::from_json(&json, 8).unwrap();
        assert_eq!(enc.pad_ids().id, 13);
    }

    #[test]
    fn rejects_bad_json() {
        assert!(TextEncoder::from_json("{", 8).is_err());
        assert!(TextEncoder::from_json("{}", 8).is_err());
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn long_texts_are_clipped_without_changing_the_result() {
        let enc = TextEncoder::from_json(TINY_TOKENIZER, 8).unwrap();
        let long = "the cat sat on the mat. ".repeat(10_000);
        let out = enc.encode(&[&long]).unwrap();
        assert_eq!(out[0].ids, vec![2, 4, 5, 6, 7, 4, 8, 3]);
        assert!(long.len() > 8 * CLIP_BYTES_PER_TOKEN);
    }

    /// The real all-MiniLM-L6-v2 tokenizer, when one is available locally:
    /// set `NBOOST_TOKENIZER_JSON` to its path (skipped otherwise).
    #[test]
    fn real_minilm_tokenizer_if_available() {
        let Ok(path) = std::env::var("NBOOST_TOKENIZER_JSON") else {
            return;
        };
        let json = std::fs::read_to_string(path).unwrap();
        let enc = TextEncoder::from_json(&json, 256).unwrap();
        let out = enc
            .encode(&["", "   ", "Hello, World!", &"word ".repeat(1000)])
            .unwrap();
        assert_eq!(out[0].ids, vec![101, 102]);
        assert_eq!(out[1].ids, vec![101, 102]);
        assert_eq!(out[2].ids, vec![101, 7592, 1010, 2088, 999, 102]);
        assert_eq!(out[3].ids.len(), 256);
        let pair = enc.encode_pairs("q", &["p"]).unwrap();
        assert_eq!(pair[0].type_ids, vec![0, 0, 0, 1, 1]);
    }
}
