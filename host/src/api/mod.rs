//! The HTTP front end of `nboost serve` (axum), and the only module that
//! knows about HTTP.
//!
//! [`router`] builds the whole API over an [`AppState`]; [`serve`] runs it
//! on a listener until a shutdown signal, then drains the requests in
//! flight. Handlers are thin: they parse, authenticate (middleware), call
//! [`Service`](crate::service::Service) and render; every error
//! goes through [`error::ApiError`], so the status mapping exists once.
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | liveness (no key) |
//! | `GET /ready` | readiness: 503 while draining or the shared database is unreachable (no key) |
//! | `GET /openapi.json`, `GET /docs` | the OpenAPI 3.1 document and a Swagger UI page over it (no key; bundled, contacts nothing else) |
//! | `GET /info` | the default (or `?model=`) component in TEI's `/info` shape |
//! | `POST /v1/rerank`, `POST /v2/rerank` | Cohere / Jina rerank ([`api`]) |
//! | `POST /rerank` | text-embeddings-inference rerank |
//! | `GET /v1/components` | the tenant's components, then public ones |
//! | `PUT/GET/DELETE /v1/components/{name}` | upload (new version), read, delete |
//! | `GET /v1/graphs`, `PUT/GET/DELETE /v1/graphs/{name}` | the same for graphs (model files) |
//! | `GET /v1/aliases`, `PUT/GET/DELETE /v1/aliases/{name}` | the same for aliases (`{"component": NAME}`) |
//! | `GET /metrics` | Prometheus text format |
//!
//! Uploads are `PUT` with either a `multipart/form-data` body — a `file`
//! part (the bytes) and an optional `config` part (JSON:
//! [`ComponentConfig`](crate::service::ComponentConfig) or
//! [`GraphConfig`](crate::service::GraphConfig)) — or the raw bytes alone
//! (for graphs, `?format=text` then picks the format). Bodies are capped
//! per route (`413` beyond).

pub mod error;
pub mod info;
pub mod metrics;
pub mod objects;
pub mod openapi;
mod rerank;
#[cfg(feature = "uploads")]
mod uploads;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use tracing::Instrument;

use crate::sandbox::validate::DEFAULT_MAX_COMPONENT_BYTES;
use crate::service::{Aliases, Components, Graphs, Service, ServiceError};
use error::{ApiError, FailureKind};
use metrics::Metrics;

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Cap on a rerank request body. Default 16 MiB.
    pub max_request_bytes: usize,
    /// Cap on a graph upload body. Default 512 MiB. (Component uploads are
    /// capped at the component size limit, 64 MiB, plus 1 MiB.)
    pub max_upload_bytes: usize,
    /// The component a request without `model` uses (TEI has no model
    /// field). None: such requests get 422.
    pub default_model: Option<String>,
    /// An edge node: it serves the signed bundles it started with, and
    /// refuses every upload and delete (`403`).
    pub read_only: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 << 20,
            max_upload_bytes: 512 << 20,
            default_model: None,
            read_only: false,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The service.
    pub service: Arc<Service>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// HTTP settings.
    pub config: Arc<ServerConfig>,
    /// Set when shutdown began: `/ready` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    /// State over `service` with fresh metrics.
    pub fn new(service: Service, config: ServerConfig) -> Self {
        Self {
            service: Arc::new(service),
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(config),
            draining: Arc::default(),
        }
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let rerank = Router::new()
        .route("/v1/rerank", post(rerank::rerank_cohere))
        .route("/v2/rerank", post(rerank::rerank_cohere))
        .route("/rerank", post(rerank::rerank_tei))
        .layer(DefaultBodyLimit::max(state.config.max_request_bytes));
    let components = objects::routes::<Components>("/v1/components").layer(DefaultBodyLimit::max(
        DEFAULT_MAX_COMPONENT_BYTES + (1 << 20),
    ));
    let graphs = objects::routes::<Graphs>("/v1/graphs")
        .layer(DefaultBodyLimit::max(state.config.max_upload_bytes));
    let aliases = objects::routes::<Aliases>("/v1/aliases").layer(DefaultBodyLimit::max(64 << 10));
    let objects = Router::new()
        .merge(components)
        .merge(graphs)
        .merge(aliases)
        .route_layer(middleware::from_fn_with_state(state.clone(), writable));
    let authenticated = Router::new()
        .merge(objects)
        .route("/info", get(info::info))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // The API's description is public, as TEI's is: a docs page (Swagger
    // UI, bundled) over the one generated document.
    // `validator_url("none")`: Swagger UI would otherwise send the
    // document to swagger.io's online validator.
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs")
        .config(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none"));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .merge(docs)
        // Reranks authenticate on their one blocking job (`Service::rerank`).
        .merge(rerank)
        .merge(authenticated)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// A router with only `GET /metrics`, unauthenticated, for a separate
/// (operator-only) listener.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Serve `router(state)` on `listener` until `shutdown` resolves; then stop
/// accepting and wait for the requests in flight to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = state.draining.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.store(true, std::sync::atomic::Ordering::SeqCst);
        })
        .await
}

// ---- middleware -----------------------------------------------------------

/// The key of `Authorization: Bearer <key>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(key) = bearer(req.headers()).map(str::to_owned) else {
        return ApiError::from(ServiceError::Unauthorized).into_response();
    };
    // The store is SQLite (blocking): never on an async worker thread.
    let service = state.service.clone();
    let span = tracing::debug_span!("auth");
    let found = tokio::task::spawn_blocking(move || span.in_scope(|| service.authenticate(&key)))
        .await
        .unwrap_or_else(|e| {
            Err(ServiceError::Internal(format!(
                "authentication failed: {e}"
            )))
        });
    match found {
        Ok(tenant) => {
            req.extensions_mut().insert(tenant);
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Refuse changes on an edge node (after authentication: a caller without
/// a key learns that first).
async fn writable(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let changes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if state.config.read_only && changes {
        // Read and drop the body first (never holding it): a client still
        // sending would see a reset connection instead of the answer.
        use futures_util::StreamExt;
        let cap = DEFAULT_MAX_COMPONENT_BYTES.max(state.config.max_upload_bytes);
        let mut body = req.into_body().into_data_stream();
        let mut seen = 0;
        while let Some(Ok(chunk)) = body.next().await {
            seen += chunk.len();
            if seen > cap {
                break;
            }
        }
        return ApiError::from(ServiceError::Forbidden(
            "this is an edge node: it serves the signed bundles it started with, and \
             refuses uploads and deletes"
                .into(),
        ))
        .into_response();
    }
    next.run(req).await
}

/// The header carrying a request's id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// The caller's `x-request-id` when it is short and plain, else a fresh
/// random one: it tags the request's log lines and its response.
fn request_id(headers: &HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    match given {
        Some(s) => s.to_owned(),
        None => {
            // A random prefix per process, a counter per request: unique,
            // unguessable across restarts, and no syscall per request.
            static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let prefix = *PREFIX.get_or_init(|| {
                let mut b = [0u8; 4];
                let _ = getrandom::fill(&mut b);
                u32::from_le_bytes(b)
            });
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{prefix:08x}{n:08x}")
        }
    }
}

/// Count and time every request by route template (never the raw path:
/// names in paths are unbounded), in a span carrying its request id.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    let id = request_id(req.headers());
    let span = tracing::info_span!("request", id = %id, %method, %route);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let m = &state.metrics;
    m.http_requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    if route.ends_with("rerank") {
        let api = if route == "/rerank" { "tei" } else { "cohere" };
        m.reranks.with_label_values(&[api]).inc();
        if let Some(FailureKind(kind)) = response.extensions().get::<FailureKind>() {
            m.failures.with_label_values(&[kind]).inc();
        }
    }
    response
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error_type: "not_found",
        message: "no such route".into(),
        kind: "not_found",
    }
}

async fn method_not_allowed() -> Response {
    let message = "this method is not allowed on this path";
    let body = serde_json::json!({
        "error": message,
        "error_type": "method_not_allowed",
        "detail": message,
    });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

// ---- plain routes -----------------------------------------------------------

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: 503 while draining or while the shared database has not
/// answered lately (a load balancer then sends requests elsewhere).
async fn ready(State(state): State<AppState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        let body = serde_json::json!({ "status": "draining" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    match state.service.ready() {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(reason) => {
            let body = serde_json::json!({ "status": "unavailable", "reason": reason });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(state.service.gauges());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
        .into_response()
}
