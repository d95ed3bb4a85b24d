//! Errors at the HTTP edge: every failure becomes one JSON shape,
//! `{"error": "...", "error_type": "...", "detail": "..."}` (`detail`
//! repeats `error` for clients written against Jina's and FastAPI's
//! shape), with its status, mapped here and nowhere else.
//!
//! | cause | status | `error_type` |
//! |---|---|---|
//! | malformed JSON or form, bad name in the path | 400 | `bad_request` |
//! | no documents | 400 | `empty` |
//! | missing or unknown API key | 401 | `unauthorized` |
//! | changing a public component or graph | 403 | `forbidden` |
//! | unknown name (or another tenant's: same answer) | 404 | `not_found` |
//! | an alias named like a component | 409 | `conflict` |
//! | body over its cap | 413 | `payload_too_large` |
//! | invalid fields, empty query, too many documents, an upload that fails validation | 422 | `validation` |
//! | server concurrency full / tenant quota reached | 429 | `overloaded` / `quota_exceeded` |
//! | bug | 500 | `internal` |
//! | guest trap, bad output, out of memory, plugin error | 502 | `guest_fault` |
//! | model back-end, storage, broken public component | 503 | `backend` / `storage` / `unavailable` |
//! | guest deadline or instruction budget (fuel) | 504 | `timeout` |
//!
//! Client errors are not logged (they are the caller's business). For 500
//! and 503 the detail — paths, back-end messages — is logged and the body
//! says only what kind of failure it was; 502 and 504 keep their message,
//! which is about the caller's chosen component and reveals nothing of the
//! host.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::GuestError;
use crate::service::ServiceError;
use crate::store::StoreError;
use crate::RerankError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable class.
    pub error_type: &'static str,
    /// Human-readable message (what the body says).
    pub message: String,
    /// Finer label for metrics (`nboost_rerank_failures_total{kind}`).
    pub kind: &'static str,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::from(ServiceError::BadRequest(message.into()))
    }

    /// A 422 with `message`.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::from(ServiceError::Unprocessable(message.into()))
    }

    fn new(
        status: StatusCode,
        error_type: &'static str,
        message: String,
        kind: &'static str,
    ) -> Self {
        Self {
            status,
            error_type,
            message,
            kind,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let kind = e.kind();
        let msg = e.to_string();
        let (status, error_type) = match &e {
            ServiceError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ServiceError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::Overloaded => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            ServiceError::QuotaExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            ServiceError::EmptyDocuments => (StatusCode::BAD_REQUEST, "empty"),
            ServiceError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServiceError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            ServiceError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ServiceError::Store(StoreError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            ServiceError::Store(StoreError::Corrupt { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "storage_corrupt")
            }
            ServiceError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage"),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ServiceError::Rerank(r) => rerank_status(r),
        };
        Self::new(status, error_type, msg, kind)
    }
}

/// The one mapping of [`RerankError`] to HTTP.
fn rerank_status(e: &RerankError) -> (StatusCode, &'static str) {
    match e {
        RerankError::InvalidInput(_) | RerankError::Guest(GuestError::InvalidInput(_)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "validation")
        }
        RerankError::UnknownComponent(_) => (StatusCode::NOT_FOUND, "not_found"),
        RerankError::Timeout(_) | RerankError::OutOfFuel(_) => {
            (StatusCode::GATEWAY_TIMEOUT, "timeout")
        }
        RerankError::OutOfMemory(_) | RerankError::GuestFault(_) | RerankError::Guest(_) => {
            (StatusCode::BAD_GATEWAY, "guest_fault")
        }
        RerankError::Backend(_) => (StatusCode::SERVICE_UNAVAILABLE, "backend"),
        // Nobody reads this answer: the client is gone.
        RerankError::Cancelled => (StatusCode::SERVICE_UNAVAILABLE, "cancelled"),
        RerankError::Manifest(_)
        | RerankError::InvalidComponent { .. }
        | RerankError::Config { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match self.status {
            StatusCode::INTERNAL_SERVER_ERROR | StatusCode::SERVICE_UNAVAILABLE => {
                tracing::error!(
                    target: "nboost::api",
                    status = self.status.as_u16(),
                    kind = self.kind,
                    "{}",
                    self.message
                );
                match self.error_type {
                    "backend" => "the model back-end failed; see the server log".to_string(),
                    "storage" => "the server's storage failed; see the server log".to_string(),
                    // Which shared service failed, not its address or its
                    // error text (those go to the log).
                    "storage_unavailable" if self.message.contains("object store") => {
                        "the object store is unavailable or refused the operation; nothing was \
                         changed; retry later"
                            .to_string()
                    }
                    "storage_unavailable" => {
                        "the database is unavailable; nothing was changed; retry later".to_string()
                    }
                    "storage_corrupt" if self.message.contains("missing from the object store") => {
                        "a stored file this needs is missing from the object store; upload it \
                         again (other components are not affected)"
                            .to_string()
                    }
                    "storage_corrupt" => "a stored file this needs is damaged; upload it again \
                                          (other components are not affected)"
                        .to_string(),
                    "unavailable" => {
                        "this component cannot be loaded; see the server log".to_string()
                    }
                    _ => "internal server error".to_string(),
                }
            }
            s if s.is_server_error() => {
                tracing::warn!(target: "nboost::api", status = s.as_u16(), kind = self.kind, "{}", self.message);
                self.message
            }
            _ => self.message,
        };
        // `detail` repeats the message where Jina-style clients read it.
        let body = serde_json::json!({
            "error": message,
            "error_type": self.error_type,
            "detail": message,
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(FailureKind(self.kind));
        response
    }
}

/// Set on error responses so the metrics layer can count failures by kind.
#[derive(Debug, Clone, Copy)]
pub struct FailureKind(pub &'static str);
