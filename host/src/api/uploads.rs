//! The write routes of the object API (cargo feature `uploads`): `PUT`
//! (upload a new version) and `DELETE`, mounted by
//! [`objects::routes`](super::objects::routes). A lean edge build has no
//! uploads: there `PUT` and `DELETE` answer `405`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::objects::{blocking, ApiKind, UploadQuery};
use super::wire;
use super::AppState;
use crate::names::Named;
use crate::service::ServiceError;
use crate::store::Tenant;

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

pub(super) async fn put<K: ApiKind>(
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

pub(super) async fn delete<K: ApiKind>(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let service = state.service.clone();
    blocking(move || service.delete::<K>(&tenant, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}
