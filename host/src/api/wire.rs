//! The wire types of the HTTP API, and the JSON body extractor.
//!
//! Two rerank dialects share one service call:
//!
//! * **Cohere / Jina** (`POST /v1/rerank`, `POST /v2/rerank`): `{model,
//!   query, documents: [string | {text}], top_n, return_documents}` →
//!   `{id, model, results: [{index, relevance_score, document?}], meta}`.
//!   Unknown fields (`max_tokens_per_doc`, `rank_fields`, `priority`, …)
//!   are accepted and ignored, so those clients work with only their base
//!   URL changed. `relevance_score` is the component's own score.
//! * **Hugging Face text-embeddings-inference** (`POST /rerank`): `{query,
//!   texts, raw_scores, return_text, truncate}` → `[{index, score, text?}]`
//!   best first. As in TEI, scores go through a sigmoid unless
//!   `raw_scores`. Components always truncate to their own token limit, so
//!   `truncate` is accepted and has no effect. TEI has no model field: the
//!   server's `--default-model` answers (an extra `model` field may name
//!   another).
//!
//! JSON bodies are read whatever their `Content-Type` (curl users forget
//! it), then parsed: a syntax error is 400, a well-formed body with missing
//! or mistyped fields is 422, a body over the cap is 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::service::ServiceError;

/// A JSON request body with this API's error mapping.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Read a whole body: 413 over the route's cap, 400 when it cannot be read.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::from(ServiceError::PayloadTooLarge(
                "the request body is over this server's size limit".into(),
            ))
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// Parse a JSON body: syntax errors are 400, shape errors 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::unprocessable(format!("invalid request: {e}"))
        }
        _ => ApiError::bad_request(format!("malformed JSON: {e}")),
    })
}

/// `POST /v1/rerank` and `/v2/rerank` (Cohere, Jina, Voyage shape).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RerankRequest {
    /// Component name. Optional when the server has a default model.
    #[serde(default)]
    pub model: Option<String>,
    /// The query.
    pub query: String,
    /// Strings, or objects with a `text` field.
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<serde_json::Value>,
    /// Keep the best N (all when absent).
    #[serde(default)]
    pub top_n: Option<usize>,
    /// Echo each document's text in the results (default false).
    #[serde(default)]
    pub return_documents: Option<bool>,
}

/// Documents as text: a string, or an object with a string `text`.
pub fn document_texts(docs: Vec<serde_json::Value>) -> Result<Vec<String>, ApiError> {
    docs.into_iter()
        .enumerate()
        .map(|(i, d)| match d {
            serde_json::Value::String(s) => Ok(s),
            serde_json::Value::Object(mut o) => match o.remove("text") {
                Some(serde_json::Value::String(s)) => Ok(s),
                _ => Err(i),
            },
            _ => Err(i),
        })
        .collect::<Result<_, usize>>()
        .map_err(|i| {
            ApiError::unprocessable(format!(
                "invalid request: documents[{i}] must be a string or an object with a string `text` field"
            ))
        })
}

/// A document echoed back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentText {
    /// Its text.
    pub text: String,
}

/// One result of [`RerankResponse`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RerankResult {
    /// Position in the request's `documents`.
    pub index: usize,
    /// The component's score; higher is more relevant.
    pub relevance_score: f32,
    /// The document, when `return_documents` was true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

/// The response of `/v1/rerank` and `/v2/rerank`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RerankResponse {
    /// A unique id for the call.
    pub id: String,
    /// The component that ranked.
    pub model: String,
    /// Best first.
    pub results: Vec<RerankResult>,
    /// API meta data, in Cohere's shape.
    #[schema(value_type = Object)]
    pub meta: serde_json::Value,
}

/// `POST /rerank` (text-embeddings-inference shape).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TeiRerankRequest {
    /// The query.
    pub query: String,
    /// The candidate texts.
    pub texts: Vec<String>,
    /// Scores as the component returns them; else through a sigmoid.
    #[serde(default)]
    pub raw_scores: bool,
    /// Echo each text.
    #[serde(default)]
    pub return_text: bool,
    /// Accepted for compatibility; components always truncate.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub truncation_direction: Option<String>,
    /// nboost extension: the component (else the server's default).
    #[serde(default)]
    pub model: Option<String>,
}

/// One element of the `/rerank` response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TeiRank {
    /// Position in `texts`.
    pub index: usize,
    /// The score.
    pub score: f32,
    /// The text, when `return_text` was true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The logistic function TEI applies when `raw_scores` is false.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// A random id in UUID v4 form.
pub fn request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        b = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_may_be_strings_or_text_objects() {
        let docs = vec![
            serde_json::json!("a"),
            serde_json::json!({"text": "b", "title": "t"}),
        ];
        assert_eq!(document_texts(docs).unwrap(), vec!["a", "b"]);
        let bad = vec![serde_json::json!("a"), serde_json::json!({"body": "b"})];
        let e = document_texts(bad).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.message.contains("documents[1]"), "{}", e.message);
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422() {
        let e = parse_json::<RerankRequest>(b"{not json").unwrap_err();
        assert_eq!(e.status, 400);
        let e = parse_json::<RerankRequest>(br#"{"documents": []}"#).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.message.contains("missing field `query`"), "{}", e.message);
    }

    #[test]
    fn ids_look_like_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, request_id());
    }
}
