//! The proxy as its users meet it: the status page in a real browser
//! (headless Chromium, Debian's `chromium`), and the Python search
//! clients (tests/proxy/test_clients.py) pointed at the proxy.

use std::collections::HashMap;
use std::process::Command;

use serde_json::{json, Value};

use crate::clients::venv_tool;
use crate::common::{backend_available, repo};
use crate::proxy::{node, post, ProxyProc};

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    backend_available(
        "headless Chromium (Debian `chromium`: apt-get install chromium)",
        found.is_some(),
    );
    found
}

fn headless(browser: &str, args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args(["--disable-dev-shm-usage", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .unwrap()
}

/// `<td id="ID">VALUE</td>` pairs of a page.
fn cells(dom: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for piece in dom.split("<td id=\"").skip(1) {
        if let Some((id, rest)) = piece.split_once("\">") {
            if let Some((value, _)) = rest.split_once("</td>") {
                out.insert(id.to_string(), value.to_string());
            }
        }
    }
    out
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

#[test]
fn the_status_page_shows_what_the_status_json_says() {
    let Some(node) = node() else { return };
    let Some(browser) = chromium() else { return };
    let p = ProxyProc::start(node, "lexical", &["--topn", "20"]);
    let q = json!({"match": {"text": "laminar boundary layer"}});
    // Judge two of the upstream's top 20 relevant, so both orders score.
    let direct: Value = post(
        &p.http,
        node,
        "/cranfield/_search",
        &json!({"query": q, "size": 20}),
    )
    .json()
    .unwrap();
    let judged: Vec<&Value> = [2, 9]
        .iter()
        .map(|&i| &direct["hits"]["hits"][i]["_id"])
        .collect();
    let relevant = json!({"relevant": judged});
    for i in 0..6 {
        let body = json!({"query": q, "size": 5 + i, "nboost": relevant});
        assert_eq!(
            post(&p.http, &p.base, "/cranfield/_search", &body).status(),
            200
        );
    }
    post(
        &p.http,
        &p.base,
        "/cranfield/_search",
        &json!({"query": q, "size": 0}),
    );
    let status = p.status();

    let page = format!("{}/nboost", p.base);
    let out = headless(browser, &["--dump-dom", &page]);
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("<h1>nboost proxy</h1>"),
        "chromium did not render the page:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = cells(&dom);
    for id in [
        "component",
        "requests",
        "searches",
        "reranked",
        "skipped",
        "errors",
    ] {
        let want = match at(&status, id) {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(
            shown.get(id),
            Some(&want),
            "{id}: page {shown:?}, json {status}"
        );
    }
    for id in [
        "rerank_ms.p50",
        "rerank_ms.p95",
        "upstream_ms.p50",
        "upstream_ms.p95",
        "eval.boost",
    ] {
        let want = at(&status, id).as_f64().unwrap();
        let got: f64 = shown[id]
            .parse()
            .unwrap_or_else(|_| panic!("{id}: {:?}", shown[id]));
        assert!((got - want).abs() < 0.01, "{id}: page {got}, json {want}");
    }
    assert_eq!(shown["skipped_by_reason.size_zero"], "1");
    assert_eq!(status["reranked"], 6);
    assert!(dom.contains("<polyline"), "no latency chart");

    // A screenshot, kept as a test artefact.
    let dir = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("nboost-status.png");
    let _ = std::fs::remove_file(&shot);
    let out = headless(
        browser,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=900,800",
            &page,
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn python_search_clients_work_through_the_proxy() {
    let Some(node) = node() else { return };
    // (elasticsearch-py 7.13 imports only under tests/proxy/conftest.py.)
    let Some(python) = venv_tool("opensearchpy") else {
        return;
    };
    let p = ProxyProc::start(node, "lexical", &["--topn", "20"]);
    let out = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo().join("tests/proxy/test_clients.py"))
        .env("NBOOST_PROXY_URL", &p.base)
        .env("OPENSEARCH_URL", node)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\nproxy log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        p.log_text()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(" passed") && !stdout.contains("skipped"),
        "{stdout}"
    );
}
