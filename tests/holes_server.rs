//! The attacker tenant of the sandbox-holes issue against a live
//! `nboost serve`: each attack runs over HTTP from one tenant while a
//! neighbour tenant keeps calling, and must keep being answered correctly.
//! The server has 2 workers, so before the fix two sleeping calls froze
//! every tenant. The neighbour's latencies are printed (run with
//! `--nocapture`) for the benchmark notes; nothing asserts a duration.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::holes::bombs;
use crate::server::{add_tenant, assert_error, docs, json_of, read, Server, QUERY};

/// One neighbour rerank with the public lexical component: it must answer
/// 200 with the judged-best document first. Returns its latency.
fn neighbour_call(s: &Server, key: &str) -> Duration {
    let t = Instant::now();
    let r = s.post(
        key,
        "/v1/rerank",
        &json!({"model": "lexical", "query": QUERY, "documents": docs(), "top_n": 2}),
    );
    let took = t.elapsed();
    let (status, v) = json_of(r);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["index"], 1, "{v}");
    took
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!("p50 {:?} p99 {:?}", at(0.5), at(0.99))
}

/// Run `attacker` (a closure doing the attack's calls) on other threads
/// while the neighbour calls; returns the attack's results.
fn under_attack<T: Send>(
    s: &Server,
    neighbour: &str,
    label: &str,
    attacker: impl Fn() -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3).map(|_| scope.spawn(&attacker)).collect();
        let mut lat = Vec::new();
        for _ in 0..6 {
            lat.push(neighbour_call(s, neighbour));
        }
        let out = handles.into_iter().map(|h| h.join().unwrap()).collect();
        eprintln!("neighbour during {label}: {}", percentiles(lat));
        out
    })
}

fn rerank(s: &Server, key: &str, model: &str) -> (u16, Value) {
    json_of(s.post(
        key,
        "/v1/rerank",
        &json!({"model": model, "query": QUERY, "documents": docs()}),
    ))
}

#[test]
fn attacks_over_http_leave_the_neighbour_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let attacker = add_tenant(
        &data,
        "attacker",
        &["--max-deadline-ms", "2000", "--max-memory-mib", "256"],
    );
    let neighbour = add_tenant(&data, "neighbour", &[]);
    let s = Server::start(
        dir.path(),
        &[
            "--workers",
            "2",
            "--compile-timeout-ms",
            "1000",
            "--compile-memory-mib",
            "16384",
        ],
    );
    let baseline: Vec<Duration> = (0..20).map(|_| neighbour_call(&s, &neighbour)).collect();
    eprintln!("neighbour baseline: {}", percentiles(baseline));

    let hostile = read("nboost_hostile");
    let attacks = [
        (
            "sleep",
            json!({"attack": "sleep"}),
            504,
            "deadline of 2000 ms exceeded",
        ),
        (
            "block",
            json!({"attack": "block"}),
            504,
            "deadline of 2000 ms exceeded",
        ),
        (
            "poll",
            json!({"attack": "poll"}),
            504,
            "deadline of 2000 ms exceeded",
        ),
        (
            "huge-compute",
            json!({"attack": "huge-compute", "graph": "all-minilm-l6-v2", "rounds": 100}),
            504,
            "deadline of 2000 ms exceeded",
        ),
        (
            "tensor-flood",
            json!({"attack": "tensor-flood", "flood-mib": 4}),
            502,
            "out of memory",
        ),
        (
            "log-flood",
            json!({"attack": "log-flood", "count": 20000}),
            200,
            "",
        ),
    ];
    for (name, settings, status, needle) in &attacks {
        // A 64 MiB budget: the flood is refused after a few small copies,
        // well inside the deadline even on a loaded machine.
        let r = s.put_component(
            &attacker,
            name,
            hostile.clone(),
            json!({
                "settings": settings,
                "graphs": ["all-minilm-l6-v2"],
                "limits": {"memory_mib": 64},
            }),
        );
        assert_eq!(r.status(), 201, "{name}: {}", r.text().unwrap());
        let results = under_attack(&s, &neighbour, name, || rerank(&s, &attacker, name));
        for (got, v) in results {
            assert_eq!(got, *status, "{name}: {v}");
            if !needle.is_empty() {
                let msg = v["error"].as_str().unwrap_or_default();
                assert!(msg.contains(needle), "{name}: {v}");
            }
        }
    }
    // The log flood (3 calls of 20 000 failures) left at most 4 lines a
    // call and a summary.
    let log = s.log_text();
    assert!(log.matches("wasi-nn call failed").count() <= 3 * 4, "{log}");
    assert!(log.contains("not logged"), "{log}");

    // Uploads: a `configure` that sleeps, and two compile bombs, while the
    // neighbour keeps reranking; after each, the neighbour's own upload
    // still succeeds.
    let lexical = read("nboost_reranker_lexical");
    let uploads: [(&str, Vec<u8>, Value, &str); 3] = [
        (
            "configure-sleep",
            hostile.clone(),
            json!({"settings": {"attack": "configure-sleep"}}),
            "`configure` ran past the 2000 ms deadline",
        ),
        (
            "locals-bomb",
            bombs::many_locals(5000),
            json!({}),
            "declares 5000 locals, over the limit of 4096",
        ),
        (
            "slow-bomb",
            bombs::slow_to_compile(8, 30_000),
            json!({}),
            "compilation took longer than the 1000 ms limit",
        ),
    ];
    for (i, (name, bytes, config, needle)) in uploads.into_iter().enumerate() {
        let results = under_attack(&s, &neighbour, name, || {
            s.put_component(&attacker, name, bytes.clone(), config.clone())
        });
        for r in results {
            let m = assert_error(r, 422, "validation");
            assert!(m.contains(needle), "{name}: {m}");
        }
        let mine = format!("mine-{i}");
        assert_eq!(
            s.put_component(&neighbour, &mine, lexical.clone(), json!({}))
                .status(),
            201
        );
    }
}

#[test]
fn a_client_that_disconnects_frees_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let attacker = add_tenant(&data, "attacker", &[]);
    let neighbour = add_tenant(&data, "neighbour", &[]);
    // A one-minute deadline: only the disconnect can end the call early.
    let s = Server::start(dir.path(), &["--workers", "2", "--deadline-ms", "60000"]);
    let r = s.put_component(
        &attacker,
        "sleeper",
        read("nboost_hostile"),
        json!({"settings": {"attack": "sleep"}}),
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let impatient = Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    for _ in 0..3 {
        let sent = impatient
            .post(s.url("/v1/rerank"))
            .bearer_auth(&attacker)
            .json(&json!({"model": "sleeper", "query": QUERY, "documents": docs()}))
            .send();
        assert!(sent.is_err(), "the sleeping call cannot answer in 500 ms");
    }
    // Each disconnect cancels its call: no instance stays in use (bounded
    // poll; without cancellation they would for a minute).
    let freed = (0..400).any(|_| {
        let ok = s.metric(&neighbour, "nboost_instances_in_use") == 0.0;
        if !ok {
            std::thread::sleep(Duration::from_millis(25));
        }
        ok
    });
    assert!(
        freed,
        "the disconnected calls still hold workers:\n{}",
        s.log_text()
    );
    assert!(s.log_text().contains("call cancelled"), "{}", s.log_text());
    neighbour_call(&s, &neighbour);
}
