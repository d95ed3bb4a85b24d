//! `nboost proxy`: NBoost's original job — a reverse proxy between a search
//! client and Elasticsearch/OpenSearch that reranks search hits with a
//! component, so results get better without changing the client or the
//! index.
//!
//! The proxy is a front end of the one serving core, like the HTTP API: it
//! calls [`Service::rerank`] as the operator, with the upstream `_score` of
//! each hit as the first stage and the host's [`Fusion`] over both.
//!
//! * [`forward`]: the upstream client — every request that is not a search
//!   goes through unchanged (method, path, query, headers except
//!   hop-by-hop, streaming bodies both ways).
//! * [`query`]: the query text of a search, from the query DSL or `?q=`.
//! * [`plan`]: reading a search — its query text, paging, sorting, source
//!   filtering and the request's `nboost` options — into a decision:
//!   rerank (and how to ask the upstream) or pass through (and why).
//! * [`search`]: `_search`: ask for the top `topn`, rerank, answer the
//!   page asked for in the new order; [`msearch`]: the same per search of
//!   an `_msearch`.
//! * [`status`]: counters and latencies, `GET /nboost/status` (JSON) and
//!   `GET /nboost` (a self-contained HTML page).
//!
//! # What a request can and cannot do
//!
//! A request chooses only through the `nboost` object in a search body
//! (component, topn, fields, fusion, `rerank: false`, relevance
//! judgements), validated against what the operator allows and stripped
//! before forwarding. The upstream address is fixed at start: only the
//! path and query of a request are used, so an absolute-form request line
//! or a `//host` path still goes to the upstream. Nothing from a request
//! adds headers toward the upstream, and nothing is ever evaluated.
//!
//! # Failure
//!
//! Upstream unreachable: `502` with an Elasticsearch-shaped JSON error.
//! Model failure, timeout or overload: the upstream order with an
//! `x-nboost-skipped` header (lenient, the default), or `502` (`strict`).
//! An upstream answer over `max_response_bytes` is never held: the search
//! is asked again as the client sent it and streamed through.

mod forward;
mod msearch;
mod plan;
mod query;
mod search;
mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::fusion::Fusion;
use crate::service::Service;
use crate::store::Tenant;
pub use plan::Options;
pub use query::{lucene_text, query_text};
pub use status::{Stats, StatusReport};

/// What the operator sets at start; requests may narrow it only within
/// these bounds.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The search engine, e.g. `http://127.0.0.1:9200` (a path prefix is
    /// kept).
    pub upstream: reqwest::Url,
    /// The component that reranks by default.
    pub component: String,
    /// Components a request may pick with `nboost.component` (always
    /// including `component`).
    pub allowed_components: Vec<String>,
    /// How many upstream hits are reranked.
    pub topn: usize,
    /// The largest `nboost.topn` a request may ask for.
    pub max_topn: usize,
    /// The `_source` fields a hit is scored on, joined by newlines.
    pub fields: Vec<String>,
    /// The fusion of model and upstream scores (`None`: the component's
    /// default, else [`Fusion::DEFAULT`]).
    pub fusion: Option<Fusion>,
    /// A failed, late or refused rerank is a `502` instead of the upstream
    /// order.
    pub strict: bool,
    /// Most bytes of one upstream search answer held in memory; a larger
    /// answer passes through un-reranked.
    pub max_response_bytes: usize,
    /// Most bytes of a search request body read; a larger one passes
    /// through un-reranked, streamed.
    pub max_request_bytes: usize,
    /// How long one rerank may take before the search is answered without
    /// it.
    pub rerank_timeout: Duration,
    /// Connecting to the upstream.
    pub connect_timeout: Duration,
}

impl ProxyConfig {
    /// The defaults for `upstream` and `component`.
    pub fn new(upstream: reqwest::Url, component: impl Into<String>) -> Self {
        let component = component.into();
        Self {
            upstream,
            allowed_components: vec![component.clone()],
            component,
            topn: 50,
            max_topn: 200,
            fields: vec!["title".into(), "text".into()],
            fusion: None,
            strict: false,
            max_response_bytes: 4 << 20,
            max_request_bytes: 1 << 20,
            rerank_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The proxy's shared state.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProxyConfig,
    service: Arc<Service>,
    operator: Tenant,
    client: reqwest::Client,
    stats: Stats,
}

impl Proxy {
    /// A proxy reranking through `service` as the operator.
    pub fn new(config: ProxyConfig, service: Arc<Service>) -> anyhow::Result<Self> {
        let mut config = config;
        if !config.allowed_components.contains(&config.component) {
            config.allowed_components.push(config.component.clone());
        }
        config.max_topn = config.max_topn.max(config.topn);
        let client = reqwest::Client::builder()
            // The upstream's redirects go to the client, not followed here.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .no_proxy()
            .build()?;
        let stats = Stats::new(&config.component);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                service,
                operator: Tenant::operator(),
                client,
                stats,
            }),
        })
    }

    /// Counters and latencies so far.
    pub fn report(&self) -> StatusReport {
        self.inner.stats.report()
    }
}

/// The proxy's routes: its own two pages, everything else to
/// [`dispatch`].
pub fn router(proxy: Proxy) -> Router {
    Router::new()
        .route("/nboost", axum::routing::get(status::page))
        .route("/nboost/status", axum::routing::get(status::json))
        .fallback(dispatch)
        .with_state(proxy)
}

/// Which of the proxy's paths a request takes.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Search,
    Msearch,
    Forward,
}

fn route(method: &Method, path: &str) -> Route {
    if method != Method::GET && method != Method::POST {
        return Route::Forward;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["_search"] | [_, "_search"] => Route::Search,
        ["_msearch"] | [_, "_msearch"] => Route::Msearch,
        _ => Route::Forward,
    }
}

async fn dispatch(State(proxy): State<Proxy>, req: Request) -> Response {
    proxy.inner.stats.request();
    let r = route(req.method(), req.uri().path());
    let answer = match r {
        Route::Search => search::search(&proxy, req).await,
        Route::Msearch => msearch::msearch(&proxy, req).await,
        Route::Forward => forward::passthrough(&proxy, req).await,
    };
    answer.unwrap_or_else(|e| {
        if e.status.is_server_error() {
            proxy.inner.stats.error();
        }
        e.into_response()
    })
}

/// The proxy's own errors, in the shape Elasticsearch clients parse
/// (`{"error": {"type", "reason"}, "status"}`).
#[derive(Debug)]
pub struct ProxyError {
    status: StatusCode,
    kind: &'static str,
    reason: String,
}

impl ProxyError {
    fn new(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            reason: reason.into(),
        }
    }

    fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "nboost_invalid_request", reason)
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {
                "type": self.kind,
                "reason": self.reason,
                "root_cause": [{"type": self.kind, "reason": self.reason}],
            },
            "status": self.status.as_u16(),
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Serve `proxy` on `listener` until `shutdown`, then drain.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Proxy,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(proxy))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_searches_are_intercepted() {
        assert_eq!(route(&Method::GET, "/_search"), Route::Search);
        assert_eq!(route(&Method::POST, "/docs/_search"), Route::Search);
        assert_eq!(route(&Method::POST, "/a,b/_msearch"), Route::Msearch);
        assert_eq!(route(&Method::GET, "/_search/scroll"), Route::Forward);
        assert_eq!(route(&Method::DELETE, "/docs/_search"), Route::Forward);
        assert_eq!(route(&Method::GET, "/docs/_doc/1"), Route::Forward);
        assert_eq!(route(&Method::POST, "/a/b/_search"), Route::Forward);
        assert_eq!(route(&Method::GET, "/_cat/indices"), Route::Forward);
    }
}
