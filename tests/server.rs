//! `nboost serve`, as a client sees it: the real binary on a loopback port
//! (port 0; the bound address is read from its first stdout line), spoken
//! to over HTTP. Tenants are made with the real `nboost tenants` CLI.
//! Nothing here sleeps to synchronise: the server is ready when `/health`
//! answers (bounded poll), and a call is "in flight" when `/metrics` says an
//! instance is in use (bounded poll).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::{multipart, Client, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{cache_dir, standard_manifest, wasm};

pub(crate) fn nboost() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nboost"));
    c.env_remove("RUST_LOG").env_remove("NBOOST_DATA_DIR");
    c
}

/// Run `cmd`; it must succeed (else the test fails with its stderr). Its
/// stdout.
pub(crate) fn succeeds(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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
    pub(crate) child: Child,
    pub(crate) base: String,
    /// The `--metrics-listen` URL, if any.
    pub(crate) metrics: Option<String>,
    log: PathBuf,
    pub(crate) http: Client,
}

impl Server {
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Server {
        Self::start_with(nboost(), dir, extra)
    }

    /// [`Server::start`] with another `nboost` executable (the lean build).
    pub(crate) fn start_with(nboost: Command, dir: &Path, extra: &[&str]) -> Server {
        Self::spawn(nboost, dir, &cache_dir(), "127.0.0.1:0", extra)
    }

    /// [`Server::start_with`] with its own artifact cache and address.
    pub(crate) fn spawn(
        mut nboost: Command,
        dir: &Path,
        cache: &Path,
        listen: &str,
        extra: &[&str],
    ) -> Server {
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
        let mut child = nboost
            .arg("--manifest")
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(cache)
            .args(["--threads", "2", "serve", "--listen", listen, "--data-dir"])
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

/// A 4xx/5xx body is exactly `{error, error_type, detail}`, `detail`
/// repeating `error` (Jina-style clients read it).
pub(crate) fn assert_error(r: Response, status: u16, error_type: &str) -> String {
    let (got, v) = json_of(r);
    assert_eq!(got, status, "{v}");
    let o = v.as_object().unwrap();
    assert_eq!(o.len(), 3, "{v}");
    assert_eq!(v["detail"], v["error"], "{v}");
    assert_eq!(v["error_type"], error_type, "{v}");
    v["error"].as_str().unwrap().to_string()
}

pub(crate) fn read(crate_name: &str) -> Vec<u8> {
    std::fs::read(wasm(crate_name)).unwrap()
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
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
            &json!({"model": "lexical", "query": "q", "documents": [{}]}),
        ),
        422,
        "validation",
    );
    assert!(m.contains("documents[0] is an empty object"), "{m}");
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
