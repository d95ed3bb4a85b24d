//! The real Python clients (tests/clients/test_clients.py, run by pytest)
//! and schemathesis against a live `nboost serve`. The packages come from
//! requirements.txt; under CI their absence is a failure, elsewhere a
//! skip with the command that installs them.

use std::process::Command;

use crate::common::{repo, standard_manifest};
use crate::server::{add_tenant, Server};

/// `.venv/bin/<tool>`, or `None` (a skip; a failure under CI) when the
/// venv lacks `module`.
pub(crate) fn venv_tool(module: &str) -> Option<std::path::PathBuf> {
    let python = repo().join(".venv/bin/python");
    let present = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Python package `{module}` is required under CI (requirements.txt)"
        );
        eprintln!("skipping: .venv has no `{module}` (.venv/bin/pip install -r requirements.txt)");
        return None;
    }
    Some(python)
}

/// A server whose manifest maps the clients' default model names to
/// components, with MiniLM as the default model.
fn client_server(dir: &std::path::Path) -> (Server, String) {
    let manifest = format!(
        "{}\n[aliases]\n\"rerank-v3.5\" = \"minilm\"\n\"rerank-english-v3.0\" = \"minilm\"\n\
         \"jina-reranker-v1-base-en\" = \"minilm\"\n",
        standard_manifest()
    );
    std::fs::write(dir.join("nboost.toml"), manifest).unwrap();
    let key = add_tenant(&dir.join("data"), "acme", &[]);
    let s = Server::start(dir, &["--default-model", "minilm"]);
    (s, key)
}

#[test]
fn python_rerank_clients_work_unchanged() {
    let Some(python) = venv_tool("pytest") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (s, key) = client_server(dir.path());
    let out = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo().join("tests/clients/test_clients.py"))
        .env("NBOOST_URL", &s.base)
        .env("NBOOST_KEY", &key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
    );
}

#[test]
fn schemathesis_finds_no_failures() {
    let Some(_) = venv_tool("schemathesis") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (s, key) = client_server(dir.path());
    let out = Command::new(repo().join(".venv/bin/schemathesis"))
        .arg("--config-file")
        .arg(repo().join("tests/clients/schemathesis.toml"))
        .arg("run")
        .arg(s.url("/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "all", "--max-examples", "30", "--seed", "1"])
        // Its cache of found crashes goes to the temporary directory, not
        // into the checkout.
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
