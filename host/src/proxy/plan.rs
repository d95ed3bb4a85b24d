//! Reading one search request into a decision: rerank it (and what to ask
//! the upstream for), or pass it through (and why).
//!
//! A search is reranked when it has a query text, asks for hits
//! (`size > 0`) within the top `topn` (`from + size <= topn`), and is
//! ordered by relevance: a `sort` on anything but `_score`, `search_after`
//! (a cursor into the upstream's order) and scrolls pass through. The
//! upstream is then asked for `topn` hits from the start, and the
//! `fields` API fetches the text when the client filtered `_source` (the
//! added fields are removed again before answering, so the client sees
//! the hits it asked for).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::query::{lucene_text, query_text};
use super::{ProxyConfig, ProxyError};
use crate::fusion::Fusion;
use crate::relevance::Judgements;

/// Hits a search asks for when it says nothing (Elasticsearch's default).
const DEFAULT_SIZE: usize = 10;

/// The `nboost` object of a search body: the only per-request options.
/// Unknown keys are refused, so a request cannot smuggle settings (an
/// upstream, headers) past validation.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Another component, among those the operator allows.
    pub component: Option<String>,
    /// How many upstream hits to rerank, up to the operator's limit.
    pub topn: Option<usize>,
    /// The `_source` fields to score hits on.
    pub fields: Option<Vec<String>>,
    /// How to fuse model and upstream scores (`{"method": "none"}`: the
    /// model alone).
    pub fusion: Option<Fusion>,
    /// `false`: pass this search through.
    pub rerank: Option<bool>,
    /// Relevance judgements of this query (ids, or ids to grades): the
    /// proxy then scores upstream and reranked order (MRR@10, NDCG@10).
    pub relevant: Option<Relevant>,
}

/// Judgements as a request gives them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Relevant {
    /// Relevant ids, grade 1 each.
    Ids(Vec<String>),
    /// Ids to graded relevance.
    Graded(HashMap<String, i64>),
}

impl Relevant {
    fn judgements(self) -> Judgements {
        match self {
            Self::Ids(ids) => ids.into_iter().map(|id| (id, 1)).collect(),
            Self::Graded(m) => m,
        }
    }
}

/// Why a search was not reranked: a code (the `x-nboost-skipped` header
/// and the status page group by it) and a sentence.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    Disabled,
    Scroll,
    SizeZero,
    BeyondTopn {
        from: usize,
        size: usize,
        topn: usize,
    },
    Sorted,
    SearchAfter,
    NoQuery,
    NotJson,
    NoHits,
    NoText,
    NoScores,
    TooLarge(usize),
    RequestTooLarge(usize),
    Upstream(u16),
    Overloaded,
    Timeout(u64),
    Failed(String),
}

impl Skip {
    /// The short code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Scroll => "scroll",
            Self::SizeZero => "size_zero",
            Self::BeyondTopn { .. } => "beyond_topn",
            Self::Sorted => "sorted",
            Self::SearchAfter => "search_after",
            Self::NoQuery => "no_query_text",
            Self::NotJson => "not_json",
            Self::NoHits => "no_hits",
            Self::NoText => "no_text",
            Self::NoScores => "no_scores",
            Self::TooLarge(_) => "too_large",
            Self::RequestTooLarge(_) => "request_too_large",
            Self::Upstream(_) => "upstream_error",
            Self::Overloaded => "overloaded",
            Self::Timeout(_) => "timeout",
            Self::Failed(_) => "model_error",
        }
    }

    /// The sentence.
    pub fn reason(&self) -> String {
        match self {
            Self::Disabled => "the request set nboost.rerank to false".into(),
            Self::Scroll => "a scroll search pages through the upstream's order".into(),
            Self::SizeZero => "the search asks for no hits (size 0)".into(),
            Self::BeyondTopn { from, size, topn } => format!(
                "from + size = {} is beyond the reranked top {topn}",
                from + size
            ),
            Self::Sorted => "the search is sorted by something other than _score".into(),
            Self::SearchAfter => {
                "search_after is a cursor into the upstream's order; reranking one page \
                 would break the next"
                    .into()
            }
            Self::NoQuery => "no query text found in the search (see the proxy docs for the \
                              query forms read)"
                .into(),
            Self::NotJson => "the search body is not a JSON object".into(),
            Self::NoHits => "the upstream found no hits".into(),
            Self::NoText => "no hit has text in the configured fields".into(),
            Self::NoScores => "the upstream hits carry no _score".into(),
            Self::TooLarge(cap) => {
                format!("the upstream answer is over {cap} bytes; passed through")
            }
            Self::RequestTooLarge(cap) => {
                format!("the search body is over {cap} bytes; passed through")
            }
            Self::Upstream(s) => format!("the upstream answered {s}"),
            Self::Overloaded => "the reranker is at capacity".into(),
            Self::Timeout(ms) => format!("reranking took longer than {ms} ms"),
            Self::Failed(e) => format!("the reranker failed: {e}"),
        }
    }

    /// Skips that are the model's fault: a `502` under `strict`.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Overloaded | Self::Timeout(_) | Self::Failed(_))
    }
}

/// A search to rerank.
#[derive(Debug, Clone)]
pub struct Plan {
    pub component: String,
    pub topn: usize,
    pub from: usize,
    pub size: usize,
    pub fields: Vec<String>,
    pub fusion: Option<Fusion>,
    pub query: String,
    pub judged: Option<Judgements>,
    /// The body to send upstream.
    pub body: Value,
    /// The query string to send upstream (paging parameters removed).
    pub params: Vec<(String, String)>,
    /// Text comes from `_source` (else from the `fields` section).
    pub from_source: bool,
    /// Entries put into `fields` that the client did not ask for.
    pub added_fields: Vec<String>,
    /// The client asked for no `fields` section at all.
    pub no_client_fields: bool,
}

/// What to do with one search.
#[derive(Debug)]
pub enum Decision {
    Rerank(Box<Plan>),
    /// Forward the client's request, with `stripped` for its body when
    /// that was the body less its `nboost` object.
    Pass {
        skip: Skip,
        stripped: Option<Value>,
    },
}

/// Decide for one search: `params` is its query string, `body` its JSON
/// (`None`: no body).
pub fn decide(
    config: &ProxyConfig,
    params: &[(String, String)],
    body: Option<Value>,
) -> Result<Decision, ProxyError> {
    if let Some((k, _)) = params.iter().find(|(k, _)| k.starts_with("nboost")) {
        return Err(ProxyError::bad_request(format!(
            "`{k}`: nboost options go in the `nboost` object of the search body, not the URL"
        )));
    }
    let mut body = match body {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Ok(Decision::Pass {
                skip: Skip::NotJson,
                stripped: None,
            })
        }
    };
    let had_options = body.contains_key("nboost");
    let options: Options = match body.remove("nboost") {
        None => Options::default(),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| ProxyError::bad_request(format!("the `nboost` object: {e}")))?,
    };
    let component = options
        .component
        .clone()
        .unwrap_or_else(|| config.component.clone());
    if !config.allowed_components.contains(&component) {
        return Err(ProxyError::bad_request(format!(
            "component `{component}` is not one this proxy allows ({})",
            config.allowed_components.join(", ")
        )));
    }
    let topn = options.topn.unwrap_or(config.topn);
    if topn == 0 || topn > config.max_topn {
        return Err(ProxyError::bad_request(format!(
            "nboost.topn must be between 1 and {}, not {topn}",
            config.max_topn
        )));
    }
    let fields = options
        .fields
        .clone()
        .unwrap_or_else(|| config.fields.clone());
    if fields.is_empty()
        || fields.len() > 32
        || fields.iter().any(|f| f.is_empty() || f.len() > 256)
    {
        return Err(ProxyError::bad_request(
            "nboost.fields must name 1 to 32 fields, each 1 to 256 bytes",
        ));
    }
    let fusion = options.fusion.or(config.fusion);
    if let Some(f) = &fusion {
        f.check().map_err(ProxyError::bad_request)?;
    }
    let pass = |skip, body: Map<String, Value>| Decision::Pass {
        skip,
        stripped: had_options.then_some(Value::Object(body)),
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if options.rerank == Some(false) {
        return Ok(pass(Skip::Disabled, body));
    }
    if param("scroll").is_some() {
        return Ok(pass(Skip::Scroll, body));
    }
    let number = |name: &str| -> Result<Option<usize>, ProxyError> {
        let v = match param(name) {
            Some(s) => Some(s.trim().parse::<i64>().map_err(|_| {
                ProxyError::bad_request(format!("`{name}` must be a number, not `{s}`"))
            })?),
            None => body.get(name).and_then(Value::as_i64),
        };
        // Negative values are the upstream's to refuse.
        Ok(v.map(|n| n.max(0) as usize))
    };
    let size = number("size")?.unwrap_or(DEFAULT_SIZE);
    let from = number("from")?.unwrap_or(0);
    if size == 0 {
        return Ok(pass(Skip::SizeZero, body));
    }
    if from + size > topn {
        return Ok(pass(Skip::BeyondTopn { from, size, topn }, body));
    }
    if body.contains_key("search_after") {
        return Ok(pass(Skip::SearchAfter, body));
    }
    let url_sort = param("sort").map(|s| Value::String(s.to_string()));
    if !url_sort
        .as_ref()
        .or(body.get("sort"))
        .is_none_or(sorts_by_score)
    {
        return Ok(pass(Skip::Sorted, body));
    }
    let query = body
        .get("query")
        .and_then(query_text)
        .or_else(|| param("q").map(lucene_text))
        .filter(|q| !q.trim().is_empty());
    let Some(query) = query else {
        return Ok(pass(Skip::NoQuery, body));
    };

    // The upstream request: the top `topn` from the start.
    let params: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "size" && k != "from")
        .cloned()
        .collect();
    body.insert("size".into(), topn.into());
    body.insert("from".into(), 0.into());
    let source_filtered = body.get("_source").is_some_and(|s| s != &Value::Bool(true))
        || body.contains_key("stored_fields")
        || params.iter().any(|(k, v)| {
            (k == "_source" && v != "true") || k.starts_with("_source_") || k == "stored_fields"
        });
    let mut added_fields = Vec::new();
    let no_client_fields = !body.contains_key("fields");
    if source_filtered {
        let list = body
            .entry("fields")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            for f in &fields {
                let present = list.iter().any(|e| {
                    e.as_str() == Some(f)
                        || e.get("field").and_then(Value::as_str) == Some(f.as_str())
                });
                if !present {
                    list.push(Value::String(f.clone()));
                    added_fields.push(f.clone());
                }
            }
        }
    }
    Ok(Decision::Rerank(Box::new(Plan {
        component,
        topn,
        from,
        size,
        fields,
        fusion,
        query,
        judged: options.relevant.map(Relevant::judgements),
        body: Value::Object(body),
        params,
        from_source: !source_filtered,
        added_fields,
        no_client_fields,
    })))
}

/// A sort that orders by relevance alone: `_score` (descending), as a
/// string, an object or a list of one.
fn sorts_by_score(sort: &Value) -> bool {
    match sort {
        Value::String(s) => s == "_score" || s == "_score:desc",
        Value::Array(items) => items.len() == 1 && sorts_by_score(&items[0]),
        Value::Object(m) => {
            m.len() == 1
                && m.get("_score").is_some_and(|o| {
                    o.as_str()
                        .or_else(|| o.get("order").and_then(Value::as_str))
                        != Some("asc")
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> ProxyConfig {
        ProxyConfig::new("http://127.0.0.1:9200".parse().unwrap(), "minilm")
    }

    fn decide_json(params: &[(&str, &str)], body: Value) -> Result<Decision, ProxyError> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        decide(&config(), &params, Some(body))
    }

    fn skip_of(d: Decision) -> Option<&'static str> {
        match d {
            Decision::Pass { skip, .. } => Some(skip.code()),
            Decision::Rerank(_) => None,
        }
    }

    #[test]
    fn searches_outside_the_reranked_top_pass_through_with_a_reason() {
        let q = json!({"match": {"text": "wing"}});
        let cases = [
            (vec![], json!({"query": q, "size": 0}), Some("size_zero")),
            (
                vec![],
                json!({"query": q, "from": 45, "size": 10}),
                Some("beyond_topn"),
            ),
            (vec![("scroll", "1m")], json!({"query": q}), Some("scroll")),
            (
                vec![],
                json!({"query": q, "sort": [{"year": "desc"}]}),
                Some("sorted"),
            ),
            (
                vec![("sort", "year:desc")],
                json!({"query": q}),
                Some("sorted"),
            ),
            (vec![], json!({"query": q, "sort": ["_score"]}), None),
            (
                vec![],
                json!({"query": q, "search_after": [1.0]}),
                Some("search_after"),
            ),
            (
                vec![],
                json!({"query": {"match_all": {}}}),
                Some("no_query_text"),
            ),
            (
                vec![],
                json!({"query": q, "nboost": {"rerank": false}}),
                Some("disabled"),
            ),
            (vec![("q", "wing")], json!({}), None),
            (
                vec![("size", "5"), ("from", "40")],
                json!({"query": q}),
                None,
            ),
        ];
        for (params, body, want) in cases {
            let got = skip_of(decide_json(&params, body.clone()).unwrap());
            assert_eq!(got, want, "{params:?} {body}");
        }
    }

    #[test]
    fn the_upstream_is_asked_for_the_top_n_and_the_fields_it_needs() {
        let d = decide_json(
            &[("size", "5"), ("_source", "false")],
            json!({"query": {"match": {"text": "wing"}}, "fields": ["title"], "nboost": {"topn": 20}}),
        )
        .unwrap();
        let Decision::Rerank(p) = d else {
            panic!("not reranked")
        };
        assert_eq!((p.size, p.from, p.topn), (5, 0, 20));
        assert_eq!(p.body["size"], 20);
        assert_eq!(p.body["fields"], json!(["title", "text"]));
        assert_eq!(p.added_fields, ["text"]);
        assert!(!p.from_source);
        assert!(p.body.get("nboost").is_none());
        assert!(p.params.iter().all(|(k, _)| k != "size"));
    }

    #[test]
    fn options_are_validated_and_nothing_else_is_accepted() {
        let q = json!({"match": {"text": "wing"}});
        for nboost in [
            json!({"upstream": "http://evil.example"}),
            json!({"headers": {"x-admin": "1"}}),
            json!({"component": "other"}),
            json!({"topn": 100000}),
            json!({"fusion": {"method": "linear", "weight": 3}}),
            json!({"fields": []}),
        ] {
            let err = decide_json(&[], json!({"query": q, "nboost": nboost.clone()}))
                .expect_err(&nboost.to_string());
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        }
        assert!(decide_json(&[("nboost_upstream", "x")], json!({"query": q})).is_err());
    }
}
