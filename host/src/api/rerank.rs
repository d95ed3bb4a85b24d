//! The rerank routes: `POST /v1/rerank`, `/v2/rerank` (Cohere, Jina) and
//! `/rerank` (text-embeddings-inference). Each request is one call of
//! [`Service::rerank_with`](crate::service::Service::rerank_with): the key
//! is authenticated and the body parsed on its blocking job.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::wire::{self, RerankRequest, RerankResponse, RerankResult, TeiRank, TeiRerankRequest};
use super::{bearer, AppState};
use crate::service::{Caller, RerankJob, ServiceError, Timing};

fn model_of(state: &AppState, model: Option<String>) -> Result<String, ApiError> {
    model
        .filter(|m| !m.is_empty())
        .or_else(|| state.config.default_model.clone())
        .ok_or_else(|| {
            ApiError::unprocessable(
                "invalid request: missing field `model` (this server has no default model)",
            )
        })
}

/// `Server-Timing` of a rerank: queue, instantiate and guest, in ms.
fn timing_header(t: &Timing) -> (header::HeaderName, HeaderValue) {
    let v = format!(
        "queue;dur={:.3}, instantiate;dur={:.3}, guest;dur={:.3}",
        t.queue.as_secs_f64() * 1e3,
        t.instantiate.as_secs_f64() * 1e3,
        t.guest.as_secs_f64() * 1e3
    );
    (
        header::HeaderName::from_static("server-timing"),
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("")),
    )
}

fn observe(state: &AppState, t: &Timing) {
    state.metrics.queue.observe(t.queue.as_secs_f64());
    state
        .metrics
        .instantiate
        .observe(t.instantiate.as_secs_f64());
    state.metrics.guest.observe(t.guest.as_secs_f64());
}

/// A request body, read whole (413 over the route's cap), parsed later.
pub(super) struct RawBody(Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        wire::read_body(req, state).await.map(RawBody)
    }
}

/// The caller's API key (`Authorization: Bearer KEY`); 401 without one.
pub(super) struct BearerKey(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for BearerKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        bearer(&parts.headers)
            .map(|k| BearerKey(k.to_owned()))
            .ok_or_else(|| ApiError::from(ServiceError::Unauthorized))
    }
}

pub(super) async fn rerank_cohere(
    State(state): State<AppState>,
    BearerKey(key): BearerKey,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let st = state.clone();
    let (out, (model, echo, chunked)) = state
        .service
        .rerank_with(Caller::Key(key), move || {
            let req: RerankRequest = wire::parse_json(&body)?;
            let shaping = req.shaping()?;
            let documents = wire::document_texts(&req.documents, req.rank_fields.as_deref())?;
            let model = model_of(&st, req.model)?;
            let job = RerankJob {
                model: model.clone(),
                query: req.query,
                documents,
                top_n: req.top_n,
                shaping,
                first_stage: req.first_stage_scores,
                fusion: req.fusion,
            };
            // The documents as sent, for `return_documents`.
            let echo = req
                .return_documents
                .unwrap_or(false)
                .then_some(req.documents);
            Ok::<_, ApiError>((job, (model, echo, shaping.max_chunks.is_some())))
        })
        .await?;
    observe(&state, &out.timing);
    let results = out
        .ranking
        .iter()
        .map(|r| RerankResult {
            index: r.index,
            relevance_score: r.score,
            document: echo.as_ref().map(|docs| match &docs[r.index] {
                serde_json::Value::String(s) => serde_json::json!({ "text": s }),
                other => other.clone(),
            }),
            chunks: chunked.then(|| out.chunks[r.index]),
            model_score: out.fused.as_ref().map(|(_, m)| m[r.index]),
        })
        .collect();
    let passages: usize = out.chunks.iter().sum();
    let mut meta = serde_json::json!({
        "api_version": { "version": "2" },
        // Cohere bills a search unit per 100 documents (chunks count).
        "billed_units": { "search_units": passages.div_ceil(100).max(1) },
    });
    if let Some((fusion, _)) = &out.fused {
        meta["fusion"] = serde_json::json!(fusion);
    }
    let body = RerankResponse {
        id: wire::request_id(),
        model,
        results,
        meta,
    };
    Ok(([timing_header(&out.timing)], Json(body)).into_response())
}

pub(super) async fn rerank_tei(
    State(state): State<AppState>,
    BearerKey(key): BearerKey,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let st = state.clone();
    let (out, (raw_scores, return_text)) = state
        .service
        .rerank_with(Caller::Key(key), move || {
            let req: TeiRerankRequest = wire::parse_json(&body)?;
            let shaping = req.shaping();
            let job = RerankJob {
                model: model_of(&st, req.model)?,
                query: req.query,
                documents: req.texts,
                top_n: None,
                shaping,
                first_stage: req.first_stage_scores,
                fusion: req.fusion,
            };
            Ok::<_, ApiError>((job, (req.raw_scores, req.return_text)))
        })
        .await?;
    observe(&state, &out.timing);
    let ranks: Vec<TeiRank> = out
        .ranking
        .iter()
        .map(|r| TeiRank {
            index: r.index,
            // A fused score is a rank or mix score, not a logit: it is
            // reported as it is, the model's own as TEI would.
            score: if raw_scores || out.fused.is_some() {
                r.score
            } else {
                wire::sigmoid(r.score)
            },
            text: return_text.then(|| out.documents[r.index].clone()),
            model_score: out.fused.as_ref().map(|(_, m)| {
                if raw_scores {
                    m[r.index]
                } else {
                    wire::sigmoid(m[r.index])
                }
            }),
        })
        .collect();
    Ok(([timing_header(&out.timing)], Json(ranks)).into_response())
}
