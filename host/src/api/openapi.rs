//! The OpenAPI 3.1 document served at `/openapi.json`, generated with
//! `utoipa` from the wire and domain types (their doc comments are the
//! schema descriptions), so it cannot drift from what the server accepts
//! and answers. Routes are declared here, one per method and path; the
//! handlers themselves are generic over the object kind, so they carry no
//! annotations. A test checks that every route the router serves is here.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::info::Info;
use super::wire::{
    RerankRequest, RerankResponse, RerankResult, TeiRank, TeiRerankRequest, TruncationDirection,
};
use crate::service::{
    AliasInfo, AliasTarget, ComponentConfig, ComponentInfo, Fusion, GraphConfig, GraphFormat,
    GraphInfo, Normalize, Owner, UploadLimits,
};

/// Every error body: a message and a stable type.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "a schema only")]
pub struct ErrorBody {
    /// What went wrong, for a person.
    error: String,
    /// A stable label (`validation`, `unauthorized`, `not_found`, ...).
    error_type: String,
    /// The message again, where Jina-style clients read it.
    detail: String,
}

/// The multipart form of an upload: the file and an optional `config` part
/// (no other part).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
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

/// What every route shares, stated once: a route behind the key answers
/// 401 without one, and a route that reads a path, query or body answers
/// 400 to one it cannot parse.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                let public = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| *r == Default::default()));
                let responses = &mut op.responses.responses;
                if !public {
                    responses
                        .entry("401".into())
                        .or_insert_with(|| error("Missing or unknown API key").into());
                }
                if op.parameters.is_some() || op.request_body.is_some() {
                    responses.entry("400".into()).or_insert_with(|| {
                        error("Malformed JSON, form, query string or name").into()
                    });
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nboost",
        description = "Multi-tenant reranking with sandboxed WebAssembly components. Every route but \
                       /health, /ready, /openapi.json and /docs needs `Authorization: Bearer <key>`. Errors \
                       are `{error, error_type, detail}`."
    ),
    security(("bearer" = [])),
    modifiers(&Bearer, &Conventions),
    paths(
        health, ready, rerank_v1, rerank_v2, rerank_tei, list_components, get_component,
        put_component, delete_component, list_graphs, get_graph, put_graph, delete_graph,
        list_aliases, get_alias, put_alias, delete_alias, info, metrics, openapi_json, docs
    ),
    components(schemas(
        ErrorBody, UploadForm, RerankRequest, RerankResponse, RerankResult, TruncationDirection,
        TeiRerankRequest, TeiRank, ComponentConfig, UploadLimits, GraphConfig, GraphFormat,
        ComponentInfo, GraphInfo, Owner, AliasInfo, AliasTarget, Info, Fusion, Normalize
    ))
)]
struct ApiDoc;

/// The document, rendered once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        #[allow(unused_mut, reason = "only a build without uploads changes it")]
        let mut doc = ApiDoc::openapi();
        // A build without the upload API documents only what it serves.
        #[cfg(not(feature = "uploads"))]
        for item in doc.paths.paths.values_mut() {
            item.put = None;
            item.delete = None;
        }
        doc.to_pretty_json()
            .expect("the OpenAPI document serialises")
    })
}

/// Liveness; no key.
#[utoipa::path(get, path = "/health", security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
#[allow(dead_code, reason = "documentation only")]
fn health() {}

/// Readiness; no key. 503 while the server drains after SIGTERM, or while
/// the shared database (replicas) has not answered for three poll periods.
#[utoipa::path(get, path = "/ready", security(()),
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = Object),
        (status = 503, description = "`{\"status\": \"draining\"}` or `{\"status\": \"unavailable\", \"reason\": ...}`", body = Object)))]
#[allow(dead_code, reason = "documentation only")]
fn ready() {}

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
    params(("name" = String, Path, description = "Component name", pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
    responses((status = 200, description = "The component", body = ComponentInfo),
              (status = 404, description = "No such component for this tenant", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn get_component() {}

/// Upload a component (a new version if the name exists): validated,
/// compiled (in a limited subprocess), linked and configured once before
/// it is accepted. In-flight calls finish on the old version.
#[utoipa::path(put, path = "/v1/components/{name}", tag = "components",
    params(("name" = String, Path, description = "Component name", pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
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
    params(("name" = String, Path, description = "Component name", pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
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
    params(("name" = String, Path, description = "Graph name", pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
    responses((status = 200, description = "The graph", body = GraphInfo),
              (status = 404, description = "No such graph for this tenant", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn get_graph() {}

/// Upload a graph (ONNX, loaded now; or `text`, e.g. a tokenizer). A raw
/// body takes `?format=onnx|text`.
#[utoipa::path(put, path = "/v1/graphs/{name}", tag = "graphs",
    params(("name" = String, Path, description = "Graph name", pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64),
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
    params(("name" = String, Path, description = "Graph name", pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
    responses((status = 204, description = "Deleted"),
              (status = 403, description = "A public graph", body = ErrorBody),
              (status = 404, description = "Not the tenant's", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn delete_graph() {}

/// The tenant's own aliases, then the public ones.
#[utoipa::path(get, path = "/v1/aliases", tag = "aliases",
    responses((status = 200, description = "`{\"aliases\": [...]}`", body = Object),
              (status = 401, description = "Missing or unknown API key", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn list_aliases() {}

/// One alias in the tenant's view.
#[utoipa::path(get, path = "/v1/aliases/{name}", tag = "aliases",
    params(("name" = String, Path, description = "Alias (A-Z a-z 0-9 . _ - /; `/` as %2F)", pattern = "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*(/[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*)*$", max_length = 128)),
    responses((status = 200, description = "The alias", body = AliasInfo),
              (status = 404, description = "No such alias for this tenant", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn get_alias() {}

/// Point an alias at a component (the tenant's own, else a public one);
/// requests naming the alias are served by that component.
#[utoipa::path(put, path = "/v1/aliases/{name}", tag = "aliases",
    params(("name" = String, Path, description = "Alias (A-Z a-z 0-9 . _ - /; `/` as %2F)", pattern = "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*(/[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*)*$", max_length = 128)),
    request_body(content = AliasTarget, content_type = "application/json"),
    responses(
        (status = 201, description = "First version", body = AliasInfo),
        (status = 200, description = "New version", body = AliasInfo),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 403, description = "A public alias's name", body = ErrorBody),
        (status = 413, description = "Body over its size cap", body = ErrorBody),
        (status = 404, description = "The component it names does not exist", body = ErrorBody),
        (status = 409, description = "A component's name", body = ErrorBody),
        (status = 422, description = "Not `{component}`", body = ErrorBody),
        (status = 429, description = "Quota exceeded", body = ErrorBody),
    ))]
#[allow(dead_code, reason = "documentation only")]
fn put_alias() {}

/// Delete the tenant's own alias.
#[utoipa::path(delete, path = "/v1/aliases/{name}", tag = "aliases",
    params(("name" = String, Path, description = "Alias", pattern = "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*(/[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*)*$", max_length = 128)),
    responses((status = 204, description = "Deleted"),
              (status = 403, description = "A public alias", body = ErrorBody),
              (status = 404, description = "Not the tenant's", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn delete_alias() {}

/// The default (or named) component in text-embeddings-inference's
/// `/info` shape.
#[utoipa::path(get, path = "/info", tag = "rerank",
    params(super::info::InfoQuery),
    responses((status = 200, description = "The model's figures", body = Info),
              (status = 401, description = "Missing or unknown API key", body = ErrorBody),
              (status = 404, description = "Unknown component", body = ErrorBody),
              (status = 422, description = "No model named and no default", body = ErrorBody)))]
#[allow(dead_code, reason = "documentation only")]
fn info() {}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[allow(dead_code, reason = "documentation only")]
fn metrics() {}

/// This document (no key).
#[utoipa::path(get, path = "/openapi.json", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
#[allow(dead_code, reason = "documentation only")]
fn openapi_json() {}

/// A Swagger UI page over this document, bundled (no key, no external
/// resources).
#[utoipa::path(get, path = "/docs/", security(()),
    responses((status = 200, description = "HTML", body = String, content_type = "text/html")))]
#[allow(dead_code, reason = "documentation only")]
fn docs() {}

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

    /// The name rules the document states are the ones the server checks
    /// (attributes need literals, so the patterns are written twice).
    #[test]
    fn path_name_patterns_are_the_checked_rules() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let pattern = |path: &str| {
            doc["paths"][path]["get"]["parameters"][0]["schema"]["pattern"]
                .as_str()
                .unwrap_or_else(|| panic!("no pattern on {path}"))
                .to_string()
        };
        assert_eq!(pattern("/v1/components/{name}"), crate::names::NAME_PATTERN);
        assert_eq!(pattern("/v1/graphs/{name}"), crate::names::NAME_PATTERN);
        assert_eq!(pattern("/v1/aliases/{name}"), crate::names::ALIAS_PATTERN);
        let target = &doc["components"]["schemas"]["AliasTarget"]["properties"]["component"];
        assert_eq!(target["pattern"], crate::names::NAME_PATTERN);
    }
}
