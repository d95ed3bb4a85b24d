//! `nboost-reranker-cross-encoder`: reranking with any BERT-style
//! cross-encoder (e.g. `cross-encoder/ms-marco-MiniLM-L-6-v2`) through
//! wasi-nn.
//!
//! World `nn-reranker-plugin`. Each `(query, passage)` pair is encoded
//! together, `[CLS] query [SEP] passage [SEP]` with token type ids 0 for the
//! query part and 1 for the passage part, truncated to `max-tokens` with
//! `longest_first` (the longer side loses tokens first), exactly as
//! `sentence_transformers.CrossEncoder` does. The model reads the pair and
//! returns a relevance logit, which is the score.
//!
//! # Settings
//!
//! | key          | default  | meaning                                                          |
//! |--------------|----------|------------------------------------------------------------------|
//! | `graph`      | required | wasi-nn graph name passed to `load-by-name`                      |
//! | `tokenizer`  | required | the full text of the model's `tokenizer.json`                    |
//! | `max-tokens` | `256`    | tokens per pair, special tokens included, in `[8, 512]`          |
//! | `batch-size` | `16`     | pairs per `compute` call, in `[1, 256]`                          |
//! | `output`     | `logits` | name of the graph output holding the logits                      |
//!
//! # The graph
//!
//! Inputs (all `I64`, `[batch, seq]`): `input_ids`, `attention_mask`,
//! `token_type_ids`. Output (`output`): `FP32`, shaped `[batch]` or
//! `[batch, 1]` (score = the logit), or `[batch, 2]` for a two-class
//! (not relevant, relevant) head, where the score is `logit[1] - logit[0]`:
//! the log-odds of "relevant", which orders passages exactly as the softmax
//! probability of the relevant class does. Other shapes, a data length that
//! does not match the dimensions, or non-finite logits are back-end errors.
//! If no output is called `output` but the back-end returned exactly one
//! output, that one is used (some back-ends name outputs by position).
//!
//! # Batching
//!
//! Pairs are sorted by token count and run `batch-size` at a time, each batch
//! padded only to its own longest pair; scores are put back in passage order.
//!
//! # Errors
//!
//! * missing/unknown/malformed settings, unparsable `tokenizer.json`:
//!   `invalid-config`;
//! * `load-by-name`, `init-execution-context` or `compute` failing, or a
//!   malformed output: `backend`, with the wasi-nn error code and message;
//! * text the tokenizer rejects: `invalid-input`.

pub mod pairs;

use std::cell::RefCell;

use nboost_nn_common::nn::Model;
use nboost_nn_common::settings::Settings;
use nboost_nn_common::tensors::Batch;
use nboost_nn_common::text::TextEncoder;

nboost_nn_common::plugin_bindings!();

use bindings::exports::nboost::reranker::reranker::{Error, Guest, ModelInfo};

/// Settings keys this plugin accepts.
pub const SETTINGS: &[&str] = &["graph", "tokenizer", "max-tokens", "batch-size", "output"];

/// The typed settings, before anything is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config<'a> {
    /// wasi-nn graph name.
    pub graph: &'a str,
    /// `tokenizer.json` text.
    pub tokenizer: &'a str,
    /// Truncation length of a pair, special tokens included.
    pub max_tokens: u32,
    /// Pairs per `compute`.
    pub batch_size: u32,
    /// Name of the logits output.
    pub output: &'a str,
}

impl<'a> Config<'a> {
    /// Parse and check `settings` (see the crate docs for the keys).
    pub fn from_settings(settings: &'a [(String, String)]) -> Result<Self, String> {
        let s = Settings::new(settings, SETTINGS)?;
        Ok(Self {
            graph: s.required("graph")?,
            tokenizer: s.required("tokenizer")?,
            max_tokens: s.integer_or("max-tokens", 256, 8, 512)?,
            batch_size: s.integer_or("batch-size", 16, 1, 256)?,
            output: s.string_or("output", "logits")?,
        })
    }
}

/// A configured instance.
struct State {
    encoder: TextEncoder,
    model: Model,
    batch_size: usize,
    output: String,
}

thread_local! {
    /// `None` until `configure` succeeds.
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

impl State {
    /// Run the model on one batch of pairs and return its logits.
    fn run(&self, batch: &Batch) -> Result<pairs::Logits, String> {
        let outputs = self.model.compute_bert(batch).map_err(|e| e.to_string())?;
        outputs.f32(&self.output)
    }
}

/// The component: implements the exported `reranker` interface.
pub struct Plugin;

impl Guest for Plugin {
    fn configure(settings: Vec<(String, String)>) -> Result<ModelInfo, Error> {
        STATE.with_borrow_mut(|s| *s = None);
        let config = Config::from_settings(&settings).map_err(Error::InvalidConfig)?;
        let encoder = TextEncoder::from_json(config.tokenizer, config.max_tokens as usize)
            .map_err(|e| Error::InvalidConfig(format!("setting `tokenizer`: {e}")))?;
        let model = Model::load(config.graph).map_err(|e| Error::Backend(e.to_string()))?;
        STATE.with_borrow_mut(|s| {
            *s = Some(State {
                encoder,
                model,
                batch_size: config.batch_size as usize,
                output: config.output.to_owned(),
            })
        });
        Ok(ModelInfo {
            name: config.graph.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "cross-encoder: relevance logit of each (query, passage) pair".to_owned(),
            preferred_batch_size: config.batch_size,
            max_tokens: config.max_tokens,
        })
    }

    fn score(query: String, passages: Vec<String>) -> Result<Vec<f32>, Error> {
        STATE.with_borrow(|state| {
            let state = state
                .as_ref()
                .ok_or_else(|| Error::InvalidConfig("`configure` has not succeeded".to_owned()))?;
            if passages.is_empty() {
                return Ok(Vec::new());
            }
            let texts: Vec<&str> = passages.iter().map(String::as_str).collect();
            let encodings = state
                .encoder
                .encode_pairs(&query, &texts)
                .map_err(Error::InvalidInput)?;
            pairs::score(&encodings, state.encoder.pad_ids(), state.batch_size, |b| {
                state.run(b)
            })
            .map_err(Error::Backend)
        })
    }
}

// Register `Plugin` as the component's exports (wasm32 only: natively this
// crate exists for `cargo test`).
#[cfg(target_arch = "wasm32")]
bindings::export!(Plugin with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    use nboost_nn_common::settings::pairs as settings;

    #[test]
    fn parses_settings_with_defaults() {
        let s = settings(&[("graph", "ce"), ("tokenizer", "{}")]);
        let c = Config::from_settings(&s).unwrap();
        assert_eq!(
            c,
            Config {
                graph: "ce",
                tokenizer: "{}",
                max_tokens: 256,
                batch_size: 16,
                output: "logits"
            }
        );
        let s = settings(&[
            ("graph", "ce"),
            ("tokenizer", "{}"),
            ("max-tokens", "512"),
            ("batch-size", "4"),
            ("output", "scores"),
        ]);
        let c = Config::from_settings(&s).unwrap();
        assert_eq!((c.max_tokens, c.batch_size, c.output), (512, 4, "scores"));
    }

    #[test]
    fn rejects_bad_settings() {
        for bad in [
            settings(&[("tokenizer", "{}")]),
            settings(&[("graph", "ce")]),
            settings(&[("graph", "ce"), ("tokenizer", "{}"), ("max-tokens", "513")]),
            settings(&[("graph", "ce"), ("tokenizer", "{}"), ("max-tokens", "x")]),
            settings(&[("graph", "ce"), ("tokenizer", "{}"), ("output", "")]),
            settings(&[("graph", "ce"), ("tokenizer", "{}"), ("k1", "1")]),
        ] {
            assert!(Config::from_settings(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn configure_reports_bad_tokenizer_as_invalid_config() {
        let r = Plugin::configure(settings(&[("graph", "ce"), ("tokenizer", "[]")]));
        assert!(matches!(r, Err(Error::InvalidConfig(_))), "{r:?}");
        let r = Plugin::score("q".into(), vec!["p".into()]);
        assert!(matches!(r, Err(Error::InvalidConfig(_))), "{r:?}");
    }
}
