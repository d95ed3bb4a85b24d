//! Request ids: every response carries `x-request-id` (the caller's when it
//! is plain, else a fresh one), and the request's log lines are tagged with
//! it, so one call can be followed through auth, queue, instantiate, guest
//! and back-end spans.

use serde_json::json;

use crate::server::{add_tenant, docs, Server, QUERY};

#[test]
fn responses_and_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);
    let body = json!({"model": "lexical", "query": QUERY, "documents": docs()});
    let r = s
        .http
        .post(s.url("/v1/rerank"))
        .bearer_auth(&key)
        .header("x-request-id", "trace-me-42")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    // The first call loads the component: that log line is in the span.
    let log = s.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("trace-me-42") && l.contains("component loaded")),
        "{log}"
    );

    // No id, or one that is not plain: a fresh one, 16 hex digits.
    for given in [None, Some("bad id\twith spaces")] {
        let mut req = s
            .http
            .post(s.url("/v1/rerank"))
            .bearer_auth(&key)
            .json(&body);
        if let Some(g) = given {
            req = req.header("x-request-id", g);
        }
        let r = req.send().unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    // Errors carry one too.
    let r = s.http.get(s.url("/v1/components")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-request-id"));
}
