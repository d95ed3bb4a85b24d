//! `_search` and `_msearch`: ask the upstream for the top `topn`, rerank
//! the hits through the service, answer the page the client asked for.
//!
//! Everything but `hits.hits`, `max_score` and the added `nboost` section
//! is the upstream's (`took`, `_shards`, `hits.total`, aggregations,
//! highlights, suggestions). Each returned hit keeps its upstream score as
//! `_nboost.upstream_score` (and its upstream rank); `_score` becomes the
//! fused score, or the model's when the fusion is `none`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::forward::{end_to_end, read_bounded, stream_back, Read};
use super::plan::{decide, Decision, Plan, Skip};
use super::{Proxy, ProxyError};
use crate::relevance::{Judgements, Metrics};
use crate::service::{Caller, RerankJob, ServiceError, Shaping};

pub(super) const RERANKED: HeaderName = HeaderName::from_static("x-nboost-reranked");
const SKIPPED: HeaderName = HeaderName::from_static("x-nboost-skipped");

/// The parts of a search request the proxy needs again.
pub(super) struct Incoming {
    method: reqwest::Method,
    path: String,
    params: Vec<(String, String)>,
    pub(super) query: Option<String>,
    headers: HeaderMap,
    pub(super) body: Bytes,
}

/// Read a search request; `Err(response)` when its body was over
/// `max_request_bytes`: then it went upstream as it came (what was read,
/// then the rest, streamed) and its answer is streamed back, un-reranked.
pub(super) async fn incoming(
    proxy: &Proxy,
    req: Request,
) -> Result<Result<Incoming, Response>, ProxyError> {
    let (parts, body) = req.into_parts();
    let limit = proxy.inner.config.max_request_bytes;
    let query = parts.uri.query().map(str::to_string);
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ProxyError::bad_request(format!("the request body broke off: {e}")))?;
        buf.extend_from_slice(&chunk);
        if buf.len() > limit {
            let skip = Skip::RequestTooLarge(limit);
            proxy.inner.stats.skipped(&skip);
            let url = proxy.upstream_url(parts.uri.path(), query.as_deref());
            let prefix =
                futures_util::stream::once(async move { Ok::<_, axum::Error>(buf.freeze()) });
            let body = reqwest::Body::wrap_stream(prefix.chain(stream));
            let answer = proxy
                .send(parts.method, url, end_to_end(&parts.headers, true), body)
                .await?;
            return Ok(Err(stream_back(answer, Some(skip_header(&skip)))));
        }
    }
    let params = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let headers = end_to_end(&parts.headers, false);
    Ok(Ok(Incoming {
        method: parts.method,
        path: parts.uri.path().to_string(),
        params,
        query,
        headers,
        body: buf.freeze(),
    }))
}

impl Incoming {
    /// Send the request upstream as the client sent it and stream the
    /// answer back, saying (and counting) why it was not reranked.
    pub(super) async fn pass(self, proxy: &Proxy, skip: &Skip) -> Result<Response, ProxyError> {
        proxy.inner.stats.skipped(skip);
        let url = proxy.upstream_url(&self.path, self.query.as_deref());
        let answer = proxy
            .send(self.method, url, self.headers, self.body.into())
            .await?;
        Ok(stream_back(answer, Some(skip_header(skip))))
    }
}

impl Incoming {
    /// Send `body` (of `content_type`) upstream at this request's path with
    /// `query`, uncompressed, and read the answer whole: the answer and the
    /// upstream time, or why it cannot be reranked.
    pub(super) async fn ask(
        &self,
        proxy: &Proxy,
        query: Option<&str>,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<Result<Answer, Skip>, ProxyError> {
        let url = proxy.upstream_url(&self.path, query);
        let mut headers = self.headers.clone();
        // The proxy reads this answer: ask for it uncompressed.
        headers.remove(header::ACCEPT_ENCODING);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        let t0 = Instant::now();
        let answer = proxy
            .send(self.method.clone(), url, headers, body.into())
            .await?;
        let cap = proxy.inner.config.max_response_bytes;
        let read = read_bounded(answer, cap).await?;
        let upstream = t0.elapsed();
        Ok(match read {
            // An answer too large to hold is for `topn` hits; the client is
            // then answered by its own request, streamed.
            Read::TooLarge => Err(Skip::TooLarge(cap)),
            Read::Whole(status, _, _) if !status.is_success() => {
                Err(Skip::Upstream(status.as_u16()))
            }
            Read::Whole(status, headers, bytes) => serde_json::from_slice(&bytes)
                .map(|json| Answer {
                    status,
                    headers,
                    json,
                    upstream,
                })
                .map_err(|_| Skip::NotJson),
        })
    }
}

/// An upstream answer read whole.
pub(super) struct Answer {
    pub(super) status: reqwest::StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) json: Value,
    pub(super) upstream: Duration,
}

fn skip_header(skip: &Skip) -> (HeaderName, String) {
    let text: String = format!("{}: {}", skip.code(), skip.reason())
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    (SKIPPED, text)
}

pub(super) fn json_response(
    status: reqwest::StatusCode,
    mut headers: HeaderMap,
    body: &Value,
) -> Response {
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    let mut r = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// `GET|POST /_search`, `/{index}/_search`.
pub(super) async fn search(proxy: &Proxy, req: Request) -> Result<Response, ProxyError> {
    let inc = match incoming(proxy, req).await? {
        Ok(inc) => inc,
        Err(passed) => return Ok(passed),
    };
    let body = if inc.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(&inc.body) {
            Ok(v) => Some(v),
            Err(_) => return inc.pass(proxy, &Skip::NotJson).await,
        }
    };
    let plan = match decide(&proxy.inner.config, &inc.params, body)? {
        Decision::Rerank(plan) => plan,
        Decision::Pass { skip, stripped } => {
            let mut inc = inc;
            // The body less its `nboost` object (the upstream would refuse
            // it); any other body goes as it came.
            if let Some(body) = stripped {
                inc.body = serde_json::to_vec(&body).unwrap_or_default().into();
            }
            return inc.pass(proxy, &skip).await;
        }
    };
    let query = encode(&plan.params);
    let body = serde_json::to_vec(&plan.body).unwrap_or_default();
    let Answer {
        status,
        headers,
        json: mut answer,
        upstream,
    } = match inc
        .ask(proxy, query.as_deref(), "application/json", body)
        .await?
    {
        Ok(a) => a,
        Err(skip) => return inc.pass(proxy, &skip).await,
    };
    let outcome = rerank_answer(proxy, &plan, &mut answer, upstream).await;
    let mut headers = headers;
    match outcome {
        Ok(()) => {
            headers.insert(RERANKED, HeaderValue::from_static("true"));
        }
        Err(skip) => {
            if skip.is_failure() && proxy.inner.config.strict {
                return Err(strict_error(&skip));
            }
            headers.insert(RERANKED, HeaderValue::from_static("false"));
            let (name, value) = skip_header(&skip);
            if let Ok(v) = value.parse() {
                headers.insert(name, v);
            }
        }
    }
    Ok(json_response(status, headers, &answer))
}

pub(super) fn strict_error(skip: &Skip) -> ProxyError {
    ProxyError::new(
        StatusCode::BAD_GATEWAY,
        "nboost_rerank_failed",
        skip.reason(),
    )
}

fn encode(params: &[(String, String)]) -> Option<String> {
    if params.is_empty() {
        return None;
    }
    Some(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish(),
    )
}

/// Rerank one search answer in place (hits, `max_score`, the `nboost`
/// section), or cut it to the client's page in the upstream order and
/// say why. Records the outcome in the proxy's stats.
pub(super) async fn rerank_answer(
    proxy: &Proxy,
    plan: &Plan,
    answer: &mut Value,
    upstream: Duration,
) -> Result<(), Skip> {
    let stats = &proxy.inner.stats;
    let hits = answer
        .pointer_mut("/hits/hits")
        .and_then(Value::as_array_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let result = rerank_hits(proxy, plan, hits).await;
    let mut section = json!({
        "component": plan.component,
        "topn": plan.topn,
        "upstream_ms": ms(upstream),
    });
    let (page, skip) = match result {
        Ok(done) => {
            stats.reranked(done.took, upstream, done.eval.as_ref());
            section["reranked"] = true.into();
            section["rerank_ms"] = ms(done.took).into();
            section["fusion"] = done.fusion.into();
            if let Some((up, re)) = &done.eval {
                section["eval"] = json!({"upstream": up, "reranked": re});
            }
            if let (Some(top), Some(hits)) = (done.max_score, answer.get_mut("hits")) {
                hits["max_score"] = top.into();
            }
            (done.order, None)
        }
        Err((skip, hits)) => {
            stats.skipped(&skip);
            section["reranked"] = false.into();
            section["skipped"] = skip.code().into();
            section["reason"] = skip.reason().into();
            (hits, Some(skip))
        }
    };
    let mut page: Vec<Value> = page.into_iter().skip(plan.from).take(plan.size).collect();
    for hit in &mut page {
        strip_added(hit, plan);
    }
    if let Some(hits) = answer.get_mut("hits").and_then(Value::as_object_mut) {
        hits.insert("hits".into(), Value::Array(page));
    }
    if let Some(obj) = answer.as_object_mut() {
        obj.insert("nboost".into(), section);
    }
    skip.map_or(Ok(()), Err)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// A reranked answer, before paging.
struct Done {
    /// All the hits, best first, with their new `_score`.
    order: Vec<Value>,
    max_score: Option<f64>,
    took: Duration,
    fusion: String,
    eval: Option<(Metrics, Metrics)>,
}

/// Score and reorder `hits`; on failure, why, and the hits as they came.
async fn rerank_hits(
    proxy: &Proxy,
    plan: &Plan,
    hits: Vec<Value>,
) -> Result<Done, (Skip, Vec<Value>)> {
    let scored = match score_hits(proxy, plan, &hits).await {
        Ok(s) => s,
        Err(skip) => return Err((skip, hits)),
    };
    Ok(reorder(plan, hits, scored))
}

/// The model's (and fused) scores of the hits that have text.
struct Scored {
    /// Hit index of each scored document.
    scored: Vec<usize>,
    /// Hits with no text.
    unscored: Vec<usize>,
    outcome: crate::service::RerankOutcome,
    took: Duration,
}

async fn score_hits(proxy: &Proxy, plan: &Plan, hits: &[Value]) -> Result<Scored, Skip> {
    if hits.is_empty() {
        return Err(Skip::NoHits);
    }
    let mut texts = Vec::new();
    let mut first = Vec::new();
    let mut scored = Vec::new();
    let mut unscored = Vec::new();
    for (i, hit) in hits.iter().enumerate() {
        let score = hit
            .get("_score")
            .and_then(Value::as_f64)
            .ok_or(Skip::NoScores)?;
        let text = hit_text(hit, &plan.fields, plan.from_source);
        if text.trim().is_empty() {
            unscored.push(i);
        } else {
            texts.push(text);
            first.push(score as f32);
            scored.push(i);
        }
    }
    if texts.is_empty() {
        return Err(Skip::NoText);
    }
    let job = RerankJob {
        model: plan.component.clone(),
        query: plan.query.clone(),
        documents: texts,
        top_n: None,
        shaping: Shaping::default(),
        first_stage: Some(first),
        fusion: plan.fusion,
    };
    let inner = &proxy.inner;
    let t0 = Instant::now();
    let call = inner
        .service
        .rerank(Caller::Tenant(inner.operator.clone()), job);
    let outcome = match tokio::time::timeout(inner.config.rerank_timeout, call).await {
        Err(_) => return Err(Skip::Timeout(inner.config.rerank_timeout.as_millis() as u64)),
        Ok(Err(ServiceError::Overloaded | ServiceError::QuotaExceeded(_))) => {
            return Err(Skip::Overloaded)
        }
        Ok(Err(e)) => return Err(Skip::Failed(e.to_string())),
        Ok(Ok(o)) => o,
    };
    Ok(Scored {
        scored,
        unscored,
        outcome,
        took: t0.elapsed(),
    })
}

/// The hits in the new order, marked with their upstream score and rank.
fn reorder(plan: &Plan, hits: Vec<Value>, s: Scored) -> Done {
    let Scored {
        scored,
        unscored,
        outcome,
        took,
    } = s;
    let (fusion, model) = match &outcome.fused {
        Some((f, model)) => (f.label(), Some(model)),
        None => ("none".to_string(), None),
    };
    let upstream_ids: Vec<String> = hits.iter().map(hit_id).collect();
    let mut slots: Vec<Option<Value>> = hits.into_iter().map(Some).collect();
    let mut order = Vec::with_capacity(slots.len());
    for r in &outcome.ranking {
        let i = scored[r.index];
        let Some(mut hit) = slots[i].take() else {
            continue;
        };
        let upstream_score = hit.get("_score").cloned().unwrap_or(Value::Null);
        let mut mark = json!({"upstream_score": upstream_score, "upstream_rank": i + 1});
        if let Some(model) = model {
            mark["model_score"] = f64::from(model[r.index]).into();
        }
        hit["_score"] = f64::from(r.score).into();
        hit["_nboost"] = mark;
        order.push(hit);
    }
    // Hits with no text to score keep their upstream order, after the rest.
    for i in unscored {
        if let Some(mut hit) = slots[i].take() {
            let upstream_score = hit.get("_score").cloned().unwrap_or(Value::Null);
            hit["_nboost"] = json!({"upstream_score": upstream_score, "upstream_rank": i + 1,
                                    "unscored": "no text in the configured fields"});
            hit["_score"] = Value::Null;
            order.push(hit);
        }
    }
    let eval = plan.judged.as_ref().map(|judged: &Judgements| {
        let reranked: Vec<String> = order.iter().map(hit_id).collect();
        (
            Metrics::of(&upstream_ids, judged),
            Metrics::of(&reranked, judged),
        )
    });
    Done {
        max_score: outcome.ranking.first().map(|r| f64::from(r.score)),
        order,
        took,
        fusion,
        eval,
    }
}

fn hit_id(hit: &Value) -> String {
    hit.get("_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The text a hit is scored on: its configured fields (from `_source`, or
/// the `fields` section when the client filtered the source) joined by
/// newlines; with none of them present, every string of its `_source`.
fn hit_text(hit: &Value, fields: &[String], from_source: bool) -> String {
    let mut parts = Vec::new();
    for f in fields {
        let value = if from_source {
            hit.get("_source").and_then(|s| lookup(s, f))
        } else {
            hit.get("fields").and_then(|s| s.get(f))
        };
        if let Some(v) = value {
            collect_text(v, &mut parts);
        }
    }
    if parts.is_empty() && from_source {
        if let Some(Value::Object(src)) = hit.get("_source") {
            for v in src.values() {
                collect_text(v, &mut parts);
            }
        }
    }
    parts.join("\n")
}

/// `a.b` in `_source`: the literal key, else the nested path.
fn lookup<'a>(source: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = source.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(source, |v, k| v.get(k))
}

fn collect_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        _ => {}
    }
}

/// Remove from a hit the `fields` entries the proxy asked for and the
/// client did not.
fn strip_added(hit: &mut Value, plan: &Plan) {
    if plan.added_fields.is_empty() {
        return;
    }
    let Some(Value::Object(fields)) = hit.get_mut("fields") else {
        return;
    };
    for f in &plan.added_fields {
        fields.remove(f);
    }
    if fields.is_empty() && plan.no_client_fields {
        if let Some(h) = hit.as_object_mut() {
            h.remove("fields");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_scored_on_what_they_have() {
        let fields = vec!["title".to_string(), "meta.abstract".to_string()];
        let hit = json!({"_source": {"title": "Wings", "meta": {"abstract": ["lift", "drag"]}}});
        assert_eq!(hit_text(&hit, &fields, true), "Wings\nlift\ndrag");
        let other = json!({"_source": {"body": "only a body", "n": 3}});
        assert_eq!(hit_text(&other, &fields, true), "only a body\n3");
        let none = json!({"_id": "1"});
        assert_eq!(hit_text(&none, &fields, true), "");
        let via_fields = json!({"fields": {"title": ["Wings"]}, "_source": {"title": "x"}});
        assert_eq!(hit_text(&via_fields, &fields, false), "Wings");
    }
}
