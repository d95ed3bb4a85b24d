//! `nboost proxy` in front of a real OpenSearch 2.19 node (built from
//! Maven Central by ../shared/opensearch/run.sh), with Cranfield indexed
//! under the `english` analyzer. Each test compares what a client gets
//! through the proxy with what the node answers directly.
//!
//! The node: `NBOOST_TEST_OPENSEARCH` when set, else one started here on a
//! free port and stopped by a watchdog when the test process exits.
//! Without Java or the venv's `opensearchpy` the tests skip (under CI they
//! fail).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use crate::clients::venv_tool;
use crate::common::{
    backend_available, cache_dir, ort_library, repo, standard_manifest, stop_at_exit, wasm,
};
use crate::server::nboost;

/// The test node's URL, Cranfield indexed as `cranfield`; `None`: skip.
pub(crate) fn node() -> Option<&'static str> {
    static NODE: OnceLock<Option<String>> = OnceLock::new();
    NODE.get_or_init(start_node).as_deref()
}

/// A port `p` with `p + 100` (the node's transport port) free too.
fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65000 && TcpListener::bind(("127.0.0.1", p + 100)).is_ok() {
            return p;
        }
    }
}

fn start_node() -> Option<String> {
    let python = venv_tool("opensearchpy")?;
    let url = match std::env::var("NBOOST_TEST_OPENSEARCH") {
        Ok(url) => url,
        Err(_) => {
            let run = repo().join("../shared/opensearch/run.sh");
            let java = Command::new("java").arg("-version").output();
            if !run.exists() || !java.is_ok_and(|o| o.status.success()) {
                backend_available(
                    "Java 17 and ../shared/opensearch/run.sh (a real OpenSearch node)",
                    false,
                );
                return None;
            }
            let port = free_port_pair().to_string();
            let dir = repo().join(format!("target/opensearch-test/{port}"));
            let out = Command::new("bash")
                .arg(&run)
                .args(["start", &port])
                .arg(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "the OpenSearch node did not start:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Stop the node when this test process ends, however it ends:
            // a watchdog in the background (the shell that starts it exits
            // at once).
            stop_at_exit(&run, "stop", &dir);
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }
    };
    let out = Command::new(python)
        .arg(repo().join("tests/proxy/index.py"))
        .arg(&url)
        .arg(repo().join("../shared/data/cranfield"))
        .arg("cranfield")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "indexing Cranfield failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(url)
}

/// A running `nboost proxy`; killed on drop.
pub(crate) struct ProxyProc {
    child: Child,
    pub(crate) base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    pub(crate) http: Client,
}

impl ProxyProc {
    /// `nboost proxy --upstream UPSTREAM -c COMPONENT EXTRA...`, over the
    /// standard manifest plus two hostile components (`trap`, `slow`).
    pub(crate) fn start(upstream: &str, component: &str, extra: &[&str]) -> ProxyProc {
        let dir = tempfile::tempdir().unwrap();
        let hostile = wasm("nboost_hostile");
        let manifest = format!(
            "{}\n[components.trap]\npath = \"{h}\"\nsettings = {{ attack = \"trap\" }}\n\
             [components.slow]\npath = \"{h}\"\nsettings = {{ attack = \"slow\", slow-ms = 3000 }}\n",
            standard_manifest(),
            h = hostile.display()
        );
        let path = dir.path().join("nboost.toml");
        std::fs::write(&path, manifest).unwrap();
        let log = dir.path().join("proxy.log");
        let mut cmd = nboost();
        cmd.arg("--manifest")
            .arg(&path)
            .arg("--cache-dir")
            .arg(cache_dir());
        if let Some(lib) = ort_library() {
            cmd.args(["--backend", "ort", "--ort-library"]).arg(lib);
        }
        let mut child = cmd
            .args(["--threads", "2", "proxy", "--listen", "127.0.0.1:0"])
            .args(["--upstream", upstream, "-c", component])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("nboost proxy starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the proxy did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        ProxyProc {
            child,
            base: addr.to_string(),
            log,
            _dir: dir,
            http: Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn status(&self) -> Value {
        self.http
            .get(format!("{}/nboost/status", self.base))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST `body` to `base` + `path`.
pub(crate) fn post(http: &Client, base: &str, path: &str, body: &Value) -> Response {
    http.post(format!("{base}{path}"))
        .json(body)
        .send()
        .unwrap()
}

pub(crate) fn json_of(r: Response) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.json().unwrap_or(Value::Null);
    (status, headers, body)
}

pub(crate) fn ids(answer: &Value) -> Vec<String> {
    answer["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {answer}"))
        .iter()
        .map(|h| h["_id"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

macro_rules! node_or_skip {
    () => {
        match node() {
            Some(url) => url,
            None => return,
        }
    };
}

#[test]
fn every_query_form_is_reranked_within_the_upstreams_top_n() {
    let node = node_or_skip!();
    let p = ProxyProc::start(node, "lexical", &["--topn", "20"]);
    let text = "aeroelastic models of heated high speed aircraft";
    let forms = [
        json!({"match": {"text": text}}),
        json!({"match": {"text": {"query": text, "operator": "or"}}}),
        json!({"match_phrase": {"text": "high speed"}}),
        json!({"multi_match": {"query": text, "fields": ["title^2", "text"]}}),
        json!({"query_string": {"query": "text:(aeroelastic OR heated) AND aircraft"}}),
        json!({"simple_query_string": {"query": "aeroelastic + \"high speed\""}}),
        json!({"term": {"text": "aircraft"}}),
        json!({"bool": {"must": [{"match": {"text": text}}], "filter": [{"exists": {"field": "title"}}]}}),
        json!({"bool": {"should": [{"match": {"title": "wing"}}, {"match": {"text": "lift"}}]}}),
    ];
    let mut reordered = 0;
    for q in forms {
        let direct = post(
            &p.http,
            node,
            "/cranfield/_search",
            &json!({"query": q, "size": 20}),
        );
        let (_, _, direct) = json_of(direct);
        let r = post(
            &p.http,
            &p.base,
            "/cranfield/_search",
            &json!({"query": q, "size": 10}),
        );
        let (status, h, body) = json_of(r);
        assert_eq!(status, 200, "{q}: {body}");
        assert_eq!(header(&h, "x-nboost-reranked"), "true", "{q}: {body}");
        assert_eq!(body["nboost"]["reranked"], true);
        let got = ids(&body);
        let top = ids(&direct);
        assert_eq!(got.len(), top.len().min(10), "{q}");
        assert!(
            got.iter().all(|id| top.contains(id)),
            "{q}: {got:?} not in {top:?}"
        );
        let scores: Vec<f64> = body["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["_score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{q}: {scores:?}");
        assert_eq!(body["hits"]["max_score"].as_f64(), scores.first().copied());
        assert_eq!(body["hits"]["total"], direct["hits"]["total"], "{q}");
        assert_eq!(body["_shards"], direct["_shards"]);
        for hit in body["hits"]["hits"].as_array().unwrap() {
            let up = &direct["hits"]["hits"]
                [hit["_nboost"]["upstream_rank"].as_u64().unwrap() as usize - 1];
            assert_eq!(up["_id"], hit["_id"]);
            assert_eq!(up["_score"], hit["_nboost"]["upstream_score"]);
            assert_eq!(up["_source"], hit["_source"]);
        }
        reordered += usize::from(got[..] != top[..got.len()]);
    }
    assert!(reordered > 0, "no query form came back in a new order");

    // `?q=` (a URI search).
    let r = p
        .http
        .get(format!(
            "{}/cranfield/_search?q=text:aeroelastic%20aircraft&size=3",
            p.base
        ))
        .send()
        .unwrap();
    let (status, h, body) = json_of(r);
    assert_eq!(
        (status.as_u16(), header(&h, "x-nboost-reranked")),
        (200, "true"),
        "{body}"
    );
    assert_eq!(ids(&body).len(), 3);
}

#[test]
fn pages_are_slices_of_one_reranked_order() {
    let node = node_or_skip!();
    let p = ProxyProc::start(node, "lexical", &["--topn", "30"]);
    let q = json!({"match": {"text": "boundary layer transition"}});
    let all = ids(&json_of(post(
        &p.http,
        &p.base,
        "/cranfield/_search",
        &json!({"query": q, "size": 10}),
    ))
    .2);
    let first = ids(&json_of(post(
        &p.http,
        &p.base,
        "/cranfield/_search",
        &json!({"query": q, "size": 5}),
    ))
    .2);
    let url = format!("{}/cranfield/_search?from=5&size=5", p.base);
    let second = ids(&p
        .http
        .post(url)
        .json(&json!({"query": q}))
        .send()
        .unwrap()
        .json()
        .unwrap());
    assert_eq!([first, second].concat(), all);

    // Beyond the reranked top: the upstream's page, and a header that says so.
    let body = json!({"query": q, "from": 25, "size": 10});
    let (_, h, mut via) = json_of(post(&p.http, &p.base, "/cranfield/_search", &body));
    let (_, _, mut direct) = json_of(post(&p.http, node, "/cranfield/_search", &body));
    assert!(
        header(&h, "x-nboost-skipped").starts_with("beyond_topn"),
        "{h:?}"
    );
    for a in [&mut direct, &mut via] {
        a.as_object_mut().unwrap().remove("took");
    }
    assert_eq!(via, direct);
}

#[test]
fn source_filters_are_kept_and_the_text_still_read() {
    let node = node_or_skip!();
    let p = ProxyProc::start(node, "lexical", &["--topn", "20"]);
    let q = json!({"match": {"text": "shock wave interaction"}});
    let full = ids(&json_of(post(
        &p.http,
        &p.base,
        "/cranfield/_search",
        &json!({"query": q}),
    ))
    .2);
    let cases: [(&str, Value); 6] = [
        ("", json!({"query": q, "_source": false})),
        ("", json!({"query": q, "_source": ["title"]})),
        (
            "",
            json!({"query": q, "_source": {"includes": ["ti*"], "excludes": ["text"]}}),
        ),
        ("?_source=false", json!({"query": q})),
        ("?_source_excludes=text", json!({"query": q})),
        (
            "",
            json!({"query": q, "_source": false, "fields": ["title"]}),
        ),
    ];
    for (params, body) in cases {
        let path = format!("/cranfield/_search{params}");
        let (_, h, via) = json_of(post(&p.http, &p.base, &path, &body));
        assert_eq!(
            header(&h, "x-nboost-reranked"),
            "true",
            "{path} {body}: {via}"
        );
        // The same text was scored: the same order as with the whole source.
        assert_eq!(ids(&via), full, "{path} {body}");
        let mut direct_body = body.clone();
        direct_body["size"] = 20.into();
        let (_, _, direct) = json_of(post(&p.http, node, &path, &direct_body));
        for hit in via["hits"]["hits"].as_array().unwrap() {
            let up = direct["hits"]["hits"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["_id"] == hit["_id"])
                .unwrap();
            assert_eq!(hit.get("_source"), up.get("_source"), "{path} {body}");
            assert_eq!(hit.get("fields"), up.get("fields"), "{path} {body}");
        }
    }
}

#[test]
fn searches_that_cannot_be_reranked_pass_through_unchanged() {
    let node = node_or_skip!();
    let p = ProxyProc::start(node, "lexical", &[]);
    let q = json!({"match": {"text": "heat transfer"}});
    let cases = [
        (
            "size_zero",
            json!({"query": q, "size": 0, "aggs": {"n": {"value_count": {"field": "_id"}}}}),
        ),
        ("sorted", json!({"query": q, "sort": [{"_doc": "asc"}]})),
        (
            "search_after",
            json!({"query": q, "sort": [{"_doc": "asc"}], "search_after": [10]}),
        ),
        ("no_query_text", json!({"query": {"match_all": {}}})),
        ("disabled", json!({"query": q, "nboost": {"rerank": false}})),
    ];
    for (code, body) in cases {
        let (status, h, via) = json_of(post(&p.http, &p.base, "/cranfield/_search", &body));
        assert_eq!(status, 200, "{code}: {via}");
        assert!(
            header(&h, "x-nboost-skipped").starts_with(code),
            "{code}: {h:?}"
        );
        let mut plain = body.clone();
        plain.as_object_mut().unwrap().remove("nboost");
        let (_, _, mut direct) = json_of(post(&p.http, node, "/cranfield/_search", &plain));
        let mut via = via;
        for a in [&mut direct, &mut via] {
            a.as_object_mut().unwrap().remove("took");
        }
        assert_eq!(via, direct, "{code}");
    }

    // A reranked search keeps the total the client asked to track.
    let body = json!({"query": q, "track_total_hits": true});
    let (_, _, via) = json_of(post(&p.http, &p.base, "/cranfield/_search", &body));
    let (_, _, direct) = json_of(post(&p.http, node, "/cranfield/_search", &body));
    assert_eq!(via["hits"]["total"], direct["hits"]["total"]);
    assert_eq!(via["nboost"]["reranked"], true);

    // A scroll passes through, and so do its continuation and clearing.
    let url = format!("{}/cranfield/_search?scroll=1m&size=100", p.base);
    let (_, h, first) = json_of(p.http.post(url).json(&json!({"query": q})).send().unwrap());
    assert!(header(&h, "x-nboost-skipped").starts_with("scroll"));
    let id = first["_scroll_id"].as_str().unwrap().to_string();
    let (status, _, next) = json_of(post(
        &p.http,
        &p.base,
        "/_search/scroll",
        &json!({"scroll": "1m", "scroll_id": id}),
    ));
    assert_eq!(status, 200, "{next}");
    assert_eq!(ids(&next).len(), 100);
    let r = p
        .http
        .delete(format!("{}/_search/scroll", p.base))
        .json(&json!({"scroll_id": id}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn everything_else_passes_through() {
    let node = node_or_skip!();
    let p = ProxyProc::start(node, "lexical", &[]);
    let base = &p.base;
    let http = &p.http;
    let idx = format!("scratch-{}", std::process::id());
    let _ = http.delete(format!("{node}/{idx}")).send();
    let r = http
        .put(format!("{base}/{idx}"))
        .json(&json!({"settings": {"number_of_replicas": 0}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let r = http
        .put(format!("{base}/{idx}/_doc/1?refresh=true"))
        .json(&json!({"title": "a", "text": "wing lift"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let bulk = format!(
        "{{\"index\":{{\"_index\":\"{idx}\",\"_id\":\"2\"}}}}\n{{\"text\":\"drag\"}}\n\
         {{\"index\":{{\"_index\":\"{idx}\",\"_id\":\"3\"}}}}\n{{\"text\":\"lift of a wing\"}}\n"
    );
    let r = http
        .post(format!("{base}/_bulk?refresh=true"))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap();
    let b: Value = r.json().unwrap();
    assert_eq!(b["errors"], false, "{b}");
    let doc: Value = http
        .get(format!("{base}/{idx}/_doc/3"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(doc["_source"]["text"], "lift of a wing");
    for path in [
        format!("/{idx}/_mapping"),
        format!("/{idx}/_count"),
        "/".to_string(),
    ] {
        let via: Value = http
            .get(format!("{base}{path}"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let direct: Value = http
            .get(format!("{node}{path}"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(via, direct, "{path}");
    }
    let cat = http
        .get(format!("{base}/_cat/indices?v"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(cat.contains(&idx) && cat.contains("health"), "{cat}");
    assert_eq!(
        http.head(format!("{base}/{idx}")).send().unwrap().status(),
        200
    );
    let via = http
        .get(format!("{base}/no-such-index/_doc/1"))
        .send()
        .unwrap();
    let direct = http
        .get(format!("{node}/no-such-index/_doc/1"))
        .send()
        .unwrap();
    assert_eq!(via.status(), 404);
    assert_eq!(
        via.json::<Value>().unwrap(),
        direct.json::<Value>().unwrap()
    );
    // A search of the new index is reranked, its hits scored on `text` alone.
    let (_, h, s) = json_of(post(
        http,
        base,
        &format!("/{idx}/_search"),
        &json!({"query": {"match": {"text": "wing lift drag"}}}),
    ));
    assert_eq!(header(&h, "x-nboost-reranked"), "true", "{s}");
    assert_eq!(ids(&s).len(), 3);
    assert_eq!(
        http.delete(format!("{base}/{idx}"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn msearch_reranks_each_search_on_its_own() {
    let node = node_or_skip!();
    let p = ProxyProc::start(node, "lexical", &["--topn", "20"]);
    let q = json!({"match": {"text": "supersonic flow"}});
    let lines = [
        json!({"index": "cranfield"}),
        json!({"query": q, "size": 5}),
        json!({"index": "cranfield"}),
        json!({"query": q, "size": 5, "sort": [{"_doc": "asc"}]}),
        json!({}),
        json!({"query": {"match": {"title": "wing"}}, "size": 3}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let send = |base: &str| {
        p.http
            .post(format!("{base}/_msearch"))
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .unwrap()
    };
    let (status, h, via) = json_of(send(&p.base));
    assert_eq!(status, 200, "{via}");
    assert_eq!(header(&h, "x-nboost-reranked"), "2/3");
    let (_, _, direct) = json_of(send(node));
    let r = via["responses"].as_array().unwrap();
    assert_eq!(r[0]["nboost"]["reranked"], true);
    assert_eq!(ids(&r[0]).len(), 5);
    assert_eq!(r[1]["nboost"]["skipped"], "sorted");
    assert_eq!(ids(&r[1]), ids(&direct["responses"][1]));
    assert_eq!(r[2]["nboost"]["reranked"], true);
    assert_eq!(ids(&r[2]).len(), 3);
}
