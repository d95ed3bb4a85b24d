//! The proxy when things go wrong: an unreachable upstream, a trapping or
//! slow component (lenient fallback, strict 502), an answer too large to
//! hold, requests that try to move the upstream or smuggle options — and
//! judged searches, whose quality the proxy reports.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::common::repo;
use crate::proxy::{header, ids, json_of, node, post, ProxyProc};

#[test]
fn an_unreachable_upstream_is_a_502_with_a_json_error() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let p = ProxyProc::start(&format!("http://{closed}"), "lexical", &[]);
    for r in [
        post(
            &p.http,
            &p.base,
            "/cranfield/_search",
            &json!({"query": {"match": {"text": "x"}}}),
        ),
        p.http
            .get(format!("{}/_cat/indices", p.base))
            .send()
            .unwrap(),
    ] {
        let (status, _, body) = json_of(r);
        assert_eq!(status, 502, "{body}");
        assert_eq!(
            body["error"]["type"], "nboost_upstream_unavailable",
            "{body}"
        );
        assert_eq!(body["status"], 502);
    }
    assert_eq!(p.status()["errors"], 2);
}

#[test]
fn a_failing_or_slow_component_falls_back_or_fails_strictly() {
    let Some(node) = node() else { return };
    let q = json!({"query": {"match": {"text": "wing in a slipstream"}}, "size": 10});
    let (_, _, direct) = json_of(post(&Client::new(), node, "/cranfield/_search", &q));
    for (component, extra, code) in [
        ("trap", vec![], "model_error"),
        ("slow", vec!["--rerank-timeout-ms", "300"], "timeout"),
    ] {
        let p = ProxyProc::start(node, component, &extra);
        let (status, h, via) = json_of(post(&p.http, &p.base, "/cranfield/_search", &q));
        assert_eq!(status, 200, "{component}: {via}\n{}", p.log_text());
        assert!(
            header(&h, "x-nboost-skipped").starts_with(code),
            "{component}: {h:?}"
        );
        assert_eq!(via["nboost"]["skipped"], code);
        assert_eq!(ids(&via), ids(&direct), "{component}: the upstream order");
        assert_eq!(
            via["hits"]["hits"][0]["_score"],
            direct["hits"]["hits"][0]["_score"]
        );
        assert_eq!(p.status()["skipped_by_reason"][code], 1);
        drop(p);

        let mut strict = extra.clone();
        strict.push("--strict");
        let p = ProxyProc::start(node, component, &strict);
        let (status, _, body) = json_of(post(&p.http, &p.base, "/cranfield/_search", &q));
        assert_eq!(status, 502, "{component}: {body}");
        assert_eq!(body["error"]["type"], "nboost_rerank_failed");
        // The proxy lives on: the next request is served.
        let count = p
            .http
            .get(format!("{}/cranfield/_count", p.base))
            .send()
            .unwrap();
        assert_eq!(count.status(), 200);
    }
}

#[test]
fn a_huge_answer_passes_through_unreranked() {
    let Some(node) = node() else { return };
    let p = ProxyProc::start(node, "lexical", &["--max-response-bytes", "4096"]);
    let q = json!({"query": {"match": {"text": "pressure distribution"}}});
    let (status, h, via) = json_of(post(&p.http, &p.base, "/cranfield/_search", &q));
    let (_, _, direct) = json_of(post(&p.http, node, "/cranfield/_search", &q));
    assert_eq!(status, 200);
    assert!(
        header(&h, "x-nboost-skipped").starts_with("too_large"),
        "{h:?}"
    );
    assert_eq!(ids(&via), ids(&direct));
    assert_eq!(ids(&via).len(), 10);
}

#[test]
fn a_request_cannot_move_the_upstream_or_smuggle_options() {
    let Some(node) = node() else { return };
    let p = ProxyProc::start(node, "lexical", &["--max-topn", "100"]);
    let q = json!({"match": {"text": "wing"}});
    for nboost in [
        json!({"upstream": "http://127.0.0.1:1"}),
        json!({"headers": {"authorization": "Basic YWRtaW46YWRtaW4="}}),
        json!({"component": "minilm"}),
        json!({"topn": 5000}),
        json!({"fusion": "eval('1')"}),
    ] {
        let (status, _, body) = json_of(post(
            &p.http,
            &p.base,
            "/cranfield/_search",
            &json!({"query": q, "nboost": nboost}),
        ));
        assert_eq!(status, 400, "{nboost}: {body}");
        assert_eq!(body["error"]["type"], "nboost_invalid_request");
    }
    let r = p
        .http
        .get(format!(
            "{}/cranfield/_search?nboost.upstream=http://127.0.0.1:1&q=wing",
            p.base
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // An absolute-form request line and a foreign Host still reach the upstream.
    let mut s = TcpStream::connect(&p.base["http://".len()..]).unwrap();
    write!(
        s,
        "GET http://evil.invalid:1/cranfield/_count HTTP/1.1\r\nHost: evil.invalid:1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"count\":1400"), "{answer}");
}

#[test]
fn judged_searches_report_the_boost() {
    let Some(node) = node() else { return };
    let p = ProxyProc::start(node, "minilm", &["--topn", "20"]);
    let data = repo().join("../shared/data/cranfield");
    let queries: Vec<Value> = std::fs::read_to_string(data.join("queries.jsonl"))
        .unwrap()
        .lines()
        .take(4)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let qrels = std::fs::read_to_string(data.join("qrels.tsv")).unwrap();
    for q in &queries {
        let qid = q["_id"].as_str().unwrap();
        let relevant: serde_json::Map<String, Value> = qrels
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0] == qid).then(|| (f[1].to_string(), json!(f[2].parse::<i64>().unwrap())))
            })
            .collect();
        let body =
            json!({"query": {"match": {"text": q["text"]}}, "nboost": {"relevant": relevant}});
        let (_, _, via) = json_of(post(&p.http, &p.base, "/cranfield/_search", &body));
        let eval = &via["nboost"]["eval"];
        for order in ["upstream", "reranked"] {
            let ndcg = eval[order]["ndcg@10"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&ndcg), "{via}");
        }
    }
    let status = p.status();
    let eval = &status["eval"];
    assert_eq!(eval["searches"], 4, "{status}");
    let (up, re) = (
        eval["upstream"]["mrr@10"].as_f64().unwrap(),
        eval["reranked"]["mrr@10"].as_f64().unwrap(),
    );
    if up > 0.0 {
        assert!((eval["boost"].as_f64().unwrap() - re / up).abs() < 1e-9);
    }
    assert_eq!(status["reranked"], 4);
    assert_eq!(status["rerank_ms"]["count"], 4);
}

#[test]
fn a_search_body_over_the_limit_passes_through_streamed() {
    let Some(node) = node() else { return };
    let p = ProxyProc::start(node, "lexical", &["--max-request-bytes", "256"]);
    // A query padded past the limit with clauses that match nothing.
    let should: Vec<Value> = (0..40)
        .map(|i| json!({"term": {"text": format!("nosuchterm{i}")}}))
        .collect();
    let q =
        json!({"query": {"bool": {"should": should, "must": {"match": {"text": "wing lift"}}}}});
    assert!(q.to_string().len() > 256);
    let (status, h, via) = json_of(post(&p.http, &p.base, "/cranfield/_search", &q));
    let (_, _, direct) = json_of(post(&p.http, node, "/cranfield/_search", &q));
    assert_eq!(status, 200, "{via}");
    assert!(
        header(&h, "x-nboost-skipped").starts_with("request_too_large"),
        "{h:?}"
    );
    assert_eq!(ids(&via), ids(&direct));
    assert_eq!(p.status()["skipped_by_reason"]["request_too_large"], 1);
}
