//! Ranking metrics: NDCG@k, MRR@k, recall@k, and their means.
//!
//! A leaf, not part of `eval`: `nboost eval` scores whole collections with
//! them, and the proxy scores single searches that carry judgements, and
//! the serving binary must not need the evaluation's search engine for that.

use std::collections::{HashMap, HashSet};

/// Relevance judgements of one query: corpus id to graded score.
pub type Judgements = HashMap<String, i64>;

/// Cut-off of NDCG and MRR.
pub const METRIC_CUTOFF: usize = 10;

/// Cut-off of recall.
pub const RECALL_CUTOFF: usize = 100;

/// Retrieval metrics of one ranking, or their average over queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Metrics {
    /// NDCG@10 with graded gains.
    #[serde(rename = "ndcg@10")]
    pub ndcg_at_10: f64,
    /// Reciprocal rank of the first relevant document within the top 10.
    #[serde(rename = "mrr@10")]
    pub mrr_at_10: f64,
    /// Share of the judged relevant documents found in the top 100.
    #[serde(rename = "recall@100")]
    pub recall_at_100: f64,
}

impl Metrics {
    /// Score `ranking` (corpus ids, best first) against `judged`.
    pub fn of<S: AsRef<str>>(ranking: &[S], judged: &Judgements) -> Self {
        Self {
            ndcg_at_10: ndcg_at(ranking, judged, METRIC_CUTOFF),
            mrr_at_10: mrr_at(ranking, judged, METRIC_CUTOFF),
            recall_at_100: recall_at(ranking, judged, RECALL_CUTOFF),
        }
    }

    /// Add `other` metric by metric (for a mean: then [`Metrics::divide`]).
    pub fn add(&mut self, other: &Self) {
        self.ndcg_at_10 += other.ndcg_at_10;
        self.mrr_at_10 += other.mrr_at_10;
        self.recall_at_100 += other.recall_at_100;
    }

    /// Divide every metric by `n` (no-op for 0).
    pub fn divide(&mut self, n: usize) {
        if n > 0 {
            let n = n as f64;
            self.ndcg_at_10 /= n;
            self.mrr_at_10 /= n;
            self.recall_at_100 /= n;
        }
    }
}

/// The gain of one document: its judged score, zero when unjudged or not
/// relevant.
pub fn gain(judged: &Judgements, id: &str) -> f64 {
    judged.get(id).map_or(0.0, |&s| s.max(0) as f64)
}

/// NDCG@k: DCG of the top `k` of `ranking` (gain = qrels score, discount
/// `log2(rank + 1)`), divided by the DCG of the ideal order of all judged
/// relevant documents. Zero when nothing is relevant.
pub fn ndcg_at<S: AsRef<str>>(ranking: &[S], judged: &Judgements, k: usize) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, id)| gain(judged, id.as_ref()) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<f64> = judged
        .values()
        .filter(|&&s| s > 0)
        .map(|&s| s as f64)
        .collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| g / (i as f64 + 2.0).log2())
        .sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

/// MRR@k: `1 / rank` of the first relevant document in the top `k`, or 0.
pub fn mrr_at<S: AsRef<str>>(ranking: &[S], judged: &Judgements, k: usize) -> f64 {
    ranking
        .iter()
        .take(k)
        .position(|id| gain(judged, id.as_ref()) > 0.0)
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

/// Recall@k: relevant documents in the top `k` over all judged relevant
/// documents. Zero when nothing is relevant. Repeated ids count once.
pub fn recall_at<S: AsRef<str>>(ranking: &[S], judged: &Judgements, k: usize) -> f64 {
    let relevant = judged.values().filter(|&&s| s > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found: HashSet<&str> = ranking
        .iter()
        .take(k)
        .map(AsRef::as_ref)
        .filter(|id| gain(judged, id) > 0.0)
        .collect();
    found.len() as f64 / relevant as f64
}
