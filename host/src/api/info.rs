//! `GET /info`: the served model in text-embeddings-inference's shape, the
//! document `huggingface_hub`'s `get_endpoint_info()` and TEI's own
//! clients read for the model id, the input length and the batch limit.
//! The figures are the component's own (its `configure` answer and the
//! limits its calls run under), so a client that sizes its batches by them
//! is never refused. `?model=` names another component or alias.

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::AppState;
use crate::service::ServiceError;
use crate::store::Tenant;

/// The query of `/info`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InfoQuery {
    /// A component or alias (default: the server's default model).
    #[serde(default)]
    pub model: Option<String>,
}

/// TEI's `/info` document, with nboost's additions at the end.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Info {
    /// The name asked for (or the default model's).
    pub model_id: String,
    /// Not known for a component (TEI: the model's git revision).
    pub model_sha: Option<String>,
    /// The precision the component computes in.
    pub model_dtype: String,
    /// Always a reranker with one label, as TEI reports a cross-encoder.
    #[schema(value_type = Object)]
    pub model_type: serde_json::Value,
    /// Requests the server takes at once.
    pub max_concurrent_requests: usize,
    /// Tokens the model reads per input (0: not token based).
    pub max_input_length: u32,
    /// Tokens one call may carry: input length × batch size.
    pub max_batch_tokens: u64,
    /// Not limited separately.
    pub max_batch_requests: Option<usize>,
    /// Most texts one `/rerank` call may send.
    pub max_client_batch_size: usize,
    /// Long texts are truncated unless a request says `truncate: false`.
    pub auto_truncate: bool,
    /// Components tokenize inside their own sandbox: no host workers.
    pub tokenization_workers: usize,
    /// nboost's version.
    pub version: String,
    /// Not set.
    pub sha: Option<String>,
    /// Not set.
    pub docker_label: Option<String>,
    /// nboost: the component the name resolves to.
    pub component: String,
    /// nboost: the aliases that name it.
    pub aliases: Vec<String>,
    /// nboost: the component's own description.
    pub description: String,
}

pub(super) async fn info(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    query: Result<Query<InfoQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Info>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let model = query
        .model
        .filter(|m| !m.is_empty())
        .or_else(|| state.config.default_model.clone())
        .ok_or_else(|| {
            ApiError::unprocessable("this server has no default model: ask `/info?model=NAME`")
        })?;
    let service = state.service.clone();
    let name = model.clone();
    let d = tokio::task::spawn_blocking(move || service.describe(&tenant, &name))
        .await
        .map_err(|e| ApiError::from(ServiceError::Internal(format!("task failed: {e}"))))??;
    let batch = d
        .limits
        .max_passages
        .min(state.service.options().max_documents);
    Ok(Json(Info {
        model_id: model,
        model_sha: None,
        model_dtype: "float32".into(),
        model_type: serde_json::json!({
            "reranker": { "id2label": { "0": "LABEL_0" }, "label2id": { "LABEL_0": 0 } }
        }),
        max_concurrent_requests: state.service.options().max_concurrent_requests,
        max_input_length: d.info.max_tokens,
        max_batch_tokens: u64::from(d.info.max_tokens) * batch as u64,
        max_batch_requests: None,
        max_client_batch_size: batch,
        auto_truncate: true,
        tokenization_workers: 0,
        version: env!("CARGO_PKG_VERSION").into(),
        sha: None,
        docker_label: None,
        component: d.component,
        aliases: d.aliases,
        description: d.info.description,
    }))
}
