//! `_msearch`: each search of the NDJSON body decided and reranked on its
//! own, in one upstream call, with the same plan and reranking as
//! `_search` (`search`).

use axum::extract::Request;
use axum::response::Response;
use serde_json::{json, Value};

use super::plan::{decide, Decision, Skip};
use super::search::{incoming, json_response, rerank_answer, strict_error, Answer, RERANKED};
use super::{Proxy, ProxyError};

/// `GET|POST /_msearch`, `/{index}/_msearch`: each search of the NDJSON
/// body decided and reranked on its own, in one upstream call.
pub(super) async fn msearch(proxy: &Proxy, req: Request) -> Result<Response, ProxyError> {
    let inc = match incoming(proxy, req).await? {
        Ok(inc) => inc,
        Err(passed) => return Ok(passed),
    };
    let stats = &proxy.inner.stats;
    let Ok(text) = std::str::from_utf8(&inc.body) else {
        return inc.pass(proxy, &Skip::NotJson).await;
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut parsed = Vec::new();
    for l in &lines {
        match serde_json::from_str::<Value>(l) {
            Ok(v) => parsed.push(v),
            Err(_) => return inc.pass(proxy, &Skip::NotJson).await,
        }
    }
    if parsed.len() % 2 != 0 {
        return inc.pass(proxy, &Skip::NotJson).await;
    }
    let mut out = String::new();
    let mut plans = Vec::new();
    for pair in parsed.chunks(2) {
        let (head, body) = (&pair[0], &pair[1]);
        let decision = decide(&proxy.inner.config, &[], Some(body.clone()))?;
        out.push_str(&head.to_string());
        out.push('\n');
        match decision {
            Decision::Rerank(plan) => {
                out.push_str(&plan.body.to_string());
                plans.push(Ok(plan));
            }
            Decision::Pass { skip, stripped } => {
                out.push_str(&stripped.as_ref().unwrap_or(body).to_string());
                stats.skipped(&skip);
                plans.push(Err(skip));
            }
        }
        out.push('\n');
    }
    let Answer {
        status,
        headers,
        json: mut answer,
        upstream,
    } = match inc
        .ask(
            proxy,
            inc.query.as_deref(),
            "application/x-ndjson",
            out.into_bytes(),
        )
        .await?
    {
        Ok(a) => a,
        Err(skip) => return inc.pass(proxy, &skip).await,
    };
    let Some(responses) = answer.get_mut("responses").and_then(Value::as_array_mut) else {
        return inc.pass(proxy, &Skip::NotJson).await;
    };
    let strict = proxy.inner.config.strict;
    let mut reranked = 0;
    let tasks = responses.iter_mut().zip(&plans).map(|(resp, plan)| async move {
        match plan {
            Ok(plan) if resp.get("error").is_none() => {
                match rerank_answer(proxy, plan, resp, upstream).await {
                    Ok(()) => true,
                    Err(skip) if strict && skip.is_failure() => {
                        let e = strict_error(&skip);
                        *resp = json!({"error": {"type": e.kind, "reason": e.reason}, "status": 502});
                        false
                    }
                    Err(_) => false,
                }
            }
            Ok(_) => false,
            Err(skip) => {
                if let Some(obj) = resp.as_object_mut() {
                    obj.insert(
                        "nboost".into(),
                        json!({"reranked": false, "skipped": skip.code(), "reason": skip.reason()}),
                    );
                }
                false
            }
        }
    });
    for done in futures_util::future::join_all(tasks).await {
        reranked += usize::from(done);
    }
    let mut headers = headers;
    if let Ok(v) = format!("{reranked}/{}", plans.len()).parse() {
        headers.insert(RERANKED, v);
    }
    Ok(json_response(status, headers, &answer))
}
