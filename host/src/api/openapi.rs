//! The OpenAPI 3.1 document served at `/openapi.json`, generated with
//! `utoipa` from the wire and domain types (their doc comments are the
//! schema descriptions), so it cannot drift from what the server accepts
//! and answers. Routes are declared here, one per method and path; the
//! handlers themselves are generic over the object kind, so they carry no
//! annotations. A test checks that every route the router serves is here.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::wire::{
    DocumentText, RerankRequest, RerankResponse, RerankResult, TeiRank, TeiRerankRequest,
};
use crate::service::{
    ComponentConfig, ComponentInfo, GraphConfig, GraphFormat, GraphInfo, Owner, UploadLimits,
};

/// Every error body: a message and a stable type.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "a schema only")]
pub struct ErrorBody {
    /// What went wrong, for a person.
    error: String,
    /// A stable label (`validation`, `unauthorized`, `not_found`, ...).
    error_type: String,
}

/// The multipart form of an upload: the file and an optional `config` part.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "a schema only")]
pub struct UploadForm {
    /// The file's bytes.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The kind's configuration, as JSON (`ComponentConfig` or `GraphConfig`).
    #[schema(value_type = Option<Object>)]
    config: Option<String>,
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nboost",
        description = "Multi-tenant reranking with sandboxed WebAssembly components. Every route but \
                       /health needs `Authorization: Bearer <key>`. Errors are `{error, error_type}`."
    ),
    security(("bearer" = [])),
    modifiers(&Bearer),
    paths(
        health, rerank_v1, rerank_v2, rerank_tei, list_components, get_component,
        put_component, delete_component, list_graphs, get_graph, put_graph, delete_graph,
        metrics, openapi_json
    ),
    components(schemas(
        ErrorBody, UploadForm, RerankRequest, RerankResponse, RerankResult, DocumentText,
        TeiRerankRequest, TeiRank, ComponentConfig, UploadLimits, GraphConfig, GraphFormat,
        ComponentInfo, GraphInfo, Owner
    ))
)]
struct ApiDoc;

/// The document, rendered once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serialises")
    })
}

/// Liveness; the only route without a key.
#[utoipa::path(get, path = "/health", security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
#[allow(dead_code, reason = "documentation only")]
fn health() {}

/// Rerank documents for a query (Cohere v1 / Jina shape).
#[utoipa::path(post, path = "/v1/rerank", request_body = RerankRequest, tag = "rerank",
    responses(
        (status = 200, description = "Ranked documents, best first", body = RerankResponse),
        (status = 400, description = "Malformed JSON, or no documents (`empty`)", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Unknown component", body = ErrorBody),
        (status = 413, description = "Body over its size cap", body = ErrorBody),
        (status = 422, description = "Invalid fields, empty query, too many documents", body = ErrorBody),
        (status = 429, description = "Server or tenant concurrency limit reached", body = ErrorBody),
        (status = 502, description = "The plugin faulted or ran out of memory", body = ErrorBody),
        (status = 503, description = "Back-end or component unavailable", body = ErrorBody),
        (status = 504, description = "The plugin ran past its deadline", body = ErrorBody),
    ))]
#[allow(dead_code, reason = "documentation only")]
fn rerank_v1() {}

/// Rerank documents for a query (Cohere v2 shape; same body as v1).
#[utoipa::path(post, path = "/v2/rerank", request_body = RerankRequest, tag = "rerank",
    responses(
        (status = 200, description = "Ranked documents, best first", body = RerankResponse),
        (status = 400, description = "Malformed JSON, or no documents (`empty`)", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Unknown component", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
        (status = 429, description = "Concurrency limit reached", body = ErrorBody),
        (status = 504, description = "The plugin ran past its deadline", body = ErrorBody),
    ))]
#[allow(dead_code, reason = "documentation only")]
fn rerank_v2() {}

/// Rerank texts for a query (text-embeddings-inference shape).
#[utoipa::path(post, path = "/rerank", request_body = TeiRerankRequest, tag = "rerank",
    responses(
        (status = 200, description = "Ranks, best first", body = Vec<TeiRank>),
        (status = 400, description = "Malformed JSON, or no texts (`empty`)", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Unknown component", body = ErrorBody),
        (status = 422, description = "Invalid fields, or no model and no default", body = ErrorBody),
        (status = 504, description = "The plugin ran past its deadline", body = ErrorBody),
    ))]
#[allow(dead_code, reason = "documentation only")]
fn rerank_tei() {}

/// The tenant's own components, then the public ones it does not shadow.
#[utoipa::path(get, path = "/v1/components", tag = "components",
    responses((status = 200, description = "`{\"components\": [...]}`", body = Object),
              (status = 401, description = "Missing or unknown API key", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn list_components() {}

/// One component in the tenant's view.
#[utoipa::path(get, path = "/v1/components/{name}", tag = "components",
    params(("name" = String, Path, description = "Component name")),
    responses((status = 200, description = "The component", body = ComponentInfo),
              (status = 404, description = "No such component for this tenant", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn get_component() {}

/// Upload a component (a new version if the name exists): validated,
/// compiled (in a limited subprocess), linked and configured once before
/// it is accepted. In-flight calls finish on the old version.
#[utoipa::path(put, path = "/v1/components/{name}", tag = "components",
    params(("name" = String, Path, description = "Component name")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "First version", body = ComponentInfo),
        (status = 200, description = "New version", body = ComponentInfo),
        (status = 400, description = "Malformed form or bad name", body = ErrorBody),
        (status = 403, description = "A public component's name", body = ErrorBody),
        (status = 413, description = "Body over its size cap", body = ErrorBody),
        (status = 422, description = "Fails validation, compilation, or its trial configure", body = ErrorBody),
        (status = 429, description = "Quota exceeded", body = ErrorBody),
    ))]
#[allow(dead_code, reason = "documentation only")]
fn put_component() {}

/// Delete the tenant's own component.
#[utoipa::path(delete, path = "/v1/components/{name}", tag = "components",
    params(("name" = String, Path, description = "Component name")),
    responses((status = 204, description = "Deleted"),
              (status = 403, description = "A public component", body = ErrorBody),
              (status = 404, description = "Not the tenant's", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn delete_component() {}

/// The tenant's own graphs, then the public ones.
#[utoipa::path(get, path = "/v1/graphs", tag = "graphs",
    responses((status = 200, description = "`{\"graphs\": [...]}`", body = Object),
              (status = 401, description = "Missing or unknown API key", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn list_graphs() {}

/// One graph in the tenant's view.
#[utoipa::path(get, path = "/v1/graphs/{name}", tag = "graphs",
    params(("name" = String, Path, description = "Graph name")),
    responses((status = 200, description = "The graph", body = GraphInfo),
              (status = 404, description = "No such graph for this tenant", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn get_graph() {}

/// Upload a graph (ONNX, loaded now; or `text`, e.g. a tokenizer). A raw
/// body takes `?format=onnx|text`.
#[utoipa::path(put, path = "/v1/graphs/{name}", tag = "graphs",
    params(("name" = String, Path, description = "Graph name"),
           ("format" = Option<GraphFormat>, Query, description = "Format of a raw-body upload")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "First version", body = GraphInfo),
        (status = 200, description = "New version", body = GraphInfo),
        (status = 403, description = "A public graph's name", body = ErrorBody),
        (status = 413, description = "Body over its size cap", body = ErrorBody),
        (status = 422, description = "Cannot be loaded, or not UTF-8 text", body = ErrorBody),
        (status = 429, description = "Quota exceeded", body = ErrorBody),
    ))]
#[allow(dead_code, reason = "documentation only")]
fn put_graph() {}

/// Delete the tenant's own graph.
#[utoipa::path(delete, path = "/v1/graphs/{name}", tag = "graphs",
    params(("name" = String, Path, description = "Graph name")),
    responses((status = 204, description = "Deleted"),
              (status = 403, description = "A public graph", body = ErrorBody),
              (status = 404, description = "Not the tenant's", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn delete_graph() {}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[allow(dead_code, reason = "documentation only")]
fn metrics() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
#[allow(dead_code, reason = "documentation only")]
fn openapi_json() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_schema() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for s in ["RerankRequest", "ComponentConfig", "GraphInfo", "ErrorBody"] {
            assert!(doc["components"]["schemas"][s].is_object(), "{s}");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
