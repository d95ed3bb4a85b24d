//! `nboost rerank` and `nboost bench`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;

use super::{CliError, GlobalArgs};

/// Rerank passages for a query.
#[derive(Debug, Args)]
pub struct RerankCommand {
    /// Component name (from the manifest).
    #[arg(long, short, required_unless_present = "bundle")]
    component: Option<String>,
    /// Rerank with a signed bundle (its component) instead of the
    /// manifest; needs `--trusted-key`.
    #[arg(long, requires = "trusted_key")]
    bundle: Option<PathBuf>,
    /// A public key whose bundles are accepted (repeatable).
    #[arg(long)]
    trusted_key: Vec<PathBuf>,
    /// The query.
    #[arg(long, short)]
    query: String,
    /// Passages file: JSON lines (a string, or an object with `text` and an
    /// optional `title`), or plain text with one passage per line; `-` reads
    /// standard input.
    #[arg(long, short)]
    passages: Option<PathBuf>,
    /// A passage given inline (repeatable).
    #[arg(long = "passage")]
    inline: Vec<String>,
    /// Keep only the best N.
    #[arg(long)]
    top_n: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long, conflicts_with = "jsonl")]
    json: bool,
    /// Print one JSON object per line (`index`, `score`, `text`): a passages
    /// file for the next stage (`... --jsonl | nboost rerank -p - ...`).
    #[arg(long)]
    jsonl: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PassageLine {
    Text(String),
    Object {
        #[serde(default)]
        title: Option<String>,
        text: String,
    },
}

/// Read passages from a JSON-lines or plain-text file (`-` = stdin).
pub fn read_passages(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read passages from {}", path.display()))?;
    }
    let jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json")
        || text.trim_start().starts_with(['"', '{']);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if jsonl {
            let p: PassageLine = serde_json::from_str(line).with_context(|| {
                format!(
                    "{}:{}: expected a JSON string or an object with a `text` field",
                    path.display(),
                    n + 1
                )
            })?;
            out.push(match p {
                PassageLine::Text(t) => t,
                PassageLine::Object {
                    title: Some(t),
                    text,
                } if !t.is_empty() => {
                    format!("{t}. {text}")
                }
                PassageLine::Object { text, .. } => text,
            });
        } else {
            out.push(line.to_string());
        }
    }
    Ok(out)
}

impl RerankCommand {
    pub fn run(self, global: &GlobalArgs) -> Result<(), CliError> {
        let mut passages = match &self.passages {
            Some(p) => read_passages(p)?,
            None => Vec::new(),
        };
        passages.extend(self.inline.iter().cloned());
        if passages.is_empty() {
            return Err(CliError {
                err: anyhow::anyhow!("no passages: give --passages FILE or --passage TEXT"),
                code: 2,
            });
        }
        // A bundle is verified and unpacked first; its temporary directory
        // lives until the answer is printed.
        let (reranker, component, _unpacked) = match &self.bundle {
            Some(file) => {
                let beside = file.parent().unwrap_or(std::path::Path::new("."));
                let cache = global.bundle_cache(beside);
                let (opened, dir) =
                    super::bundle::open_verified(file, &self.trusted_key, cache.as_deref())?;
                let manifest = opened.host_manifest();
                let mut config = global.config(&manifest);
                super::bundle::cache_beside(&mut config, &manifest.dir, beside);
                let name = opened.manifest.name.clone();
                if self.component.as_ref().is_some_and(|c| c != &name) {
                    return Err(anyhow::anyhow!(
                        "the bundle holds `{name}`, not `{}`",
                        self.component.as_deref().unwrap_or_default()
                    )
                    .into());
                }
                (nboost::Reranker::new(manifest, config)?, name, dir)
            }
            None => {
                let name = self.component.clone().unwrap_or_default();
                (global.reranker_for(&name)?, name, None)
            }
        };
        let out = reranker.rerank(&component, &self.query, &passages, self.top_n)?;
        let rows = out.ranking.iter().map(
            |r| serde_json::json!({"index": r.index, "score": r.score, "text": passages[r.index]}),
        );
        if self.json {
            let rows: Vec<_> = rows.collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).map_err(anyhow::Error::from)?
            );
        } else if self.jsonl {
            for row in rows {
                println!("{row}");
            }
        } else {
            println!("{:>4}  {:>9}  {:>5}  passage", "rank", "score", "index");
            for (rank, r) in out.ranking.iter().enumerate() {
                let text: String = passages[r.index].chars().take(90).collect();
                println!(
                    "{:>4}  {:>9.4}  {:>5}  {}",
                    rank + 1,
                    r.score,
                    r.index,
                    text
                );
            }
        }
        tracing::info!(
            queue_ms = out.timing.queue.as_secs_f64() * 1e3,
            instantiate_ms = out.timing.instantiate.as_secs_f64() * 1e3,
            guest_ms = out.timing.guest.as_secs_f64() * 1e3,
            "reranked"
        );
        // A one-shot command: the engine, its instance pool and the graphs
        // (90 MB for MiniLM) are left to the OS, which unmaps them at exit
        // at once; dropping them piece by piece cost about 10 ms of every
        // cold start. (Nothing in them needs flushing; `_unpacked` still
        // drops and removes its directory.)
        std::mem::forget(reranker);
        Ok(())
    }
}

/// Measure passages/second of one component on a fixed request.
#[derive(Debug, Args)]
pub struct BenchCommand {
    /// Component name.
    #[arg(long, short)]
    component: String,
    /// A JSON file `{"query": "...", "passages": ["...", ...]}`.
    #[arg(long, default_value = "bench/rerank-100x100.json")]
    input: PathBuf,
    /// Timed iterations (after one warm-up).
    #[arg(long, default_value_t = 5)]
    iters: usize,
}

#[derive(Deserialize)]
struct BenchInput {
    query: String,
    passages: Vec<String>,
}

impl BenchCommand {
    pub fn run(self, global: &GlobalArgs) -> Result<(), CliError> {
        if self.iters == 0 {
            return Err(anyhow::anyhow!("--iters must be at least 1").into());
        }
        let text = std::fs::read_to_string(&self.input)
            .with_context(|| format!("cannot read {}", self.input.display()))?;
        let input: BenchInput = serde_json::from_str(&text)
            .with_context(|| format!("{}: expected {{query, passages}}", self.input.display()))?;
        let start = Instant::now();
        let reranker = global.reranker_for(&self.component)?;
        let first = reranker.rerank(&self.component, &input.query, &input.passages, None)?;
        let cold = start.elapsed();
        let mut times = Vec::with_capacity(self.iters);
        for _ in 0..self.iters {
            let t = Instant::now();
            let out = reranker.rerank(&self.component, &input.query, &input.passages, None)?;
            times.push(t.elapsed().as_secs_f64());
            if out.ranking.first().map(|r| r.index) != first.ranking.first().map(|r| r.index) {
                bail_cli("ranking changed between iterations")?;
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let n = input.passages.len() as f64;
        let report = serde_json::json!({
            "component": self.component,
            "backend": format!("{:?}", global.backend).to_lowercase(),
            "threads": global.threads,
            "passages": input.passages.len(),
            "iters": self.iters,
            "cold_first_answer_ms": cold.as_secs_f64() * 1e3,
            "median_ms_per_call": median * 1e3,
            "passages_per_s": n / median,
            "top5": first.ranking.iter().take(5).map(|r| r.index).collect::<Vec<_>>(),
        });
        println!("{report}");
        Ok(())
    }
}

fn bail_cli(msg: &str) -> anyhow::Result<()> {
    bail!("{msg}")
}
