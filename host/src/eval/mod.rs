//! Retrieval-quality evaluation: BM25 first stage, optional rerank, scored
//! against relevance judgements.
//!
//! A reranker is only worth its cost if it puts relevant documents higher
//! than the first stage did, and the only honest way to know is to measure it
//! on a judged collection. This module does the whole loop in memory:
//!
//! 1. [`Collection::load`] reads a collection in the BEIR layout: a directory
//!    with `corpus.jsonl` (`{"_id","title","text"}`), `queries.jsonl`
//!    (`{"_id","text"}`) and `qrels.tsv` (header
//!    `query-id<TAB>corpus-id<TAB>score`).
//! 2. [`Bm25Index`] indexes the corpus in RAM with tantivy (by default the
//!    `en_stem` analyser: lower-casing and English Snowball stemming, as
//!    Lucene's `english` analyser; k1 1.2, b 0.75; on `title` and `text`) and
//!    returns the BM25 top-k for a query. The query is tokenised with the same
//!    analyser and turned into a disjunction of term queries, so no query text
//!    (punctuation, `AND`, `field:`...) can be misread as query syntax.
//! 3. [`evaluate`] runs every judged query through BM25 and, when a
//!    [`Reranker`] and component are given, reranks the BM25 top-k with it
//!    and fuses the two score lists in each of the asked [`Fusion`]s.
//!    Every order is scored with NDCG@10, MRR@10 and Recall@100
//!    ([`Metrics`]) and averaged over the queries that have at least one
//!    relevant judgement.
//!
//! Metric definitions follow `trec_eval`/BEIR: NDCG uses the graded qrels
//! score as a linear gain with a `log2(rank + 1)` discount, and the ideal DCG
//! is computed from all the query's judged relevant documents, retrieved or
//! not. A document is relevant when its qrels score is above zero.

mod bm25;
mod collection;

pub use crate::relevance::*;
pub use bm25::*;
pub use collection::*;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, Term};

use crate::fusion::Fusion;
use crate::{RerankError, Reranker};

/// The depth of the BM25 candidate list handed to the reranker by default.
pub const DEFAULT_TOP_K: usize = 100;

/// The tantivy analyser of both text fields: `en_stem` (lower-casing and
/// the English Snowball stemmer, as Lucene's `english` analyser stems) or
/// `default` (lower-casing only).
fn analyzer(stem: bool) -> &'static str {
    if stem {
        "en_stem"
    } else {
        "default"
    }
}

/// Why loading, indexing or evaluating a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A collection file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A line of a collection file is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// The request cannot be evaluated (for example `top_k` of zero).
    #[error("invalid evaluation settings: {0}")]
    Invalid(String),
    /// The in-memory index could not be built or searched.
    #[error("index: {0}")]
    Index(tantivy::TantivyError),
    /// The reranker failed on a query.
    #[error("query `{query}`: {error}")]
    Rerank {
        /// Id of the query being reranked.
        query: String,
        /// The reranker's error.
        error: RerankError,
    },
}

// Messages carry their cause inline (as `RerankError`'s do), so no variant
// reports a `source()`: printing the chain would repeat it.
impl From<tantivy::TantivyError> for EvalError {
    fn from(e: tantivy::TantivyError) -> Self {
        Self::Index(e)
    }
}

impl EvalError {
    /// True when the caller's input (files, settings) is at fault rather
    /// than the service.
    pub fn is_client_error(&self) -> bool {
        match self {
            Self::Io { .. } | Self::Parse { .. } | Self::Invalid(_) => true,
            Self::Index(_) => false,
            Self::Rerank { error, .. } => error.is_client_error(),
        }
    }
}

/// How to run [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// BM25 candidates per query (and what the reranker reorders).
    pub top_k: usize,
    /// Evaluate only the first N judged queries, in file order.
    pub max_queries: Option<usize>,
    /// Fusions of the reranker's and BM25's scores to score besides the
    /// model alone (the model is scored once; each fusion is arithmetic).
    pub fusions: Vec<Fusion>,
    /// Stem the BM25 first stage (English Snowball; the default).
    pub stem: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            top_k: DEFAULT_TOP_K,
            max_queries: None,
            fusions: Vec::new(),
            stem: true,
        }
    }
}

/// The result of [`evaluate`] on one collection.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// The collection's name.
    pub collection: String,
    /// Documents in the corpus.
    pub documents: usize,
    /// Queries scored (judged queries, after `max_queries`).
    pub queries: usize,
    /// BM25 candidates per query.
    pub top_k: usize,
    /// Average metrics of the BM25 order.
    pub bm25: Metrics,
    /// The reranking component and the average metrics of its order, when
    /// one was given.
    pub reranked: Option<(String, Metrics)>,
    /// Each of [`EvalOptions::fusions`] with the average metrics of its
    /// order (empty without a reranker).
    pub fused: Vec<(Fusion, Metrics)>,
    /// Time spent building the index.
    pub index_time: Duration,
    /// Time spent in BM25 search.
    pub search_time: Duration,
    /// Time spent in [`Reranker::rerank`].
    pub rerank_time: Duration,
    /// Wall time of the whole evaluation.
    pub elapsed: Duration,
}

/// Index `collection`, retrieve the BM25 top-k of each judged query, rerank
/// it with `rerank = Some((reranker, component))` if given, and average the
/// metrics of both orders over the queries.
pub fn evaluate(
    collection: &Collection,
    rerank: Option<(&Reranker, &str)>,
    options: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    evaluate_with_progress(collection, rerank, options, &mut |_, _| {})
}

/// [`evaluate`], calling `progress(done, total)` after each query (a
/// terminal front end draws a progress bar with it).
pub fn evaluate_with_progress(
    collection: &Collection,
    rerank: Option<(&Reranker, &str)>,
    options: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    if options.top_k == 0 {
        return Err(EvalError::Invalid("top-k must be at least 1".into()));
    }
    let start = Instant::now();
    let index = Bm25Index::build(&collection.documents, options.stem)?;
    let index_time = start.elapsed();
    let mut search_time = Duration::ZERO;
    let mut rerank_time = Duration::ZERO;
    let mut bm25 = Metrics::default();
    let mut reranked = Metrics::default();
    let mut fused = vec![Metrics::default(); options.fusions.len()];
    let mut queries = 0;
    let limit = options.max_queries.unwrap_or(usize::MAX);
    let total = collection.judged_queries().take(limit).count();
    for (query, judged) in collection.judged_queries().take(limit) {
        let t = Instant::now();
        let hits = index.search(&query.text, options.top_k)?;
        search_time += t.elapsed();
        let ids: Vec<&str> = hits
            .iter()
            .map(|&(i, _)| collection.documents[i].id.as_str())
            .collect();
        let m = Metrics::of(&ids, judged);
        bm25.add(&m);
        if let Some((reranker, component)) = rerank {
            // Nothing to reorder: the BM25 order (empty) stands.
            let nothing = hits.is_empty() || query.text.trim().is_empty();
            let mut model_scores = vec![0.0; hits.len()];
            let order = if nothing {
                ids.clone()
            } else {
                let passages: Vec<String> = hits
                    .iter()
                    .map(|&(i, _)| collection.documents[i].passage())
                    .collect();
                let t = Instant::now();
                let out = reranker
                    .rerank(component, &query.text, &passages, None)
                    .map_err(|error| EvalError::Rerank {
                        query: query.id.clone(),
                        error,
                    })?;
                rerank_time += t.elapsed();
                for r in &out.ranking {
                    model_scores[r.index] = r.score;
                }
                out.ranking.iter().map(|r| ids[r.index]).collect()
            };
            let first: Vec<f32> = hits.iter().map(|h| h.1).collect();
            for (fusion, sum) in options.fusions.iter().zip(&mut fused) {
                let order: Vec<&str> = if nothing {
                    ids.clone()
                } else {
                    let scores = fusion.fuse(&model_scores, &first);
                    crate::service::rank(scores, None)
                        .iter()
                        .map(|r| ids[r.index])
                        .collect()
                };
                sum.add(&Metrics::of(&order, judged));
            }
            let r = Metrics::of(&order, judged);
            tracing::debug!(
                query = %query.id,
                bm25_ndcg = m.ndcg_at_10,
                reranked_ndcg = r.ndcg_at_10,
                "query scored"
            );
            reranked.add(&r);
        }
        queries += 1;
        progress(queries, total);
    }
    bm25.divide(queries);
    reranked.divide(queries);
    for m in &mut fused {
        m.divide(queries);
    }
    Ok(EvalReport {
        collection: collection.name.clone(),
        documents: collection.documents.len(),
        queries,
        top_k: options.top_k,
        bm25,
        reranked: rerank.map(|(_, c)| (c.to_string(), reranked)),
        fused: match rerank {
            Some(_) => options.fusions.iter().copied().zip(fused).collect(),
            None => Vec::new(),
        },
        index_time,
        search_time,
        rerank_time,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i64)]) -> Judgements {
        pairs.iter().map(|&(d, s)| (d.to_string(), s)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ndcg_graded_hand_computed() {
        // Judged: a=3, b=2, c=1, z=0 (judged not relevant).
        let j = judged(&[("a", 3), ("b", 2), ("c", 1), ("z", 0)]);
        // Ideal: 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.2618595 + 0.5.
        let idcg = 3.0 + 2.0 / 3f64.log2() + 0.5;
        // Ranking c, x, a: 1/1 + 0 + 3/log2(4) = 1 + 1.5.
        let got = ndcg_at(&["c", "x", "a"], &j, 10);
        assert!(close(got, 2.5 / idcg), "{got}");
        assert!(close(ndcg_at(&["a", "b", "c"], &j, 10), 1.0));
        assert!(close(ndcg_at(&["a", "b", "c", "z"], &j, 10), 1.0));
        assert!(close(ndcg_at(&["x", "y"], &j, 10), 0.0));
        assert!(close(ndcg_at::<&str>(&[], &j, 10), 0.0));
    }

    #[test]
    fn ndcg_cutoff_and_ideal_from_all_judged() {
        // Two relevant docs; only one retrieved, at rank 1. The unretrieved
        // one still counts in the ideal DCG.
        let j = judged(&[("a", 1), ("b", 1)]);
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!(close(ndcg_at(&["a"], &j, 10), 1.0 / idcg));
        // Cut-off: the relevant doc at rank 3 is outside @2.
        assert!(close(ndcg_at(&["x", "y", "a"], &j, 2), 0.0));
        // Ideal is cut too: 12 relevant docs, all retrieved first = 1.0 @10.
        let many: Judgements = (0..12).map(|i| (i.to_string(), 1)).collect();
        let ranking: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        assert!(close(ndcg_at(&ranking, &many, 10), 1.0));
    }

    #[test]
    fn mrr_hand_computed() {
        let j = judged(&[("a", 1), ("b", 2), ("z", 0)]);
        assert!(close(mrr_at(&["a", "b"], &j, 10), 1.0));
        assert!(close(mrr_at(&["z", "x", "b", "a"], &j, 10), 1.0 / 3.0));
        let late: Vec<String> = (0..10)
            .map(|i| format!("x{i}"))
            .chain(["a".into()])
            .collect();
        assert!(close(mrr_at(&late, &j, 10), 0.0));
        assert!(close(mrr_at(&late, &j, 11), 1.0 / 11.0));
    }

    #[test]
    fn recall_hand_computed() {
        let j = judged(&[("a", 1), ("b", 2), ("c", 1), ("d", 1), ("z", 0)]);
        assert!(close(recall_at(&["a", "z", "x", "c"], &j, 100), 0.5));
        assert!(close(recall_at(&["a", "a", "c"], &j, 100), 0.5));
        assert!(close(recall_at(&["x", "a", "b"], &j, 2), 0.25));
        assert!(close(recall_at(&["a"], &judged(&[("z", 0)]), 100), 0.0));
    }

    #[test]
    fn passage_joins_title_and_text() {
        let d = |t: &str, x: &str| Document {
            id: "1".into(),
            title: t.into(),
            text: x.into(),
        };
        assert_eq!(d("Wings", "Lift data.").passage(), "Wings. Lift data.");
        assert_eq!(d("Wings", "").passage(), "Wings");
        assert_eq!(d("", "Lift data.").passage(), "Lift data.");
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let p = Path::new("x/corpus.jsonl");
        let e =
            Collection::parse_corpus(p, "{\"_id\":\"1\",\"text\":\"a\"}\n\n{oops}\n").unwrap_err();
        assert!(
            e.to_string().starts_with("x/corpus.jsonl:3: expected"),
            "{e}"
        );
        let e = Collection::parse_corpus(p, "{\"_id\":\"1\"}\n{\"_id\":1}\n").unwrap_err();
        assert_eq!(e.to_string(), "x/corpus.jsonl:2: duplicate document id `1`");
        let q = Path::new("queries.jsonl");
        let e = Collection::parse_queries(q, "{\"_id\":\"1\"}\n").unwrap_err();
        assert!(
            e.to_string().starts_with("queries.jsonl:1: expected"),
            "{e}"
        );
        let r = Path::new("qrels.tsv");
        let e = Collection::parse_qrels(r, "query-id\tcorpus-id\tscore\n1\t2\thigh\n").unwrap_err();
        assert_eq!(e.to_string(), "qrels.tsv:2: score `high` is not an integer");
        let e = Collection::parse_qrels(r, "1 2 1\n").unwrap_err();
        assert!(e.to_string().starts_with("qrels.tsv:1: expected 3"), "{e}");
        assert!(e.is_client_error());
    }

    /// A tiny collection: stemming (`wings`/`wing`), title and text fields,
    /// punctuation and query syntax in queries, an unjudged query.
    fn tiny() -> Collection {
        let corpus = r#"{"_id": "d1", "title": "Wing flutter", "text": "Flutter of swept wings at high speed."}
{"_id": "d2", "title": "Heat transfer", "text": "Heat conduction in composite slabs."}
{"_id": "d3", "title": "", "text": "Boundary layer on a flat plate; the wing is not discussed."}
{"_id": 4, "title": "Slab heating", "text": ""}
"#;
        let queries = r#"{"_id": "q1", "text": "wing flutter?"}
{"_id": "q2", "text": "heat (conduction) AND slabs: \"composite\" -"}
{"_id": "q3", "text": "boundary layer"}
{"_id": "q4", "text": "unjudged"}
"#;
        let qrels =
            "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1\nq2\td2\t1\nq3\td3\t1\nq4\td1\t0\n";
        Collection {
            name: "tiny".into(),
            documents: Collection::parse_corpus(Path::new("c"), corpus).unwrap(),
            queries: Collection::parse_queries(Path::new("q"), queries).unwrap(),
            qrels: Collection::parse_qrels(Path::new("r"), qrels).unwrap(),
        }
    }

    #[test]
    fn bm25_index_retrieves_and_scores() {
        let c = tiny();
        assert_eq!(c.documents[3].id, "4");
        let plain = Bm25Index::build(&c.documents, false).unwrap();
        assert_eq!(
            plain.query_terms("Wings, FLUTTERING!"),
            ["wings", "fluttering"]
        );
        let index = Bm25Index::build(&c.documents, true).unwrap();
        assert_eq!(index.query_terms("Wings, FLUTTERING!"), ["wing", "flutter"]);

        // "wing flutter": d1 has both terms in title and text; d3 has "wing"
        // once; d2 and d4 have neither.
        let hits = index.search("wing flutter?", 10).unwrap();
        let order: Vec<usize> = hits.iter().map(|h| h.0).collect();
        assert_eq!(order, [0, 2]);
        assert!(hits[0].1 > hits[1].1 && hits[1].1 > 0.0);

        // Query syntax and punctuation are plain text.
        let hits = index
            .search("heat (conduction) AND slabs: \"composite\" -", 10)
            .unwrap();
        assert_eq!(hits[0].0, 1, "{hits:?}");
        assert!(
            hits.iter().any(|h| h.0 == 3),
            "slab heating matches: {hits:?}"
        );
        assert!(index.search("?!.,", 10).unwrap().is_empty());
        assert_eq!(index.search("wing", 1).unwrap().len(), 1);

        let report = evaluate(&c, None, &EvalOptions::default()).unwrap();
        assert_eq!(report.queries, 3, "q4 has no relevant judgement");
        assert!(report.reranked.is_none());
        // q1: d1 (2), d3 (1) = ideal order -> 1.0. q2: d2 first -> 1.0.
        // q3: d3 is the only doc with "boundary"/"layer" -> 1.0.
        assert!(close(report.bm25.ndcg_at_10, 1.0), "{:?}", report.bm25);
        assert!(close(report.bm25.mrr_at_10, 1.0));
        assert!(close(report.bm25.recall_at_100, 1.0));

        // top-k = 1 for q1 loses d3: recall 1/2, NDCG = 2 / (2 + 1/log2 3).
        let opts = EvalOptions {
            top_k: 1,
            max_queries: Some(1),
            ..EvalOptions::default()
        };
        let report = evaluate(&c, None, &opts).unwrap();
        assert_eq!(report.queries, 1);
        assert!(close(report.bm25.recall_at_100, 0.5));
        assert!(close(
            report.bm25.ndcg_at_10,
            2.0 / (2.0 + 1.0 / 3f64.log2())
        ));
        assert!(close(report.bm25.mrr_at_10, 1.0));

        let zero = EvalOptions {
            top_k: 0,
            ..EvalOptions::default()
        };
        assert!(evaluate(&c, None, &zero).unwrap_err().is_client_error());
    }
}
