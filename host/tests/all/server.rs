//! `nboost serve`, as a client sees it: the real binary on a loopback port
//! (port 0; the bound address is read from its first stdout line), spoken
//! to over HTTP. Tenants are made with the real `nboost tenants` CLI.
//! Nothing here sleeps to synchronise: the server is ready when `/health`
//! answers (bounded poll), and a call is "in flight" when `/metrics` says an
//! instance is in use (bounded poll).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use reqwest::blocking::{multipart, Client, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{cache_dir, model_file, repo, standard_manifest, wasm};

pub(crate) fn nboost() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nboost"));
    c.env_remove("RUST_LOG").env_remove("NBOOST_DATA_DIR");
    c
}

/// Add a tenant with the CLI; returns its key (the CLI's only stdout line).
pub(crate) fn add_tenant(data: &Path, name: &str, quotas: &[&str]) -> String {
    let out = nboost()
        .args(["tenants", "add", name, "--data-dir"])
        .arg(data)
        .args(quotas)
        .output()
        .expect("nboost tenants add runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("nbk_"), "{key}");
    key
}

/// A running `nboost serve`; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    /// The `--metrics-listen` URL, if any.
    metrics: Option<String>,
    log: PathBuf,
    pub(crate) http: Client,
}

impl Server {
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Server {
        let manifest = dir.join("nboost.toml");
        if !manifest.exists() {
            std::fs::write(&manifest, standard_manifest()).unwrap();
        }
        let log = dir.join(format!(
            "server-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut child = nboost()
            .arg("--manifest")
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(cache_dir())
            .args([
                "--threads",
                "2",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.join("data"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("nboost serve starts");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut metrics = None;
        while reader.read_line(&mut line).unwrap() > 0 {
            match line.trim().strip_prefix("metrics on ") {
                Some(m) => metrics = Some(m.to_string()),
                None => break,
            }
            line.clear();
        }
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let server = Server {
            child,
            base: addr.to_string(),
            metrics,
            log,
            http: Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        };
        // Bounded readiness poll.
        let ready = (0..200).any(|_| {
            let ok = server
                .http
                .get(server.url("/health"))
                .send()
                .is_ok_and(|r| r.status() == 200);
            if !ok {
                std::thread::sleep(Duration::from_millis(25));
            }
            ok
        });
        assert!(ready, "server never became healthy:\n{}", server.log_text());
        server
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn post(&self, key: &str, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .unwrap()
    }

    pub(crate) fn get(&self, key: &str, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .unwrap()
    }

    pub(crate) fn delete(&self, key: &str, path: &str) -> Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .unwrap()
    }

    /// Upload a component: multipart with `file` and `config`.
    pub(crate) fn put_component(
        &self,
        key: &str,
        name: &str,
        bytes: Vec<u8>,
        config: Value,
    ) -> Response {
        let form = multipart::Form::new()
            .part("file", multipart::Part::bytes(bytes).file_name("c.wasm"))
            .text("config", config.to_string());
        self.http
            .put(self.url(&format!("/v1/components/{name}")))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .unwrap()
    }

    /// Upload a graph as a raw body.
    pub(crate) fn put_graph(
        &self,
        key: &str,
        name: &str,
        bytes: Vec<u8>,
        format: &str,
    ) -> Response {
        self.http
            .put(self.url(&format!("/v1/graphs/{name}?format={format}")))
            .bearer_auth(key)
            .body(bytes)
            .send()
            .unwrap()
    }

    pub(crate) fn metric(&self, key: &str, name: &str) -> f64 {
        let text = self.get(key, "/metrics").text().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// Bounded poll until `nboost_instances_in_use` reaches `n`.
    pub(crate) fn wait_in_use(&self, key: &str, n: f64) {
        let reached = (0..2000).any(|_| {
            let ok = self.metric(key, "nboost_instances_in_use") >= n;
            if !ok {
                std::thread::sleep(Duration::from_millis(5));
            }
            ok
        });
        assert!(
            reached,
            "never saw {n} instances in use:\n{}",
            self.log_text()
        );
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn json_of(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, v)
}

/// A 4xx/5xx body is exactly `{error, error_type}`.
pub(crate) fn assert_error(r: Response, status: u16, error_type: &str) -> String {
    let (got, v) = json_of(r);
    assert_eq!(got, status, "{v}");
    let o = v.as_object().unwrap();
    assert_eq!(o.len(), 2, "{v}");
    assert_eq!(v["error_type"], error_type, "{v}");
    v["error"].as_str().unwrap().to_string()
}

pub(crate) fn read(crate_name: &str) -> Vec<u8> {
    std::fs::read(wasm(crate_name)).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(crate) const QUERY: &str = "what causes lift on an aircraft wing";

pub(crate) fn docs() -> Value {
    json!([
        "The migration of birds follows the seasons.",
        {"text": "What causes lift on an aircraft wing is the pressure difference between its surfaces."},
        "Aircraft wings are shaped to produce lift at low drag.",
        "A recipe for bread needs flour, water and yeast."
    ])
}

#[test]
fn rerank_in_cohere_jina_and_tei_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &["--default-model", "lexical"]);

    for path in ["/v1/rerank", "/v2/rerank"] {
        let body = json!({"model": "lexical", "query": QUERY, "documents": docs(), "top_n": 2,
                          "return_documents": true, "max_tokens_per_doc": 512});
        let (status, v) = json_of(s.post(&key, path, &body));
        assert_eq!(status, 200, "{v}");
        assert!(v["id"].as_str().is_some_and(|id| id.len() == 36), "{v}");
        assert_eq!(v["model"], "lexical");
        assert!(v["meta"].is_object());
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "{v}");
        assert_eq!(results[0]["index"], 1, "{v}");
        assert!(
            results[0]["relevance_score"].as_f64().unwrap()
                >= results[1]["relevance_score"].as_f64().unwrap()
        );
        assert_eq!(
            results[0]["document"]["text"],
            "What causes lift on an aircraft wing is the pressure difference between its surfaces."
        );
    }
    // Documents are not echoed unless asked for; no top_n means all.
    let (_, v) = json_of(s.post(
        &key,
        "/v1/rerank",
        &json!({"model": "lexical", "query": QUERY, "documents": docs()}),
    ));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| r.get("document").is_none()), "{v}");

    // TEI: no model field (the default answers), sorted, sigmoid unless raw.
    let body = json!({"query": QUERY, "texts": ["bread and yeast", "lift on a wing", "aircraft wing lift"], "return_text": true});
    let (status, v) = json_of(s.post(&key, "/rerank", &body));
    assert_eq!(status, 200, "{v}");
    let ranks = v.as_array().unwrap();
    assert_eq!(ranks.len(), 3);
    let scores: Vec<f64> = ranks.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{v}");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{v}");
    assert_eq!(ranks.last().unwrap()["index"], 0, "{v}");
    assert_eq!(
        ranks[0]["text"],
        json!(["bread and yeast", "lift on a wing", "aircraft wing lift"])
            [ranks[0]["index"].as_u64().unwrap() as usize]
    );
    let raw = json!({"query": QUERY, "texts": ["bread and yeast", "lift on a wing"], "raw_scores": true, "truncate": true});
    let (_, v) = json_of(s.post(&key, "/rerank", &raw));
    assert_eq!(
        v[1]["score"], 0.0,
        "BM25 of a document with no query term is 0: {v}"
    );
    assert!(v[0].get("text").is_none());
}

#[test]
fn bad_requests_get_clear_json_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(
        dir.path(),
        &["--max-documents", "3", "--max-request-bytes", "4096"],
    );
    let post_raw = |path: &str, body: &str| {
        s.http
            .post(s.url(path))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    assert_error(
        post_raw("/v1/rerank", "{\"model\": \"lexical\", "),
        400,
        "bad_request",
    );
    let m = assert_error(
        post_raw("/v1/rerank", r#"{"model": "lexical", "documents": ["a"]}"#),
        422,
        "validation",
    );
    assert!(m.contains("missing field `query`"), "{m}");
    let m = assert_error(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"model": "lexical", "query": "  ", "documents": ["a"]}),
        ),
        422,
        "validation",
    );
    assert!(m.contains("query is empty"), "{m}");
    assert_error(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"model": "lexical", "query": "q", "documents": []}),
        ),
        400,
        "empty",
    );
    assert_error(
        s.post(
            &key,
            "/rerank",
            &json!({"model": "lexical", "query": "q", "texts": []}),
        ),
        400,
        "empty",
    );
    let m = assert_error(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"model": "lexical", "query": "q", "documents": ["a", "b", "c", "d"]}),
        ),
        422,
        "validation",
    );
    assert!(m.contains("4 documents"), "{m}");
    let m = assert_error(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"model": "lexical", "query": "q", "documents": [{"body": "x"}]}),
        ),
        422,
        "validation",
    );
    assert!(m.contains("documents[0]"), "{m}");
    assert_error(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"model": "lexical", "query": "q", "documents": ["a"], "top_n": 0}),
        ),
        422,
        "validation",
    );
    let m = assert_error(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"query": "q", "documents": ["a"]}),
        ),
        422,
        "validation",
    );
    assert!(m.contains("model"), "{m}");
    let big = "x".repeat(8192);
    assert_error(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"model": "lexical", "query": "q", "documents": [big]}),
        ),
        413,
        "payload_too_large",
    );
    let m = assert_error(
        s.post(
            &key,
            "/v1/rerank",
            &json!({"model": "no-such-model", "query": "q", "documents": ["a"]}),
        ),
        404,
        "not_found",
    );
    assert_eq!(m, "unknown component `no-such-model`");
    // Authentication: missing, malformed, wrong.
    let r = s
        .http
        .post(s.url("/v1/rerank"))
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_error(r, 401, "unauthorized");
    assert_error(
        s.post("nbk_0000", "/v1/rerank", &json!({})),
        401,
        "unauthorized",
    );
    let r = s
        .http
        .get(s.url("/v1/components"))
        .header("authorization", "Basic abc")
        .send()
        .unwrap();
    assert_error(r, 401, "unauthorized");
    assert_error(s.get(&key, "/no/such/route"), 404, "not_found");
    // An invalid name in a path is a 400.
    assert_error(
        s.put_graph(&key, "Bad_Name", b"x".to_vec(), "text"),
        400,
        "bad_request",
    );
}

#[test]
fn uploads_are_validated_versioned_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);

    // Not wasm, a core module, a component that fails `configure`.
    let m = assert_error(
        s.put_component(&key, "mine", b"hello".to_vec(), json!({})),
        422,
        "validation",
    );
    assert!(m.contains("not a WebAssembly file"), "{m}");
    let core = wat::parse_str("(module)").unwrap();
    let m = assert_error(
        s.put_component(&key, "mine", core, json!({})),
        422,
        "validation",
    );
    assert!(m.contains("core WebAssembly module"), "{m}");
    let m = assert_error(
        s.put_component(
            &key,
            "mine",
            read("nboost_hostile"),
            json!({"settings": {"attack": "bogus"}}),
        ),
        422,
        "validation",
    );
    assert!(m.contains("rejected its configuration"), "{m}");
    let m = assert_error(
        s.put_component(&key, "mine", read("nboost_hostile_sockets"), json!({})),
        422,
        "validation",
    );
    assert!(m.contains("sockets"), "{m}");
    assert_error(
        s.put_component(
            &key,
            "mine",
            read("nboost_reranker_lexical"),
            json!({"bogus": 1}),
        ),
        422,
        "validation",
    );
    assert_error(s.get(&key, "/v1/components/mine"), 404, "not_found");

    // Version 1, then 2 with other bytes.
    let lexical = read("nboost_reranker_lexical");
    let r = s.put_component(
        &key,
        "mine",
        lexical.clone(),
        json!({"description": "bm25", "settings": {"k1": 1.2, "b": "0.75"}}),
    );
    let (status, v) = json_of(r);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["version"], 1);
    assert_eq!(v["digest"], sha256(&lexical));
    assert_eq!(v["world"], "reranker-plugin");
    assert_eq!(v["owner"], "tenant");
    let (status, v) = json_of(s.post(
        &key,
        "/v1/rerank",
        &json!({"model": "mine", "query": QUERY, "documents": docs()}),
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["index"], 1);

    let hostile = read("nboost_hostile");
    let (status, v) = json_of(s.put_component(&key, "mine", hostile.clone(), json!({})));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 2);
    let (_, v) = json_of(s.get(&key, "/v1/components/mine"));
    assert_eq!(v["version"], 2);
    assert_eq!(v["digest"], sha256(&hostile));
    assert_eq!(v["world"], "nn-reranker-plugin");
    // The hostile plugin's harmless mode scores by length: version 2 answers.
    let (_, v) = json_of(s.post(
        &key,
        "/v1/rerank",
        &json!({"model": "mine", "query": "q", "documents": ["aaa", "a", "aaaaa"]}),
    ));
    assert_eq!(v["results"][0]["index"], 2, "{v}");
    assert_eq!(v["results"][0]["relevance_score"], 5.0, "{v}");

    // Listing: own first, then the public ones, each with digest and world.
    let (_, v) = json_of(s.get(&key, "/v1/components"));
    let list = v["components"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mine", "cross-encoder", "lexical", "minilm"], "{v}");
    for c in list {
        assert!(c["digest"].as_str().unwrap().starts_with("sha256:"), "{c}");
        assert!(c["world"].is_string(), "{c}");
    }
    let (_, v) = json_of(s.get(&key, "/v1/components/minilm"));
    assert_eq!(v["owner"], "public");
    assert_eq!(v["world"], "nn-reranker-plugin");
    assert_eq!(v["graphs"], json!(["all-minilm-l6-v2"]));

    // Public components are read-only.
    assert_error(
        s.put_component(&key, "lexical", lexical.clone(), json!({})),
        403,
        "forbidden",
    );
    assert_error(s.delete(&key, "/v1/components/lexical"), 403, "forbidden");
    assert_error(
        s.delete(&key, "/v1/graphs/all-minilm-l6-v2"),
        403,
        "forbidden",
    );

    // Delete, then it is gone (and so is its blob).
    assert_eq!(s.delete(&key, "/v1/components/mine").status(), 204);
    assert_error(s.get(&key, "/v1/components/mine"), 404, "not_found");
    assert_error(s.delete(&key, "/v1/components/mine"), 404, "not_found");
    let blobs = dir.path().join("data/blobs");
    assert_eq!(
        std::fs::read_dir(&blobs).unwrap().count(),
        0,
        "unreferenced blobs are collected"
    );

    // A raw body (no form, so no config) is an upload too.
    let r = s
        .http
        .put(s.url("/v1/components/raw"))
        .bearer_auth(&key)
        .header("content-type", "application/wasm")
        .body(lexical.clone())
        .send()
        .unwrap();
    let (status, v) = json_of(r);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["digest"], sha256(&lexical));
    // A form without a `file` part is a 400.
    let form = multipart::Form::new().text("config", "{}");
    let r = s
        .http
        .put(s.url("/v1/components/raw"))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .unwrap();
    assert_error(r, 400, "bad_request");
}

/// Everything tenant B tries on tenant A's names fails exactly as it does
/// on names nobody owns.
#[test]
fn tenants_cannot_see_call_overwrite_or_delete_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = add_tenant(&data, "tenant-a", &[]);
    let b = add_tenant(&data, "tenant-b", &[]);
    let s = Server::start(dir.path(), &[]);
    let lexical = read("nboost_reranker_lexical");
    let hostile = read("nboost_hostile");
    assert_eq!(
        s.put_component(&a, "secret", lexical.clone(), json!({}))
            .status(),
        201
    );
    let tok = std::fs::read(model_file("tiny-cross-encoder", "tokenizer.json")).unwrap();
    assert_eq!(
        s.put_graph(&a, "secret-tok", tok.clone(), "text").status(),
        201
    );

    // List: B sees none of A's.
    let (_, v) = json_of(s.get(&b, "/v1/components"));
    assert!(!v.to_string().contains("secret"), "{v}");
    let (_, v) = json_of(s.get(&b, "/v1/graphs"));
    assert!(!v.to_string().contains("secret"), "{v}");

    // Call, read, delete: the same 404 as for a name nobody has.
    for (name, what) in [("secret", "component"), ("nobody-has-this", "component")] {
        let body = json!({"model": name, "query": "q", "documents": ["a"]});
        let m = assert_error(s.post(&b, "/v1/rerank", &body), 404, "not_found");
        assert_eq!(m, format!("unknown {what} `{name}`"));
        let m = assert_error(
            s.get(&b, &format!("/v1/components/{name}")),
            404,
            "not_found",
        );
        assert_eq!(m, format!("unknown {what} `{name}`"));
        let m = assert_error(
            s.delete(&b, &format!("/v1/components/{name}")),
            404,
            "not_found",
        );
        assert_eq!(m, format!("unknown {what} `{name}`"));
    }
    for name in ["secret-tok", "nobody-has-this"] {
        let m = assert_error(s.get(&b, &format!("/v1/graphs/{name}")), 404, "not_found");
        assert_eq!(m, format!("unknown graph `{name}`"));
        assert_error(
            s.delete(&b, &format!("/v1/graphs/{name}")),
            404,
            "not_found",
        );
        // Nor can B's components use A's graphs.
        let config = json!({"settings": {"attack": "none"}, "graphs": [name]});
        let m = assert_error(
            s.put_component(&b, "uses-it", hostile.clone(), config),
            422,
            "validation",
        );
        assert_eq!(m, format!("unknown graph `{name}`"));
        let config = json!({"setting_files": {"tokenizer": name}});
        let m = assert_error(
            s.put_component(&b, "uses-it", hostile.clone(), config),
            422,
            "validation",
        );
        assert!(m.contains(&format!("unknown graph `{name}`")), "{m}");
    }

    // Overwrite: B's upload of the same name lands in B's namespace.
    let (status, v) = json_of(s.put_component(&b, "secret", hostile.clone(), json!({})));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["version"], 1);
    assert_eq!(
        s.put_graph(&b, "secret-tok", b"b's own text".to_vec(), "text")
            .status(),
        201
    );
    let (_, v) = json_of(s.get(&a, "/v1/components/secret"));
    assert_eq!(v["version"], 1);
    assert_eq!(v["digest"], sha256(&lexical), "A's component is untouched");
    let (_, v) = json_of(s.get(&a, "/v1/graphs/secret-tok"));
    assert_eq!(v["digest"], sha256(&tok), "A's graph is untouched");
    // Each calls its own.
    let body = json!({"model": "secret", "query": QUERY, "documents": docs()});
    let (_, va) = json_of(s.post(&a, "/v1/rerank", &body));
    let (_, vb) = json_of(s.post(&b, "/v1/rerank", &body));
    assert_eq!(va["results"][0]["index"], 1, "A's is BM25: {va}");
    assert_eq!(
        vb["results"][0]["relevance_score"], 85.0,
        "B's scores by length: {vb}"
    );
    // B deletes its own; A's stays.
    assert_eq!(s.delete(&b, "/v1/components/secret").status(), 204);
    assert_eq!(s.get(&a, "/v1/components/secret").status(), 200);
    assert_eq!(s.post(&a, "/v1/rerank", &body).status(), 200);
}

#[test]
fn tenant_graphs_feed_tenant_components() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);
    let graph = std::fs::read(model_file("tiny-cross-encoder", "model.onnx")).unwrap();
    let tok = std::fs::read(model_file("tiny-cross-encoder", "tokenizer.json")).unwrap();
    // A broken ONNX file is refused at upload; a text file must be UTF-8.
    let m = assert_error(
        s.put_graph(&key, "my-ce", b"not onnx".to_vec(), "onnx"),
        422,
        "validation",
    );
    assert!(m.contains("cannot be loaded"), "{m}");
    assert_error(
        s.put_graph(&key, "my-tok", vec![0xff, 0xfe], "text"),
        422,
        "validation",
    );
    let (status, v) = json_of(s.put_graph(&key, "my-ce", graph.clone(), "onnx"));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["format"], "onnx");
    assert_eq!(v["digest"], sha256(&graph));
    // A form with a `config` part picks the format there.
    let form = multipart::Form::new()
        .part("file", multipart::Part::bytes(tok))
        .text(
            "config",
            r#"{"format": "text", "description": "the tokenizer"}"#,
        );
    let r = s
        .http
        .put(s.url("/v1/graphs/my-tok"))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .unwrap();
    let (status, v) = json_of(r);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["format"], "text");
    assert_eq!(v["description"], "the tokenizer");

    let ce = read("nboost_reranker_cross_encoder");
    let config = json!({"graphs": ["my-ce"], "settings": {"graph": "my-ce"}, "setting-files": {"tokenizer": "my-tok"}});
    let (status, v) = json_of(s.put_component(&key, "my-reranker", ce.clone(), config));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["graphs"], json!(["my-ce"]));
    // Same graph, same tokenizer, same component as the public
    // cross-encoder: same scores.
    let body = |model: &str| json!({"model": model, "query": QUERY, "documents": docs()});
    let (status, mine) = json_of(s.post(&key, "/v1/rerank", &body("my-reranker")));
    assert_eq!(status, 200, "{mine}");
    let (_, public) = json_of(s.post(&key, "/v1/rerank", &body("cross-encoder")));
    assert_eq!(mine["results"], public["results"]);
    // A text graph cannot be loaded as a model.
    let config = json!({"graphs": ["my-tok"], "settings": {"graph": "my-tok"}, "setting_files": {"tokenizer": "my-tok"}});
    let m = assert_error(
        s.put_component(&key, "wrong", ce, config),
        422,
        "validation",
    );
    assert!(m.contains("format `text`"), "{m}");
    // Deleting the graph breaks the component that needs it, clearly.
    assert_eq!(s.delete(&key, "/v1/graphs/my-ce").status(), 204);
    let m = assert_error(
        s.post(&key, "/v1/rerank", &body("my-reranker")),
        422,
        "validation",
    );
    assert!(m.contains("unknown graph `my-ce`"), "{m}");
}

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
        s.http.get(s.url("/openapi.json")).send().unwrap(),
        401,
        "unauthorized",
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
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
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
    let python = repo().join(".venv/bin/python");
    let has_cohere = Command::new(&python)
        .args(["-c", "import cohere"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cohere {
        assert!(
            std::env::var_os("CI").is_none(),
            "the cohere package is required under CI (requirements.txt)"
        );
        eprintln!("skipping: .venv has no `cohere` package (.venv/bin/pip install cohere)");
        return;
    }
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
