//! The wire types of the HTTP API, and the JSON body extractor.
//!
//! Two rerank dialects share one service call:
//!
//! * **Cohere / Jina** (`POST /v1/rerank`, `POST /v2/rerank`): `{model,
//!   query, documents: [string | object], top_n, return_documents,
//!   rank_fields, max_tokens_per_doc, max_chunks_per_doc}` → `{id, model,
//!   results: [{index, relevance_score, document?, chunks?}], meta}`.
//!   Every field is implemented (truncation and chunking in
//!   `service::passages`); unknown fields are refused, never ignored.
//!   `relevance_score` is the component's own score.
//! * **Hugging Face text-embeddings-inference** (`POST /rerank`): `{query,
//!   texts, raw_scores, return_text, truncate, truncation_direction}` →
//!   `[{index, score, text?}]` best first. As in TEI, scores go through a
//!   sigmoid unless `raw_scores`; `truncate: false` refuses texts longer
//!   than the model reads; `truncation_direction: Left` keeps a long text's
//!   end. TEI has no model field: the server's `--default-model` answers
//!   (an extra `model` field may name another).
//!
//! JSON bodies are read whatever their `Content-Type` (curl users forget
//! it), then parsed: a syntax error is 400, a well-formed body with missing
//! or mistyped fields is 422, a body over the cap is 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::service::{Fusion, Keep, ServiceError, Shaping};

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

/// The largest count a request may give (`i32::MAX`, as the schema says).
const MAX_COUNT: u64 = i32::MAX as u64;

/// A count: a JSON integer, or a float with no fraction (`41759.0` is an
/// integer to JSON Schema), from 0 to [`MAX_COUNT`]; `null` is absent.
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let value = match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => Some(u),
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= MAX_COUNT as f64 => Some(f as u64),
        _ => None,
    };
    match value {
        Some(v) if v <= MAX_COUNT => Ok(Some(v as usize)),
        _ => Err(D::Error::custom(format!(
            "invalid value: {n}, expected an integer from 0 to {MAX_COUNT}"
        ))),
    }
}

/// `documents`: at least one, each a string or a non-empty object.
fn documents_schema() -> utoipa::openapi::schema::ArrayBuilder {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let item = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .min_properties(Some(1)),
        );
    ArrayBuilder::new().items(item).min_items(Some(1))
}

/// `POST /v1/rerank` and `/v2/rerank` (Cohere v1/v2, Jina shape). Every
/// field is implemented; any other is refused (422).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    /// Component name or alias. Optional when the server has a default
    /// model.
    #[serde(default)]
    pub model: Option<String>,
    /// The query (not blank).
    #[schema(min_length = 1, pattern = "\\S")]
    pub query: String,
    /// Strings, or objects: ranked on their `text` field, or on the fields
    /// `rank_fields` names, or else on all their fields.
    #[schema(schema_with = documents_schema)]
    pub documents: Vec<serde_json::Value>,
    /// Keep the best N (all when absent).
    #[serde(default, deserialize_with = "count")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub top_n: Option<usize>,
    /// Echo each document in the results (default false).
    #[serde(default)]
    pub return_documents: Option<bool>,
    /// Object documents are ranked on these fields, in this order, as
    /// `field: value` lines (default: `text` when it has one, else all).
    #[serde(default)]
    #[schema(min_items = 1)]
    pub rank_fields: Option<Vec<String>>,
    /// Cohere v2: truncate each document to this many tokens (counted as
    /// pre-tokens, see the docs of `service::passages`).
    #[serde(default, deserialize_with = "count")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub max_tokens_per_doc: Option<usize>,
    /// Cohere v1: split long documents into up to this many chunks of the
    /// component's window; a document scores as its best chunk, and each
    /// result says how many chunks its document had.
    #[serde(default, deserialize_with = "count")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub max_chunks_per_doc: Option<usize>,
    /// nboost extension: the first stage's score of each document (BM25's,
    /// ...), in `documents` order; the ranking then fuses them with the
    /// component's scores.
    #[serde(default)]
    pub first_stage_scores: Option<Vec<f32>>,
    /// nboost extension: how to fuse (default: the component's, else a
    /// z-score linear mix with the model's weight 0.8).
    #[serde(default)]
    pub fusion: Option<Fusion>,
}

impl RerankRequest {
    /// The truncation and chunking this request asks for.
    pub fn shaping(&self) -> Result<Shaping, ApiError> {
        for (field, v) in [
            ("max_tokens_per_doc", self.max_tokens_per_doc),
            ("max_chunks_per_doc", self.max_chunks_per_doc),
        ] {
            if v == Some(0) {
                return Err(ApiError::unprocessable(format!(
                    "invalid request: `{field}` must be at least 1"
                )));
            }
        }
        Ok(Shaping {
            max_tokens: self.max_tokens_per_doc,
            max_chunks: self.max_chunks_per_doc,
            ..Shaping::default()
        })
    }
}

/// Documents as text. A string is itself. An object with `rank_fields` is
/// those fields as `field: value` lines, in that order (fields it lacks are
/// skipped: an object with none of them ranks as empty text); without, its
/// `text` when that is a string, else all its fields as lines. An empty
/// object, or anything else, is refused.
pub fn document_texts(
    docs: &[serde_json::Value],
    rank_fields: Option<&[String]>,
) -> Result<Vec<String>, ApiError> {
    if rank_fields.is_some_and(|f| f.is_empty()) {
        return Err(ApiError::unprocessable(
            "invalid request: `rank_fields` is empty",
        ));
    }
    let line = |f: &str, v: &serde_json::Value| match v {
        serde_json::Value::String(s) => format!("{f}: {s}"),
        other => format!("{f}: {other}"),
    };
    docs.iter()
        .enumerate()
        .map(|(i, d)| match (d, rank_fields) {
            (serde_json::Value::String(s), _) => Ok(s.clone()),
            (serde_json::Value::Object(o), _) if o.is_empty() => {
                Err(format!("documents[{i}] is an empty object"))
            }
            (serde_json::Value::Object(o), Some(fields)) => Ok(fields
                .iter()
                .filter_map(|f| o.get(f).map(|v| line(f, v)))
                .collect::<Vec<_>>()
                .join("\n")),
            (serde_json::Value::Object(o), None) => match o.get("text") {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                _ => Ok(o
                    .iter()
                    .map(|(f, v)| line(f, v))
                    .collect::<Vec<_>>()
                    .join("\n")),
            },
            _ => Err(format!("documents[{i}] must be a string or an object")),
        })
        .collect::<Result<_, String>>()
        .map_err(|m| ApiError::unprocessable(format!("invalid request: {m}")))
}

/// One result of [`RerankResponse`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RerankResult {
    /// Position in the request's `documents`.
    pub index: usize,
    /// The component's score; higher is more relevant.
    pub relevance_score: f32,
    /// The document, when `return_documents` was true: `{text}` for a
    /// string, the object itself for an object.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub document: Option<serde_json::Value>,
    /// How many chunks its document was scored as (with
    /// `max_chunks_per_doc` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<usize>,
    /// The component's own score, when `relevance_score` is fused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_score: Option<f32>,
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

/// Which end TEI's truncation cuts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
pub enum TruncationDirection {
    /// Keep the end.
    Left,
    /// Keep the beginning (the default).
    #[default]
    Right,
}

/// `POST /rerank` (text-embeddings-inference shape). Every field is
/// implemented; any other is refused (422).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeiRerankRequest {
    /// The query (not blank).
    #[schema(min_length = 1, pattern = "\\S")]
    pub query: String,
    /// The candidate texts (at most the component's `max_client_batch_size`
    /// of `/info`).
    #[schema(min_items = 1)]
    pub texts: Vec<String>,
    /// Scores as the component returns them; else through a sigmoid.
    #[serde(default)]
    pub raw_scores: bool,
    /// Echo each text.
    #[serde(default)]
    pub return_text: bool,
    /// Truncate texts longer than the model reads (the default: this
    /// server auto-truncates); `false` refuses them with 422.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// `Right` keeps the beginning of a long text (the default), `Left` its
    /// end.
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// nboost extension: the component or alias (else the server's
    /// default).
    #[serde(default)]
    pub model: Option<String>,
    /// nboost extension: the first stage's score of each text, to fuse.
    #[serde(default)]
    pub first_stage_scores: Option<Vec<f32>>,
    /// nboost extension: how to fuse (as on `/v1/rerank`).
    #[serde(default)]
    pub fusion: Option<Fusion>,
}

impl TeiRerankRequest {
    /// The truncation this request asks for.
    pub fn shaping(&self) -> Shaping {
        Shaping {
            keep: match self.truncation_direction {
                TruncationDirection::Left => Keep::End,
                TruncationDirection::Right => Keep::Start,
            },
            refuse_longer: self.truncate == Some(false),
            ..Shaping::default()
        }
    }
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
    /// The component's own score, when `score` is fused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_score: Option<f32>,
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
        assert_eq!(document_texts(&docs, None).unwrap(), vec!["a", "b"]);
        // Without `text`: every field, as lines.
        let fields = vec![serde_json::json!({"body": "b", "n": 2})];
        assert_eq!(
            document_texts(&fields, None).unwrap(),
            vec!["body: b\nn: 2"]
        );
        let bad = vec![serde_json::json!("a"), serde_json::json!({})];
        let e = document_texts(&bad, None).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(
            e.message.contains("documents[1] is an empty object"),
            "{}",
            e.message
        );
        let e = document_texts(&[serde_json::json!(3)], None).unwrap_err();
        assert!(e.message.contains("documents[0] must be"), "{}", e.message);
    }

    #[test]
    fn rank_fields_pick_and_order_fields() {
        let docs = vec![
            serde_json::json!({"title": "capital", "text": "x", "year": 1990}),
            serde_json::json!("capital y"),
            serde_json::json!({"body": "b"}),
        ];
        let fields = ["year".to_string(), "title".to_string()];
        let texts = document_texts(&docs, Some(&fields)).unwrap();
        assert_eq!(texts, vec!["year: 1990\ntitle: capital", "capital y", ""]);
    }

    #[test]
    fn counts_take_integral_floats_and_null() {
        let r: RerankRequest =
            parse_json(br#"{"query":"q","documents":["a"],"top_n":3.0,"max_tokens_per_doc":null}"#)
                .unwrap();
        assert_eq!((r.top_n, r.max_tokens_per_doc), (Some(3), None));
        for bad in ["2.5", "-1", "2147483648", "1e300"] {
            let body = format!(r#"{{"query":"q","documents":["a"],"top_n":{bad}}}"#);
            let e = parse_json::<RerankRequest>(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, 422, "{bad}");
        }
        let e = parse_json::<RerankRequest>(br#"{"query":"q","documents":["a"],"priority":1}"#)
            .unwrap_err();
        assert!(
            e.message.contains("unknown field `priority`"),
            "{}",
            e.message
        );
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
