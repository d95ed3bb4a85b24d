//! `nboost-reranker-minilm`: bi-encoder reranking with
//! [sentence-transformers/all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)
//! (or any BERT-style mean-pooling bi-encoder) through wasi-nn.
//!
//! World `nn-reranker-plugin`. The query and each passage are embedded
//! separately, exactly as sentence-transformers does it: the tokenizer
//! (truncation at `max-tokens`, `longest_first`), the transformer through the
//! host's wasi-nn back-end, then mean pooling over the attention mask and L2
//! normalisation. A passage's score is the cosine similarity of its embedding
//! with the query's, in `[-1, 1]`.
//!
//! # Settings
//!
//! | key          | default            | meaning                                                   |
//! |--------------|--------------------|-----------------------------------------------------------|
//! | `graph`      | `all-minilm-l6-v2` | wasi-nn graph name passed to `load-by-name`               |
//! | `tokenizer`  | required           | the full text of the model's `tokenizer.json`             |
//! | `max-tokens` | `256`              | tokens per text, `[CLS]`/`[SEP]` included, in `[8, 512]`  |
//! | `batch-size` | `16`               | texts per `compute` call, in `[1, 256]` (16 measured fastest on CPU) |
//! | `sort-by-length` | `true`         | batch texts of similar length together (less padding); `false` only to measure what that saves |
//!
//! `model-info` reports `preferred-batch-size` = `batch-size - 1` (at least
//! 1): that many passages plus the query make exactly one `compute`.
//!
//! # The graph
//!
//! Inputs (all `I64`, `[batch, seq]`): `input_ids`, `attention_mask`,
//! `token_type_ids`. Output: `last_hidden_state`, `FP32`
//! `[batch, seq, hidden]` (hidden is 384 for all-MiniLM-L6-v2; any size up to
//! [`embed::MAX_HIDDEN`] is accepted, as long as it is the same for every
//! batch). The output's dimensions and data length are checked before use.
//! If no output has that name but the back-end returned exactly one output,
//! that one is used (some back-ends name outputs by position).
//! This is the standard ONNX export of the model (Optimum /
//! `onnx/model.onnx` in the model repository).
//!
//! # Batching
//!
//! One `score` call tokenizes the query and all passages, sorts them by token
//! count, and runs them through the graph `batch-size` at a time, each batch
//! padded only to its own longest text; results are put back in passage
//! order. Sorting keeps padding (wasted compute) small when passage lengths
//! vary. The query rides along in one of the batches rather than costing a
//! `compute` of its own. An empty or whitespace-only text encodes to
//! `[CLS] [SEP]`, and its embedding is the mean of those two positions, as
//! with PyTorch.
//!
//! # Errors
//!
//! * missing/unknown/malformed settings, unparsable `tokenizer.json`:
//!   `invalid-config`;
//! * `load-by-name`, `init-execution-context` or `compute` failing, or an
//!   output that is missing, not `FP32`, mis-shaped or non-finite: `backend`,
//!   with the wasi-nn error code and the back-end's message;
//! * text the tokenizer rejects: `invalid-input`.

pub mod embed;

use std::cell::RefCell;

use nboost_nn_common::nn::Model;
use nboost_nn_common::settings::Settings;
use nboost_nn_common::tensors::Batch;
use nboost_nn_common::text::TextEncoder;

nboost_nn_common::plugin_bindings!();

use bindings::exports::nboost::reranker::reranker::{Error, Guest, ModelInfo};

/// Settings keys this plugin accepts.
pub const SETTINGS: &[&str] = &[
    "graph",
    "tokenizer",
    "max-tokens",
    "batch-size",
    "sort-by-length",
];
/// Default for `graph`.
pub const DEFAULT_GRAPH: &str = "all-minilm-l6-v2";
/// Name of the graph output holding the token embeddings.
pub const OUTPUT: &str = "last_hidden_state";

/// The typed settings, before anything is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config<'a> {
    /// wasi-nn graph name.
    pub graph: &'a str,
    /// `tokenizer.json` text.
    pub tokenizer: &'a str,
    /// Truncation length, special tokens included.
    pub max_tokens: u32,
    /// Texts per `compute`.
    pub batch_size: u32,
    /// Batch texts of similar length together.
    pub sort_by_length: bool,
}

impl<'a> Config<'a> {
    /// Parse and check `settings` (see the crate docs for the keys).
    pub fn from_settings(settings: &'a [(String, String)]) -> Result<Self, String> {
        let s = Settings::new(settings, SETTINGS)?;
        Ok(Self {
            graph: s.string_or("graph", DEFAULT_GRAPH)?,
            tokenizer: s.required("tokenizer")?,
            max_tokens: s.integer_or("max-tokens", 256, 8, 512)?,
            batch_size: s.integer_or("batch-size", 16, 1, 256)?,
            sort_by_length: s.bool_or("sort-by-length", true)?,
        })
    }
}

/// A configured instance.
struct State {
    encoder: TextEncoder,
    model: Model,
    batch_size: usize,
    sort_by_length: bool,
}

thread_local! {
    /// `None` until `configure` succeeds.
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Run the model on one batch and return its `last_hidden_state`.
fn run(model: &Model, batch: &Batch) -> Result<embed::HiddenState, embed::Failure> {
    let outputs = model
        .compute_bert(batch)
        .map_err(|e| embed::Failure::Backend(e.to_string()))?;
    outputs.f32(OUTPUT).map_err(embed::Failure::Backend)
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
                sort_by_length: config.sort_by_length,
            })
        });
        Ok(ModelInfo {
            name: "all-MiniLM-L6-v2".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: format!(
                "bi-encoder: cosine of mean-pooled embeddings (graph {:?})",
                config.graph
            ),
            // The query rides in the batches too: this many passages plus
            // the query fill exactly one `compute`.
            preferred_batch_size: config.batch_size.saturating_sub(1).max(1),
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
            let texts: Vec<&str> = std::iter::once(query.as_str())
                .chain(passages.iter().map(String::as_str))
                .collect();
            let encodings = state.encoder.encode(&texts).map_err(Error::InvalidInput)?;
            embed::score(
                &encodings,
                state.encoder.pad_ids(),
                state.batch_size,
                state.sort_by_length,
                |batch| run(&state.model, batch),
            )
            .map_err(|embed::Failure::Backend(e)| Error::Backend(e))
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
        let s = settings(&[("tokenizer", "{}")]);
        let c = Config::from_settings(&s).unwrap();
        assert_eq!(
            c,
            Config {
                graph: DEFAULT_GRAPH,
                tokenizer: "{}",
                max_tokens: 256,
                batch_size: 16,
                sort_by_length: true,
            }
        );
        let s = settings(&[
            ("graph", "g"),
            ("tokenizer", "{}"),
            ("max-tokens", "128"),
            ("batch-size", "8"),
        ]);
        let c = Config::from_settings(&s).unwrap();
        assert_eq!((c.graph, c.max_tokens, c.batch_size), ("g", 128, 8));
    }

    #[test]
    fn rejects_bad_settings() {
        for bad in [
            settings(&[]),
            settings(&[("tokenizer", "")]),
            settings(&[("tokenizer", "{}"), ("max-tokens", "1024")]),
            settings(&[("tokenizer", "{}"), ("batch-size", "0")]),
            settings(&[("tokenizer", "{}"), ("graph", "")]),
            settings(&[("tokenizer", "{}"), ("output", "x")]),
        ] {
            assert!(Config::from_settings(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn configure_reports_bad_tokenizer_as_invalid_config() {
        let r = Plugin::configure(settings(&[("tokenizer", "not json")]));
        assert!(matches!(r, Err(Error::InvalidConfig(_))), "{r:?}");
        let r = Plugin::score("q".into(), vec!["p".into()]);
        assert!(matches!(r, Err(Error::InvalidConfig(_))), "{r:?}");
    }
}
