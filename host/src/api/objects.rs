//! Upload routes, one generic set mounted per kind of object
//! ([`Kind`]): `GET /v1/{kind}`, `PUT|GET|DELETE /v1/{kind}/{name}`.
//!
//! Uploads are `PUT` with either a `multipart/form-data` body — a `file`
//! part (the bytes) and an optional `config` part (JSON: the kind's
//! configuration) — or the raw bytes alone (for graphs, `?format=text`
//! then picks the format; for aliases the body is `{"component": "NAME"}`).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};

use super::error::ApiError;
use super::AppState;
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
    pub(super) format: Option<GraphFormat>,
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
    let one = get(read::<K>);
    #[cfg(feature = "uploads")]
    let one = one
        .put(super::uploads::put::<K>)
        .delete(super::uploads::delete::<K>);
    Router::new()
        .route(base, get(list::<K>))
        .route(&format!("{base}/{{name}}"), one)
}

/// Run blocking service work (SQLite, file hashing) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::from(ServiceError::Internal(format!("task failed: {e}"))))?
        .map_err(ApiError::from)
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
