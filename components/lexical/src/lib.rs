//! `nboost-reranker-lexical`: BM25 reranking with no model at all.
//!
//! This is the reference plugin: the one to copy when writing your own. It
//! implements the `reranker-plugin` world of `wit/reranker.wit` (exports
//! `nboost:reranker/reranker`, imports nothing beyond what the Rust standard
//! library itself needs), and it is laid out the way every plugin should be:
//!
//! * [`bm25`] holds all of the logic as plain Rust over plain types. It has no
//!   WebAssembly in it, so `cargo test -p nboost-reranker-lexical` runs its
//!   tests natively, fast, with ordinary tooling.
//! * [`Config`] turns the `settings` table into a typed value, rejecting keys
//!   it does not know (the interface requires it: a typo must not pass
//!   silently). It is plain Rust too, and tested the same way.
//! * The rest of this file is glue: `wit_bindgen::generate!` produces the
//!   Rust types and the `Guest` trait for the world, [`Plugin`] implements the
//!   trait by calling into the plain code, and `export!` wires it up as the
//!   component's exports (on wasm32 only; natively the tests call [`Plugin`]
//!   directly).
//!
//! State lives in a `thread_local!` cell: a component instance is
//! single-threaded, `configure` runs once before any `score`, and the host may
//! throw an instance away at any time, so there is nothing to persist.
//!
//! # Settings
//!
//! | key         | default | meaning                                          |
//! |-------------|---------|--------------------------------------------------|
//! | `k1`        | `1.2`   | BM25 term-frequency saturation, in `[0, 100]`    |
//! | `b`         | `0.75`  | BM25 length normalisation, in `[0, 1]`           |
//! | `stopwords` | `true`  | drop Lucene's 33 English stopwords               |
//! | `stem`      | `true`  | fold English plurals (Harman's S-stemmer)        |
//!
//! Scores are BM25 weights with IDF over the candidate passages of the call
//! (see [`bm25`] for why), so they are comparable within one call only, which
//! is all the interface promises.

pub mod bm25;

use std::cell::Cell;

use bm25::{Analyzer, Bm25};

/// Rust bindings for the `reranker-plugin` world, generated at compile time
/// from `wit/reranker.wit`.
#[allow(missing_docs, reason = "generated code")]
mod bindings {
    wit_bindgen::generate!({
        world: "reranker-plugin",
        path: "../../wit",
    });
}

use bindings::exports::nboost::reranker::reranker::{Error, Guest, ModelInfo};

/// Everything `configure` decides, in typed form.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Config {
    /// Text analysis options (`stopwords`, `stem`).
    pub analyzer: Analyzer,
    /// BM25 parameters (`k1`, `b`).
    pub bm25: Bm25,
}

impl Config {
    /// Parse the `settings` table handed to `configure`.
    ///
    /// Unknown keys, unparsable values and out-of-range values are errors
    /// (the message names the key); missing keys take their defaults.
    pub fn from_settings(settings: &[(String, String)]) -> Result<Self, String> {
        let d = Self::default();
        let s = nboost_settings::Settings::new(settings, &["k1", "b", "stopwords", "stem"])?;
        let mut config = d;
        config.bm25.k1 = s.number_or("k1", d.bm25.k1, 0.0, 100.0)?;
        config.bm25.b = s.number_or("b", d.bm25.b, 0.0, 1.0)?;
        config.analyzer.stopwords = s.bool_or("stopwords", d.analyzer.stopwords)?;
        config.analyzer.stem = s.bool_or("stem", d.analyzer.stem)?;
        Ok(config)
    }
}

thread_local! {
    /// The configuration of this instance; `None` until `configure` succeeds.
    static CONFIG: Cell<Option<Config>> = const { Cell::new(None) };
}

/// The component: implements the exported `reranker` interface.
pub struct Plugin;

impl Guest for Plugin {
    fn configure(settings: Vec<(String, String)>) -> Result<ModelInfo, Error> {
        // A failed configure leaves the instance unconfigured, so that a later
        // `score` reports `invalid-config` instead of using stale settings.
        CONFIG.set(None);
        let config = Config::from_settings(&settings).map_err(Error::InvalidConfig)?;
        CONFIG.set(Some(config));
        Ok(ModelInfo {
            name: "bm25".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "BM25 over the candidate passages (IDF from the passages of each call)"
                .to_owned(),
            preferred_batch_size: 0,
            max_tokens: 0,
        })
    }

    fn score(query: String, passages: Vec<String>) -> Result<Vec<f32>, Error> {
        let config = CONFIG
            .get()
            .ok_or_else(|| Error::InvalidConfig("`configure` has not succeeded".to_owned()))?;
        Ok(bm25::rank(config.analyzer, config.bm25, &query, &passages))
    }
}

// Register `Plugin` as the component's exports. Only on wasm32: the exported
// symbol names (`nboost:reranker/reranker@0.1.0#score`, ...) are not valid in
// a native shared library, and the native build exists only for `cargo test`,
// which calls `Plugin`'s methods directly.
#[cfg(target_arch = "wasm32")]
bindings::export!(Plugin with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    use nboost_settings::pairs as settings;

    #[test]
    fn defaults() {
        let c = Config::from_settings(&[]).unwrap();
        assert_eq!(c.bm25, Bm25 { k1: 1.2, b: 0.75 });
        assert!(c.analyzer.stopwords && c.analyzer.stem);
    }

    #[test]
    fn parses_known_keys() {
        let c = Config::from_settings(&settings(&[
            ("k1", "0.9"),
            ("b", " 0.4 "),
            ("stopwords", "false"),
            ("stem", "false"),
        ]))
        .unwrap();
        assert_eq!(c.bm25, Bm25 { k1: 0.9, b: 0.4 });
        assert!(!c.analyzer.stopwords && !c.analyzer.stem);
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        for bad in [
            ("k_1", "1"),
            ("k1", "-1"),
            ("k1", "NaN"),
            ("k1", "inf"),
            ("k1", "1e9"),
            ("b", "1.5"),
            ("b", ""),
            ("stem", "yes"),
        ] {
            let err = Config::from_settings(&settings(&[bad])).unwrap_err();
            assert!(err.contains(bad.0), "{bad:?}: {err}");
        }
    }

    #[test]
    fn guest_rejects_score_before_configure_and_after_failed_configure() {
        CONFIG.set(None);
        assert!(matches!(
            Plugin::score("q".into(), vec![]),
            Err(Error::InvalidConfig(_))
        ));
        assert!(Plugin::configure(settings(&[("k1", "2")])).is_ok());
        assert!(Plugin::score("q".into(), vec!["q".into()]).is_ok());
        assert!(matches!(
            Plugin::configure(settings(&[("nope", "1")])),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            Plugin::score("q".into(), vec![]),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn guest_scores_one_finite_value_per_passage() {
        Plugin::configure(vec![]).unwrap();
        let s = Plugin::score(
            "rust borrow checker".into(),
            vec![
                "The borrow checker enforces Rust's ownership rules.".into(),
                "".into(),
                "Bread needs flour, water, salt and yeast.".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|x| x.is_finite()));
        assert!(s[0] > s[1] && s[0] > s[2]);
        assert!(Plugin::score("q".into(), vec![]).unwrap().is_empty());
    }
}
