//! Upload routes, one generic set mounted per kind of object
//! ([`Kind`]): `GET /v1/{kind}`, `PUT|GET|DELETE /v1/{kind}/{name}`.
//!
//! Uploads are `PUT` with either a `multipart/form-data` body — a `file`
//! part (the bytes) and an optional `config` part (JSON: the kind's
//! configuration) — or the raw bytes alone (for graphs, `?format=text`
//! then picks the format; for aliases the body is `{"component": "NAME"}`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::wire;
use super::AppState;
use crate::names::Named;
use crate::service::{Aliases, Components, GraphFormat, Graphs, Kind, ServiceError};
use crate::store::Tenant;

/// What the HTTP layer adds to a [`Kind`]: how the query string of an
/// upload refines its configuration.
pub trait ApiKind: Kind {
    /// Apply `?format=` (refused where it means nothing: all but graphs).
    fn apply_query(_config: &mut Self::Config, query: UploadQuery) -> Result<(), ApiError> {
        match query.format {
            None => Ok(()),
            Some(_) => Err(ApiError::bad_request(
                "`format` applies to graph uploads only",
            )),
        }
    }
}

/// The query string an upload may carry.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// A graph's format (raw-body uploads).
    #[serde(default)]
    format: Option<GraphFormat>,
}

impl ApiKind for Components {}

impl ApiKind for Aliases {}

impl ApiKind for Graphs {
    fn apply_query(config: &mut Self::Config, query: UploadQuery) -> Result<(), ApiError> {
        if let Some(format) = query.format {
            config.format = format;
        }
        Ok(())
    }
}

/// The routes of kind `K` under `base` (`/v1/components`).
pub fn routes<K: ApiKind>(base: &str) -> Router<AppState> {
    Router::new().route(base, get(list::<K>)).route(
        &format!("{base}/{{name}}"),
        get(read::<K>).put(put::<K>).delete(delete::<K>),
    )
}

/// An upload body: the bytes and the parsed `config` part (if any).
struct Upload<C> {
    bytes: Bytes,
    config: Option<C>,
}

fn body_error(status: StatusCode, e: impl std::fmt::Display) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::from(ServiceError::PayloadTooLarge(
            "the upload is over this server's size limit".into(),
        ))
    } else {
        ApiError::bad_request(format!("cannot read the upload: {e}"))
    }
}

async fn read_upload<C: DeserializeOwned>(
    state: &AppState,
    req: Request,
) -> Result<Upload<C>, ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !multipart {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_error(e.status(), e))?;
        return Ok(Upload {
            bytes,
            config: None,
        });
    }
    let mut form = Multipart::from_request(req, state)
        .await
        .map_err(|e| body_error(e.status(), e))?;
    let mut bytes = None;
    let mut config = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| body_error(e.status(), e))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let data = field.bytes().await.map_err(|e| body_error(e.status(), e))?;
        match name.as_str() {
            "file" => bytes = Some(data),
            "config" => config = Some(wire::parse_json::<C>(&data)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form part `{other}` (expected `file` and optionally `config`)"
                )));
            }
        }
    }
    let bytes = bytes.ok_or_else(|| ApiError::bad_request("the form has no `file` part"))?;
    Ok(Upload { bytes, config })
}

/// Run blocking service work (SQLite, file hashing) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::from(ServiceError::Internal(format!("task failed: {e}"))))?
        .map_err(ApiError::from)
}

async fn put<K: ApiKind>(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(name): Path<String>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let upload = read_upload::<K::Config>(&state, req).await?;
    let mut config = upload.config.unwrap_or_default();
    K::apply_query(&mut config, query)?;
    let result = state
        .service
        .put::<K>(&tenant, &name, upload.bytes, config)
        .await;
    let outcome = if result.is_ok() {
        "accepted"
    } else {
        "refused"
    };
    state
        .metrics
        .uploads
        .with_label_values(&[K::Tag::NOUN, outcome])
        .inc();
    let info = result?;
    let status = if K::version(&info) == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info)).into_response())
}

async fn list<K: ApiKind>(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = state.service.clone();
    let list = blocking(move || service.list::<K>(&tenant)).await?;
    Ok(Json(serde_json::json!({ K::PLURAL: list })))
}

async fn read<K: ApiKind>(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let service = state.service.clone();
    let info = blocking(move || service.get::<K>(&tenant, &name)).await?;
    Ok(Json(info).into_response())
}

async fn delete<K: ApiKind>(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let service = state.service.clone();
    blocking(move || service.delete::<K>(&tenant, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}
