//! `nboost eval`.

use std::path::{Path, PathBuf};

use clap::Args;
use nboost::eval::{self, Collection, EvalError, EvalOptions, EvalReport};
use nboost::service::Fusion;

use super::{CliError, GlobalArgs};

/// Retrieval quality on BEIR-layout collections: BM25 top-k, optionally
/// reranked, scored with NDCG@10, MRR@10 and Recall@100 against the qrels.
#[derive(Debug, Args)]
pub struct EvalCommand {
    /// Component that reranks the BM25 top-k (without it only BM25 is
    /// reported).
    #[arg(long, short)]
    component: Option<String>,
    /// A collection directory (corpus.jsonl, queries.jsonl, qrels.tsv), or a
    /// directory whose subdirectories are collections (repeatable).
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// BM25 candidates per query (what the component reranks).
    #[arg(long, default_value_t = eval::DEFAULT_TOP_K)]
    top_k: usize,
    /// Score only the first N judged queries of each collection.
    #[arg(long)]
    max_queries: Option<usize>,
    /// Also score these fusions of the component's and BM25's scores, as
    /// JSON (`{"method":"rrf","k":60}`; repeatable). Default: the model
    /// alone, the server's default fusion, RRF (k 60) and a min-max mix
    /// (weight 0.5).
    #[arg(long, value_parser = parse_fusion)]
    fusion: Vec<Fusion>,
    /// Score a grid of fusions instead (RRF k 1 to 100, linear weights 0.1
    /// to 0.9, min-max and z-score): how the defaults are chosen.
    #[arg(long, conflicts_with = "fusion")]
    fusion_grid: bool,
    /// BM25 without stemming (default: the English Snowball stemmer, as
    /// Lucene's `english` analyser).
    #[arg(long)]
    no_stem: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_fusion(s: &str) -> Result<Fusion, String> {
    let f: Fusion = serde_json::from_str(s).map_err(|e| format!("not a fusion: {e}"))?;
    f.check()?;
    Ok(f)
}

/// The fusions `nboost eval` scores.
fn fusions(given: &[Fusion], grid: bool) -> Vec<Fusion> {
    use nboost::service::Normalize;
    if grid {
        let mut out: Vec<Fusion> = [1.0, 5.0, 10.0, 20.0, 40.0, 60.0, 100.0]
            .into_iter()
            .map(|k| Fusion::Rrf { k })
            .collect();
        for normalize in [Normalize::Minmax, Normalize::Zscore] {
            for w in 1..=9 {
                out.push(Fusion::Linear {
                    weight: w as f64 / 10.0,
                    normalize,
                });
            }
        }
        return out;
    }
    if !given.is_empty() {
        return given.to_vec();
    }
    vec![
        Fusion::DEFAULT,
        Fusion::Rrf { k: 60.0 },
        Fusion::Linear {
            weight: 0.5,
            normalize: Normalize::Minmax,
        },
    ]
}

fn usage(msg: String) -> CliError {
    CliError {
        err: anyhow::anyhow!(msg),
        code: 2,
    }
}

impl From<EvalError> for CliError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::Rerank { query, error } => {
                let code = if error.is_client_error() { 2 } else { 1 };
                Self {
                    err: anyhow::Error::from(error).context(format!("query `{query}`")),
                    code,
                }
            }
            e => {
                let code = if e.is_client_error() { 2 } else { 1 };
                Self {
                    err: e.into(),
                    code,
                }
            }
        }
    }
}

/// The collection directories under `dirs`: each one that has a
/// `corpus.jsonl`, else its subdirectories that have one (sorted).
fn collection_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for dir in dirs {
        if Collection::is_collection_dir(dir) {
            out.push(dir.clone());
            continue;
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| usage(format!("cannot read --data {}: {e}", dir.display())))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && Collection::is_collection_dir(p))
            .collect();
        if found.is_empty() {
            return Err(usage(format!(
                "--data {}: no corpus.jsonl there or in any subdirectory",
                dir.display()
            )));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

fn load(dir: &Path) -> Result<Collection, CliError> {
    let t = std::time::Instant::now();
    let c = Collection::load(dir)?;
    tracing::info!(
        collection = %c.name,
        documents = c.documents.len(),
        queries = c.queries.len(),
        ms = t.elapsed().as_secs_f64() * 1e3,
        "loaded"
    );
    Ok(c)
}

fn report_json(r: &EvalReport, path: &Path) -> serde_json::Value {
    let mut systems = vec![serde_json::json!({"system": "bm25", "metrics": r.bm25})];
    if let Some((component, m)) = &r.reranked {
        systems.push(serde_json::json!({
            "system": format!("bm25+{component}"),
            "component": component,
            "metrics": m,
        }));
        for (fusion, m) in &r.fused {
            systems.push(serde_json::json!({
                "system": format!("bm25+{component}+{}", fusion.label()),
                "component": component,
                "fusion": fusion,
                "metrics": m,
            }));
        }
    }
    serde_json::json!({
        "collection": r.collection,
        "path": path,
        "documents": r.documents,
        "queries": r.queries,
        "top_k": r.top_k,
        "systems": systems,
        "index_s": r.index_time.as_secs_f64(),
        "search_s": r.search_time.as_secs_f64(),
        "rerank_s": r.rerank_time.as_secs_f64(),
        "elapsed_s": r.elapsed.as_secs_f64(),
    })
}

fn print_rows(r: &EvalReport) {
    let mut rows = vec![("bm25".to_string(), r.bm25)];
    if let Some((component, m)) = &r.reranked {
        rows.push((format!("{component} alone"), *m));
        for (fusion, m) in &r.fused {
            rows.push((format!("{component}+{}", fusion.label()), *m));
        }
    }
    for (system, m) in rows {
        println!(
            "{:<12} {:>7}  {:<30} {:>7.4} {:>7.4} {:>7.4}",
            r.collection, r.queries, system, m.ndcg_at_10, m.mrr_at_10, m.recall_at_100
        );
    }
}

impl EvalCommand {
    pub fn run(self, global: &GlobalArgs) -> Result<(), CliError> {
        if self.top_k == 0 {
            return Err(usage("--top-k must be at least 1".into()));
        }
        let dirs = collection_dirs(&self.data)?;
        let reranker = match &self.component {
            Some(component) => {
                let reranker = global.reranker()?;
                // Fail on a bad component before any indexing; this also
                // loads and compiles it once, outside the timed loop.
                reranker.model_info(component)?;
                Some(reranker)
            }
            None => None,
        };
        let rerank = reranker.as_ref().zip(self.component.as_deref());
        let options = EvalOptions {
            top_k: self.top_k,
            max_queries: self.max_queries,
            fusions: fusions(&self.fusion, self.fusion_grid),
            stem: !self.no_stem,
        };
        let mut reports = Vec::new();
        for (n, dir) in dirs.iter().enumerate() {
            let collection = load(dir)?;
            // A bar on a terminal; nothing when stderr is piped.
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {pos}/{len} queries, {elapsed} (eta {eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(collection.name.clone());
            let report =
                eval::evaluate_with_progress(&collection, rerank, &options, &mut |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                })?;
            bar.finish_and_clear();
            tracing::info!(
                collection = %report.collection,
                index_ms = report.index_time.as_secs_f64() * 1e3,
                search_ms = report.search_time.as_secs_f64() * 1e3,
                rerank_ms = report.rerank_time.as_secs_f64() * 1e3,
                elapsed_ms = report.elapsed.as_secs_f64() * 1e3,
                "evaluated"
            );
            if self.json {
                reports.push(report_json(&report, dir));
            } else {
                if n == 0 {
                    println!(
                        "{:<12} {:>7}  {:<30} {:>7} {:>7} {:>7}",
                        "collection", "queries", "system", "NDCG@10", "MRR@10", "R@100"
                    );
                }
                print_rows(&report);
            }
        }
        if self.json {
            let out = serde_json::to_string_pretty(&reports).map_err(anyhow::Error::from)?;
            println!("{out}");
        }
        Ok(())
    }
}
