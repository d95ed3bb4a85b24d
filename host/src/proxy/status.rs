//! What the proxy has done: counters, latencies of the upstream and of
//! reranking (the last [`WINDOW`] searches), and — when searches carried
//! relevance judgements — MRR@10 and NDCG@10 of the upstream order against
//! the reranked one. `GET /nboost/status` is the JSON; `GET /nboost` the
//! same numbers as one self-contained HTML page (inline CSS and SVG, no
//! script, nothing fetched), so it works on an air-gapped operator's
//! browser.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::Json;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::plan::Skip;
use super::Proxy;
use crate::relevance::Metrics;

/// Latencies kept for the percentiles and the chart.
pub const WINDOW: usize = 1000;

/// Points in the page's latency chart.
const CHART_POINTS: usize = 60;

/// The proxy's counters.
pub struct Stats {
    component: String,
    started: Instant,
    requests: AtomicU64,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    reranked: u64,
    skipped: u64,
    errors: u64,
    by_reason: BTreeMap<&'static str, u64>,
    rerank_ms: VecDeque<f64>,
    upstream_ms: VecDeque<f64>,
    judged: u64,
    upstream: Metrics,
    reranked_metrics: Metrics,
}

fn push(window: &mut VecDeque<f64>, d: Duration) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(d.as_secs_f64() * 1e3);
}

impl Stats {
    pub(super) fn new(component: &str) -> Self {
        Self {
            component: component.to_string(),
            started: Instant::now(),
            requests: AtomicU64::new(0),
            counts: Mutex::new(Counts::default()),
        }
    }

    pub(super) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn error(&self) {
        self.counts.lock().errors += 1;
    }

    pub(super) fn skipped(&self, skip: &Skip) {
        let mut c = self.counts.lock();
        c.skipped += 1;
        *c.by_reason.entry(skip.code()).or_default() += 1;
    }

    pub(super) fn reranked(
        &self,
        took: Duration,
        upstream: Duration,
        eval: Option<&(Metrics, Metrics)>,
    ) {
        let mut c = self.counts.lock();
        c.reranked += 1;
        push(&mut c.rerank_ms, took);
        push(&mut c.upstream_ms, upstream);
        if let Some((up, re)) = eval {
            c.judged += 1;
            c.upstream.add(up);
            c.reranked_metrics.add(re);
        }
    }

    /// A snapshot of everything.
    pub fn report(&self) -> StatusReport {
        let c = self.counts.lock();
        let eval = (c.judged > 0).then(|| {
            let (mut up, mut re) = (c.upstream, c.reranked_metrics);
            up.divide(c.judged as usize);
            re.divide(c.judged as usize);
            EvalReport {
                searches: c.judged,
                boost: (up.mrr_at_10 > 0.0).then(|| re.mrr_at_10 / up.mrr_at_10),
                upstream: up.into(),
                reranked: re.into(),
            }
        });
        let start = c.rerank_ms.len().saturating_sub(CHART_POINTS);
        StatusReport {
            component: self.component.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            requests: self.requests.load(Ordering::Relaxed),
            searches: c.reranked + c.skipped,
            reranked: c.reranked,
            skipped: c.skipped,
            errors: c.errors,
            skipped_by_reason: c
                .by_reason
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            rerank_ms: Latency::of(&c.rerank_ms),
            upstream_ms: Latency::of(&c.upstream_ms),
            eval,
            recent_rerank_ms: c.rerank_ms.iter().skip(start).copied().collect(),
        }
    }
}

/// `GET /nboost/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// The default component.
    pub component: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Requests proxied (the status pages not counted).
    pub requests: u64,
    /// Searches seen (`_msearch` counts each of its searches).
    pub searches: u64,
    /// Searches answered in the reranked order.
    pub reranked: u64,
    /// Searches passed through in the upstream order.
    pub skipped: u64,
    /// Requests answered with a proxy error (5xx).
    pub errors: u64,
    /// Skips by reason code.
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Rerank time of reranked searches.
    pub rerank_ms: Latency,
    /// Upstream time of reranked searches.
    pub upstream_ms: Latency,
    /// Quality of searches that carried judgements.
    pub eval: Option<EvalReport>,
    /// The last rerank times, oldest first (the page's chart).
    pub recent_rerank_ms: Vec<f64>,
}

/// Percentiles over the window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Samples in the window.
    pub count: usize,
    /// Median, ms.
    pub p50: Option<f64>,
    /// 95th percentile, ms.
    pub p95: Option<f64>,
}

impl Latency {
    fn of(window: &VecDeque<f64>) -> Self {
        let mut v: Vec<f64> = window.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        // Nearest rank.
        let pct = |p: f64| -> Option<f64> {
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
            v.get(i).map(|x| (x * 100.0).round() / 100.0)
        };
        Self {
            count: v.len(),
            p50: pct(0.5),
            p95: pct(0.95),
        }
    }
}

/// Mean metrics of judged searches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct EvalReport {
    /// Searches with judgements.
    pub searches: u64,
    /// The upstream order.
    pub upstream: Quality,
    /// The reranked order.
    pub reranked: Quality,
    /// Reranked MRR@10 ÷ upstream MRR@10 (none when upstream's is 0).
    pub boost: Option<f64>,
}

/// MRR@10 and NDCG@10.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Quality {
    /// MRR@10.
    #[serde(rename = "mrr@10")]
    pub mrr: f64,
    /// NDCG@10.
    #[serde(rename = "ndcg@10")]
    pub ndcg: f64,
}

impl From<Metrics> for Quality {
    fn from(m: Metrics) -> Self {
        Self {
            mrr: m.mrr_at_10,
            ndcg: m.ndcg_at_10,
        }
    }
}

pub(super) async fn json(State(proxy): State<Proxy>) -> impl IntoResponse {
    Json(proxy.report())
}

pub(super) async fn page(State(proxy): State<Proxy>) -> impl IntoResponse {
    Html(render(&proxy.report()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// The page: each number in an element whose `id` is its JSON path, so a
/// test (or a scraper) can read it back.
pub fn render(r: &StatusReport) -> String {
    let mut rows = String::new();
    let mut row = |label: &str, id: &str, value: String| {
        let _ = write!(
            rows,
            "<tr><th>{label}</th><td id=\"{id}\">{}</td></tr>",
            escape(&value)
        );
    };
    row("component", "component", r.component.clone());
    row("requests", "requests", r.requests.to_string());
    row("searches", "searches", r.searches.to_string());
    row("reranked", "reranked", r.reranked.to_string());
    row("skipped", "skipped", r.skipped.to_string());
    row("errors", "errors", r.errors.to_string());
    row("rerank p50 (ms)", "rerank_ms.p50", num(r.rerank_ms.p50, 2));
    row("rerank p95 (ms)", "rerank_ms.p95", num(r.rerank_ms.p95, 2));
    row(
        "upstream p50 (ms)",
        "upstream_ms.p50",
        num(r.upstream_ms.p50, 2),
    );
    row(
        "upstream p95 (ms)",
        "upstream_ms.p95",
        num(r.upstream_ms.p95, 2),
    );
    if let Some(e) = &r.eval {
        row("judged searches", "eval.searches", e.searches.to_string());
        row(
            "upstream MRR@10",
            "eval.upstream.mrr",
            format!("{:.4}", e.upstream.mrr),
        );
        row(
            "reranked MRR@10",
            "eval.reranked.mrr",
            format!("{:.4}", e.reranked.mrr),
        );
        row(
            "upstream NDCG@10",
            "eval.upstream.ndcg",
            format!("{:.4}", e.upstream.ndcg),
        );
        row(
            "reranked NDCG@10",
            "eval.reranked.ndcg",
            format!("{:.4}", e.reranked.ndcg),
        );
        row("boost (MRR ratio)", "eval.boost", num(e.boost, 3));
    }
    let mut reasons = String::new();
    for (code, n) in &r.skipped_by_reason {
        let _ = write!(
            reasons,
            "<tr><th>{}</th><td id=\"skipped_by_reason.{0}\">{n}</td></tr>",
            escape(code)
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\"><title>nboost proxy</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}\
         th,td{{padding:.25em 1em;border-bottom:1px solid #ddd;text-align:left}}\
         td{{font-variant-numeric:tabular-nums}}h2{{font-size:1em}}</style></head><body>\
         <h1>nboost proxy</h1><table>{rows}</table>\
         <h2>skipped, by reason</h2><table>{reasons}</table>\
         <h2>rerank time of the last {} searches (ms)</h2>{}\
         <p>up {} s · <a href=\"/nboost/status\">JSON</a></p></body></html>",
        r.recent_rerank_ms.len(),
        chart(&r.recent_rerank_ms),
        r.uptime_s
    )
}

/// An inline SVG line chart of `values`.
fn chart(values: &[f64]) -> String {
    let (w, h, pad) = (600.0, 160.0, 30.0);
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let step = if values.len() > 1 {
        (w - 2.0 * pad) / (values.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                pad + i as f64 * step,
                h - pad - v / max * (h - 2.0 * pad)
            )
        })
        .collect();
    format!(
        "<svg id=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"rerank latency\"><rect width=\"{w}\" height=\"{h}\" fill=\"#fafafa\"/>\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{0}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"{}\" font-size=\"10\">{max:.1}</text>\
         <text x=\"2\" y=\"{0}\" font-size=\"10\">0</text>\
         <polyline fill=\"none\" stroke=\"#1565c0\" stroke-width=\"2\" points=\"{}\"/></svg>",
        h - pad,
        w - pad,
        pad + 4.0,
        points.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_boost() {
        let s = Stats::new("minilm");
        for ms in 1..=100 {
            s.reranked(Duration::from_millis(ms), Duration::from_millis(2), None);
        }
        let up = Metrics {
            mrr_at_10: 0.5,
            ..Metrics::default()
        };
        let re = Metrics {
            mrr_at_10: 1.0,
            ..Metrics::default()
        };
        s.reranked(
            Duration::from_millis(50),
            Duration::from_millis(2),
            Some(&(up, re)),
        );
        s.skipped(&Skip::SizeZero);
        let r = s.report();
        assert_eq!((r.searches, r.reranked, r.skipped), (102, 101, 1));
        assert_eq!(r.rerank_ms.p50, Some(50.0));
        assert_eq!(r.rerank_ms.p95, Some(95.0));
        assert_eq!(r.eval.unwrap().boost, Some(2.0));
        assert_eq!(r.skipped_by_reason["size_zero"], 1);
        let html = render(&r);
        assert!(html.contains("<td id=\"reranked\">101</td>"), "{html}");
        assert!(html.contains("<td id=\"eval.boost\">2.000</td>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
