//! `nboost serve` operations: quotas and backpressure, atomic version
//! switches under load, health/metrics/OpenAPI, draining on SIGTERM, the
//! tenants CLI on a live server, `kill -9` during uploads, and the official
//! Cohere client.

#![allow(unused_imports, reason = "shared test imports")]

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use reqwest::blocking::multipart;
use serde_json::{json, Value};

use crate::common::{model_file, repo, wasm};
use crate::server::*;

#[test]
fn quotas_and_backpressure_answer_429() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let small = add_tenant(
        &data,
        "small",
        &["--max-components", "1", "--max-bytes", "5000000"],
    );
    let busy = add_tenant(&data, "busy", &["--max-concurrent", "1"]);
    let strict = add_tenant(
        &data,
        "strict",
        &["--max-deadline-ms", "300", "--max-memory-mib", "32"],
    );
    let other = add_tenant(&data, "other", &[]);
    let s = Server::start(
        dir.path(),
        &["--max-concurrent-requests", "2", "--workers", "4"],
    );

    // Count and bytes.
    let lexical = read("nboost_reranker_lexical");
    assert_eq!(
        s.put_component(&small, "one", lexical.clone(), json!({}))
            .status(),
        201
    );
    let m = assert_error(
        s.put_component(&small, "two", lexical.clone(), json!({})),
        429,
        "quota_exceeded",
    );
    assert!(m.contains("quota is 1"), "{m}");
    let big = vec![b'x'; 5_000_000];
    let m = assert_error(
        s.put_graph(&small, "big", big, "text"),
        429,
        "quota_exceeded",
    );
    assert!(m.contains("bytes"), "{m}");
    // Replacing counts the new size, not both.
    assert_eq!(
        s.put_component(&small, "one", lexical.clone(), json!({}))
            .status(),
        200
    );

    // Per-tenant deadline: narrower than the host's.
    let hostile = read("nboost_hostile");
    let slow = |ms: u32| json!({"settings": {"attack": "slow", "slow-ms": ms}});
    assert_eq!(
        s.put_component(&strict, "slow", hostile.clone(), slow(1000))
            .status(),
        201
    );
    let body = json!({"model": "slow", "query": "q", "documents": ["a"]});
    let m = assert_error(s.post(&strict, "/v1/rerank", &body), 504, "timeout");
    assert!(m.contains("300 ms"), "{m}");
    // Per-tenant memory cap: narrower than the host's.
    let bomb = json!({"settings": {"attack": "memory-bomb"}});
    assert_eq!(
        s.put_component(&strict, "bomb", hostile.clone(), bomb)
            .status(),
        201
    );
    let bomb_call = json!({"model": "bomb", "query": "q", "documents": ["a"]});
    let m = assert_error(
        s.post(&strict, "/v1/rerank", &bomb_call),
        502,
        "guest_fault",
    );
    assert!(m.contains(&(32u64 << 20).to_string()), "{m}");
    // Calls that stay in flight long enough to be seen there.
    assert_eq!(
        s.put_component(&busy, "slow", hostile.clone(), slow(3000))
            .status(),
        201
    );
    assert_eq!(
        s.put_component(&other, "slow", hostile.clone(), slow(3000))
            .status(),
        201
    );

    // One call of `busy` in flight: its second is over its quota.
    std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            s.post(
                &busy,
                "/v1/rerank",
                &json!({"model": "slow", "query": "q", "documents": ["a"]}),
            )
            .status()
        });
        s.wait_in_use(&busy, 1.0);
        assert_error(s.post(&busy, "/v1/rerank", &body), 429, "quota_exceeded");
        let second = scope.spawn(|| {
            s.post(
                &other,
                "/v1/rerank",
                &json!({"model": "slow", "query": "q", "documents": ["a"]}),
            )
            .status()
        });
        s.wait_in_use(&busy, 2.0);
        // Two calls in flight: the server's limit of 2 is reached.
        assert_error(
            s.post(
                &other,
                "/v1/rerank",
                &json!({"model": "lexical", "query": "q", "documents": ["a"]}),
            ),
            429,
            "overloaded",
        );
        assert_eq!(first.join().unwrap(), 200);
        assert_eq!(second.join().unwrap(), 200);
    });
    assert!(s.metric(&other, "nboost_rerank_failures_total{kind=\"overloaded\"}") >= 1.0);
    assert!(
        s.metric(
            &other,
            "nboost_rerank_failures_total{kind=\"quota_exceeded\"}"
        ) >= 1.0
    );
    assert!(s.metric(&other, "nboost_rerank_failures_total{kind=\"timeout\"}") >= 1.0);
}

#[test]
fn new_versions_switch_atomically_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &["--workers", "4"]);
    let hostile = read("nboost_hostile");
    let lexical = read("nboost_reranker_lexical");
    let body = json!({"model": "swap", "query": QUERY, "documents": docs()});
    assert_eq!(
        s.put_component(
            &key,
            "swap",
            hostile,
            json!({"settings": {"attack": "slow", "slow-ms": 3000}})
        )
        .status(),
        201
    );
    std::thread::scope(|scope| {
        let old = scope.spawn(|| json_of(s.post(&key, "/v1/rerank", &body)));
        s.wait_in_use(&key, 1.0);
        // Replace while the old version is mid-call.
        let (status, v) = json_of(s.put_component(&key, "swap", lexical, json!({})));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["version"], 2);
        let (status, new) = json_of(s.post(&key, "/v1/rerank", &body));
        assert_eq!(status, 200, "{new}");
        assert_eq!(
            new["results"][0]["index"], 1,
            "version 2 (BM25) answers new calls: {new}"
        );
        let (status, old) = old.join().unwrap();
        assert_eq!(
            status, 200,
            "the in-flight call finished on version 1: {old}"
        );
        assert_eq!(
            old["results"][0]["relevance_score"], 85.0,
            "version 1 scores by length: {old}"
        );
    });
}

#[test]
fn health_metrics_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let (status, v) = json_of(s.http.get(s.url("/health")).send().unwrap());
    assert_eq!((status, v), (200, json!({"status": "ok"})));
    assert_error(
        s.http.get(s.url("/metrics")).send().unwrap(),
        401,
        "unauthorized",
    );
    assert_error(
        s.http.get(s.url("/info")).send().unwrap(),
        401,
        "unauthorized",
    );
    // The API's description is public, as TEI's is: the document and a
    // bundled docs page that loads nothing from elsewhere.
    assert_eq!(
        s.http.get(s.url("/openapi.json")).send().unwrap().status(),
        200
    );
    let page = s.http.get(s.url("/docs/")).send().unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "{html}"
    );
    let init = s
        .http
        .get(s.url("/docs/swagger-initializer.js"))
        .send()
        .unwrap();
    assert_eq!(init.status(), 200);
    let init = init.text().unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    // No online validator (Swagger UI's default is swagger.io's).
    assert!(init.contains("validatorUrl"), "{init}");
    assert!(!init.contains("http"), "{init}");
    assert_eq!(
        s.http
            .get(s.url("/docs/swagger-ui-bundle.js"))
            .send()
            .unwrap()
            .status(),
        200
    );

    assert_eq!(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"model": "lexical", "query": "q", "documents": ["q a"]})
        )
        .status(),
        200
    );
    assert_eq!(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"model": "nope", "query": "q", "documents": ["a"]})
        )
        .status(),
        404
    );
    let r = s.get(&key, "/metrics");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().unwrap();
    for needle in [
        "nboost_rerank_requests_total{api=\"cohere\"} 2",
        "nboost_rerank_failures_total{kind=\"not_found\"} 1",
        "nboost_rerank_queue_duration_seconds_count 1",
        "nboost_rerank_instantiate_duration_seconds_count 1",
        "nboost_rerank_guest_duration_seconds_count 1",
        "nboost_http_requests_total{method=\"POST\",route=\"/v1/rerank\",status=\"200\"} 1",
        "nboost_instances_in_use 0",
        "nboost_instances_idle 1",
    ] {
        assert!(text.contains(needle), "no `{needle}` in\n{text}");
    }

    // The operator's metrics listener needs no key.
    let operator = s.http.get(s.metrics.as_deref().unwrap()).send().unwrap();
    assert_eq!(operator.status(), 200);
    assert!(operator
        .text()
        .unwrap()
        .contains("nboost_rerank_requests_total"));

    // The OpenAPI document names every route the server answers.
    let (status, doc) = json_of(s.get(&key, "/openapi.json"));
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/health", &["get"][..]),
        ("/v1/rerank", &["post"]),
        ("/v2/rerank", &["post"]),
        ("/rerank", &["post"]),
        ("/v1/components", &["get"]),
        ("/v1/components/{name}", &["get", "put", "delete"]),
        ("/v1/graphs", &["get"]),
        ("/v1/graphs/{name}", &["get", "put", "delete"]),
        ("/v1/aliases", &["get"]),
        ("/v1/aliases/{name}", &["get", "put", "delete"]),
        ("/info", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
        ("/docs/", &["get"]),
    ] {
        for m in methods {
            assert!(
                paths[path].get(m).is_some(),
                "{path} {m} missing from the OpenAPI document"
            );
        }
    }
    assert!(s
        .http
        .get(s.url("/health"))
        .send()
        .unwrap()
        .status()
        .is_success());
}

#[test]
fn sigterm_drains_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let mut s = Server::start(dir.path(), &[]);
    let slow = json!({"settings": {"attack": "slow", "slow-ms": 1500}});
    assert_eq!(
        s.put_component(&key, "slow", read("nboost_hostile"), slow)
            .status(),
        201
    );
    let status = std::thread::scope(|scope| {
        let call = scope.spawn(|| {
            s.post(
                &key,
                "/v1/rerank",
                &json!({"model": "slow", "query": "q", "documents": ["abc"]}),
            )
        });
        s.wait_in_use(&key, 1.0);
        let kill = Command::new("kill")
            .args(["-TERM", &s.pid().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let r = call.join().unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap();
        assert_eq!(v["results"][0]["relevance_score"], 3.0, "{v}");
        status
    });
    assert_eq!(status, 200, "the call in flight finished");
    let exit = s.child.wait().unwrap();
    assert!(
        exit.success(),
        "clean exit after draining: {exit:?}\n{}",
        s.log_text()
    );
    assert!(s.log_text().contains("draining"), "{}", s.log_text());
}

#[test]
fn tenants_cli_rotates_keys_on_a_live_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let old = add_tenant(&data, "acme", &[]);
    let s = Server::start(dir.path(), &[]);
    assert_eq!(s.get(&old, "/v1/components").status(), 200);
    // Added while the server runs: usable at once.
    let late = add_tenant(&data, "late", &[]);
    assert_eq!(s.get(&late, "/v1/components").status(), 200);
    let out = nboost()
        .args(["tenants", "rotate-key", "acme", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let new = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_ne!(new, old);
    assert_error(s.get(&old, "/v1/components"), 401, "unauthorized");
    assert_eq!(s.get(&new, "/v1/components").status(), 200);
    // Errors: duplicate, unknown, bad name.
    let dup = nboost()
        .args(["tenants", "add", "acme", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let unknown = nboost()
        .args(["tenants", "rotate-key", "nobody", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let list = nboost()
        .args(["tenants", "list", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8(list.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(!text.contains(&new), "keys are never listed");
    // Keys are stored hashed only.
    let db = std::fs::read(data.join("meta.sqlite")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(&new));
}

#[test]
fn tenants_file_configures_tenants_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = nboost().args(["tenants", "new-key"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let key = lines.next().unwrap().to_string();
    let hash_line = lines.next().unwrap();
    assert!(hash_line.starts_with("key-sha256 = "), "{hash_line}");
    let file = dir.path().join("tenants.toml");
    std::fs::write(
        &file,
        format!("[tenants.from-file]\n{hash_line}\nmax-components = 0\n"),
    )
    .unwrap();
    let s = Server::start(dir.path(), &["--tenants", file.to_str().unwrap()]);
    assert_eq!(s.get(&key, "/v1/components").status(), 200);
    // Its quotas came from the file too.
    let r = s.put_component(&key, "x", read("nboost_reranker_lexical"), json!({}));
    assert_error(r, 429, "quota_exceeded");
    drop(s);
    // A malformed file stops the server from starting, with a reason.
    std::fs::write(&file, "[tenants.bad]\nkey-sha256 = \"abc\"\n").unwrap();
    let out = nboost()
        .args(["--manifest"])
        .arg(dir.path().join("nboost.toml"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--tenants", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hex digits"));
}

/// Check what a restarted server serves: every listed component of the
/// tenant loads and reranks, and its digest is the sha256 of its blob file.
fn check_consistent(s: &Server, key: &str, data: &Path) -> Vec<(String, u64)> {
    let (status, v) = json_of(s.get(key, "/v1/components"));
    assert_eq!(status, 200, "{v}");
    let blobs = data.join("blobs");
    let temps: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files survived recovery: {temps:?}");
    let mut seen = Vec::new();
    for c in v["components"].as_array().unwrap() {
        if c["owner"] != "tenant" {
            continue;
        }
        let name = c["name"].as_str().unwrap();
        let digest = c["digest"].as_str().unwrap();
        let file = blobs.join(digest.trim_start_matches("sha256:"));
        let bytes = std::fs::read(&file)
            .unwrap_or_else(|e| panic!("{name}: blob {} missing: {e}", file.display()));
        assert_eq!(
            sha256(&bytes),
            digest,
            "{name}: blob does not match its digest"
        );
        let body = json!({"model": name, "query": QUERY, "documents": docs()});
        let (status, r) = json_of(s.post(key, "/v1/rerank", &body));
        assert_eq!(status, 200, "{name} does not load after the restart: {r}");
        seen.push((name.to_string(), c["version"].as_u64().unwrap()));
    }
    seen
}

/// Acknowledged uploads `(name, version)`, and a signal for each new one.
type Acked = Arc<(Mutex<Vec<(String, u64)>>, Condvar)>;

#[test]
fn kill_9_during_uploads_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = add_tenant(&data, "crash", &[]);
    let files = [read("nboost_reranker_lexical"), read("nboost_hostile")];
    for round in 0..3u64 {
        let mut s = Server::start(dir.path(), &[]);
        check_consistent(&s, &key, &data);
        // Upload in a loop on one thread; kill -9 from this one once a few
        // uploads were acknowledged (the next one is then in progress).
        let acked: Acked = Default::default();
        let want = 2 + round as usize;
        let (http, base) = (s.http.clone(), s.base.clone());
        std::thread::scope(|scope| {
            let uploader = scope.spawn(|| {
                for i in 0.. {
                    let name = format!("c{}", i % 3);
                    let form = multipart::Form::new()
                        .part(
                            "file",
                            multipart::Part::bytes(files[(i + round as usize) % 2].clone()),
                        )
                        .text("config", "{}");
                    let sent = http
                        .put(format!("{base}/v1/components/{name}"))
                        .bearer_auth(&key)
                        .multipart(form)
                        .send();
                    let Ok(r) = sent else { break };
                    let Ok(v) = r.json::<Value>() else { break };
                    let version = v["version"].as_u64().unwrap_or_else(|| panic!("{v}"));
                    let (list, cv) = &*acked;
                    list.lock().unwrap().push((name, version));
                    cv.notify_all();
                }
            });
            let (list, cv) = &*acked;
            let guard = cv
                .wait_timeout_while(list.lock().unwrap(), Duration::from_secs(300), |l| {
                    l.len() < want
                })
                .unwrap()
                .0;
            assert!(guard.len() >= want, "uploads stalled:\n{}", s.log_text());
            drop(guard);
            s.kill9();
            uploader.join().unwrap();
        });
        drop(s);
        // Restart: consistent, and every acknowledged upload is there (at
        // its version or a later one that committed unacknowledged).
        let s = Server::start(dir.path(), &[]);
        let seen = check_consistent(&s, &key, &data);
        for (name, version) in acked.0.lock().unwrap().iter() {
            let now = seen.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            assert!(
                now.is_some_and(|v| v >= *version),
                "{name} v{version} was acknowledged but is {now:?}"
            );
        }
    }
}

/// The official Python `cohere` client, pointed at the server.
#[test]
fn official_cohere_python_client_works() {
    let Some(python) = crate::clients::venv_tool("cohere") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);
    let script = r#"
import json, sys, cohere
base, key = sys.argv[1], sys.argv[2]
docs = ["The migration of birds follows the seasons.",
        "What causes lift on an aircraft wing is the pressure difference between its surfaces.",
        "Aircraft wings are shaped to produce lift at low drag."]
v2 = cohere.ClientV2(base_url=base, api_key=key).rerank(
    model="lexical", query="what causes lift on an aircraft wing", documents=docs, top_n=2)
v1 = cohere.Client(base_url=base, api_key=key).rerank(
    model="lexical", query="what causes lift on an aircraft wing", documents=docs, top_n=2,
    return_documents=True)
try:
    cohere.ClientV2(base_url=base, api_key="nbk_wrong").rerank(model="lexical", query="q", documents=["a"])
    unauthorized = None
except cohere.errors.UnauthorizedError as e:
    unauthorized = e.status_code
print(json.dumps({
    "v2": [[r.index, r.relevance_score] for r in v2.results],
    "v1": [[r.index, r.relevance_score, r.document.text] for r in v1.results],
    "unauthorized": unauthorized,
}))
"#;
    let out = Command::new(&python)
        .args(["-c", script, &s.base, &key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["v2"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["v2"][0][0], 1, "{v}");
    assert_eq!(v["v1"][0][0], 1, "{v}");
    assert_eq!(
        v["v1"][0][2],
        "What causes lift on an aircraft wing is the pressure difference between its surfaces."
    );
    assert_eq!(v["v2"][0][1], v["v1"][0][1]);
    assert_eq!(v["unauthorized"], 401);
}
