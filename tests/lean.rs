//! The lean edge build (`cargo build -p nboost-host --no-default-features`:
//! no compiler, no upload API, no SQLite store, no eval; `./just build`
//! puts it beside `nboost` as `nboost-lean`). It runs a signed bundle's
//! precompiled artifact made by the full build, refuses a bundle without
//! one (or with one that does not fit its engine) naming what would run,
//! and serves the rerank API with tenants from a tenants file.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{backend_available, standard_manifest};
use crate::server::{nboost, succeeds, Server};

/// The lean binary, if built (it must be under CI).
fn lean() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_BIN_EXE_nboost")).with_file_name("nboost-lean");
    backend_available(
        "the lean build (target/debug/nboost-lean: `./just build`)",
        path.is_file(),
    )
    .then_some(path)
}

struct Fixture {
    dir: tempfile::TempDir,
    lean: PathBuf,
}

impl Fixture {
    /// A directory with the standard manifest, a key pair, and two bundles
    /// of `lexical` signed by it made by the full build: `pre.nbb` with the
    /// host's precompiled artifact, `plain.nbb` without.
    fn new() -> Option<Self> {
        let lean = lean()?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nboost.toml"), standard_manifest()).unwrap();
        let full = |args: &[&str]| {
            succeeds(
                nboost()
                    .arg("--manifest")
                    .arg(dir.path().join("nboost.toml"))
                    .args(args)
                    .current_dir(dir.path()),
            )
        };
        full(&["keys", "generate", "ops"]);
        std::fs::create_dir(dir.path().join("bundles")).unwrap();
        let build = ["bundle", "build", "-c", "lexical", "--key", "ops.key", "-o"];
        full(&[&build[..], &["bundles/pre.nbb", "--precompile"]].concat());
        full(&[&build[..], &["plain.nbb"]].concat());
        Some(Fixture { dir, lean })
    }

    fn lean(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.lean);
        c.env_remove("RUST_LOG")
            .env_remove("NBOOST_DATA_DIR")
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .current_dir(self.dir.path());
        c
    }

    /// `rerank --bundle FILE` on the lean build: (success, stdout, stderr).
    fn rerank(&self, bundle: &str, extra: &[&str]) -> (bool, String, String) {
        let mut args = vec![
            "rerank",
            "--bundle",
            bundle,
            "--trusted-key",
            "ops.pub",
            "-q",
            "wing lift",
            "--json",
            "--passage",
            "bread",
            "--passage",
            "the lift of a wing",
        ];
        args.extend_from_slice(extra);
        let out = self.lean(&args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn the_lean_build_runs_a_precompiled_bundle_and_refuses_one_without() {
    let Some(f) = Fixture::new() else { return };
    let (ok, out, err) = f.rerank("bundles/pre.nbb", &[]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["index"], 1, "{v}");

    // No artifact: refused, saying what would run; nothing compiled.
    let (ok, out, err) = f.rerank("plain.nbb", &[]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("no precompiled artifact for")
            && err.contains("runtime-only")
            && err.contains("--precompile"),
        "{err}"
    );

    // An artifact for another engine configuration (fuel metering changes
    // the code): refused with wasmtime's reason, not compiled.
    let (ok, _, err) = f.rerank("bundles/pre.nbb", &["--fuel", "1000000000"]);
    assert!(!ok);
    assert!(
        err.contains("does not fit this node's engine") && err.contains("runtime-only"),
        "{err}"
    );
}

#[test]
fn the_lean_build_has_no_compiler_uploads_or_store_and_serves_bundles() {
    let Some(f) = Fixture::new() else { return };
    for (args, says) in [
        (&["compile", "lexical"][..], "runtime-only"),
        (
            &["tenants", "list", "--data-dir", "d"][..],
            "serve --tenants FILE",
        ),
        (&["eval", "x"][..], "without `eval`"),
    ] {
        let out = f.lean(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }

    // Tenants from a file, held in memory: the key made by `new-key`.
    let made = succeeds(&mut f.lean(&["tenants", "new-key"]));
    let mut lines = made.lines();
    let key = lines.next().unwrap().to_string();
    let hash_line = lines.next().unwrap();
    std::fs::write(
        f.dir.path().join("tenants.toml"),
        format!("[tenants.edge]\n{hash_line}\n"),
    )
    .unwrap();
    let mut cmd = Command::new(&f.lean);
    cmd.env_remove("RUST_LOG").env_remove("NBOOST_DATA_DIR");
    let s = Server::start_with(
        cmd,
        f.dir.path(),
        &[
            "--edge",
            "--bundles",
            f.dir.path().join("bundles").to_str().unwrap(),
            "--trusted-key",
            f.dir.path().join("ops.pub").to_str().unwrap(),
            "--tenants",
            f.dir.path().join("tenants.toml").to_str().unwrap(),
        ],
    );
    let body = serde_json::json!({"model": "lexical", "query": "wing lift",
                                  "documents": ["bread", "the lift of a wing"]});
    let r = s.post(&key, "/v1/rerank", &body);
    assert_eq!(r.status(), 200, "{}", s.log_text());
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["results"][0]["index"], 1, "{v}");
    assert_eq!(s.post("nbk_unknown", "/v1/rerank", &body).status(), 401);
    // Listing works; uploads are not built in (and not documented).
    let r = s.get(&key, "/v1/components");
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .put(s.url("/v1/components/mine"))
        .bearer_auth(&key)
        .body(vec![0u8; 16])
        .send()
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let doc: serde_json::Value = s
        .http
        .get(s.url("/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/rerank"));
    assert!(paths
        .values()
        .all(|p| p.get("put").is_none() && p.get("delete").is_none()));
}
