//! Prometheus metrics of the server, in the text format at `GET /metrics`.
//!
//! Each server owns its own `prometheus::Registry` (no global recorder), so
//! several servers in one process — the tests — do not mix their counts.
//! Names carry the `nboost_` prefix; durations are `_seconds` histograms; a
//! rerank's time is split into queue (waiting for a worker), instantiate
//! (resolving the component and taking or creating an instance) and guest
//! (the plugin's `score`, wasi-nn work included). There is no tenant label:
//! tenants are unbounded, labels must not be.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::service::Gauges;

/// Buckets for durations: 0.5 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// `nboost_http_requests_total{route, method, status}`.
    pub http_requests: IntCounterVec,
    /// `nboost_http_request_duration_seconds{route}`.
    pub http_duration: HistogramVec,
    /// `nboost_rerank_requests_total{api}` (`cohere` for `/v1|v2/rerank`,
    /// `tei` for `/rerank`), successful or not.
    pub reranks: IntCounterVec,
    /// `nboost_rerank_failures_total{kind}`: failed reranks by error kind.
    pub failures: IntCounterVec,
    /// `nboost_rerank_queue_duration_seconds`.
    pub queue: Histogram,
    /// `nboost_rerank_instantiate_duration_seconds`.
    pub instantiate: Histogram,
    /// `nboost_rerank_guest_duration_seconds`.
    pub guest: Histogram,
    /// `nboost_uploads_total{kind, outcome}`.
    pub uploads: IntCounterVec,
    in_use: IntGauge,
    idle: IntGauge,
    queued: IntGauge,
    merged_calls: IntCounter,
    merged_computes: IntCounter,
}

fn histogram(name: &str, help: &str) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
        .expect("valid histogram")
}

impl Metrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            http_requests: IntCounterVec::new(
                Opts::new(
                    "nboost_http_requests_total",
                    "HTTP requests by route, method and status",
                ),
                &["route", "method", "status"],
            )
            .expect("valid metric"),
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "nboost_http_request_duration_seconds",
                    "HTTP request latency",
                )
                .buckets(BUCKETS.to_vec()),
                &["route"],
            )
            .expect("valid metric"),
            reranks: IntCounterVec::new(
                Opts::new(
                    "nboost_rerank_requests_total",
                    "Rerank requests by API flavour",
                ),
                &["api"],
            )
            .expect("valid metric"),
            failures: IntCounterVec::new(
                Opts::new(
                    "nboost_rerank_failures_total",
                    "Failed rerank requests by error kind",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            queue: histogram(
                "nboost_rerank_queue_duration_seconds",
                "Time an admitted rerank waited for a worker",
            ),
            instantiate: histogram(
                "nboost_rerank_instantiate_duration_seconds",
                "Time to resolve the component and take or create an instance",
            ),
            guest: histogram(
                "nboost_rerank_guest_duration_seconds",
                "Time in the plugin's score call (wasi-nn work included)",
            ),
            uploads: IntCounterVec::new(
                Opts::new(
                    "nboost_uploads_total",
                    "Component and graph uploads by outcome",
                ),
                &["kind", "outcome"],
            )
            .expect("valid metric"),
            in_use: IntGauge::new("nboost_instances_in_use", "Plugin instances running a call")
                .expect("valid metric"),
            idle: IntGauge::new("nboost_instances_idle", "Warm plugin instances in pools")
                .expect("valid metric"),
            queued: IntGauge::new(
                "nboost_rerank_queued",
                "Admitted reranks waiting for a worker",
            )
            .expect("valid metric"),
            merged_calls: IntCounter::new(
                "nboost_nn_merged_calls_total",
                "Back-end calls that ran several requests' computes merged",
            )
            .expect("valid metric"),
            merged_computes: IntCounter::new(
                "nboost_nn_merged_computes_total",
                "Computes answered by merged back-end calls",
            )
            .expect("valid metric"),
            registry,
        };
        for c in [
            Box::new(m.http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.http_duration.clone()),
            Box::new(m.reranks.clone()),
            Box::new(m.failures.clone()),
            Box::new(m.queue.clone()),
            Box::new(m.instantiate.clone()),
            Box::new(m.guest.clone()),
            Box::new(m.uploads.clone()),
            Box::new(m.in_use.clone()),
            Box::new(m.idle.clone()),
            Box::new(m.queued.clone()),
            Box::new(m.merged_calls.clone()),
            Box::new(m.merged_computes.clone()),
        ] {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// The text exposition, with the instance gauges read now.
    pub fn render(&self, gauges: Gauges) -> String {
        self.in_use.set(gauges.in_use as i64);
        self.idle.set(gauges.idle as i64);
        self.queued.set(gauges.queued as i64);
        // Counted by the host's graphs; mirrored here when read.
        for (c, v) in [
            (&self.merged_calls, gauges.merged_calls),
            (&self.merged_computes, gauges.merged_computes),
        ] {
            c.inc_by(v.saturating_sub(c.get()));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(target: "nboost::api", "cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
