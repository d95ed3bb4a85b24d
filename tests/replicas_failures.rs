//! Shared state in bad states: the database unreachable at start, the
//! object store refusing writes, a blob missing under a row; and the
//! schema migrations (`nboost migrate`, two at once).

use std::process::Stdio;

use serde_json::json;

use crate::replicas::{rerank, top, until, Shared};
use crate::server::{json_of, nboost, read, succeeds};
use crate::services::{self, free_port, S3};

#[test]
fn an_unreachable_database_stops_the_start_with_a_clear_error() {
    if !services::available() {
        return;
    }
    let s3 = &services::shared().1;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("nboost.toml");
    std::fs::write(&manifest, "").unwrap();
    let mut cmd = nboost();
    s3.env(&mut cmd);
    let out = cmd
        .arg("--manifest")
        .arg(&manifest)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--database-url"])
        .arg(format!(
            "postgres://nboost@127.0.0.1:{}/nboost",
            free_port()
        ))
        .args(["--object-store", "s3://nboost/x"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the database `nboost`") && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "it never listened");
    // A bad URL is refused as such, with exit code 2.
    let mut cmd = nboost();
    s3.env(&mut cmd);
    let out = cmd
        .arg("--manifest")
        .arg(&manifest)
        .args(["tenants", "list", "--data-dir"])
        .arg(dir.path())
        .args([
            "--database-url",
            "mysql://x",
            "--object-store",
            "s3://nboost/x",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--database-url"));
}

#[test]
fn a_refusing_object_store_fails_the_upload_and_shows_nothing() {
    if !services::available() {
        return;
    }
    // Its own object store: this test makes it read-only.
    let s3 = S3::start();
    let pg = &services::shared().0;
    let shared = Shared::new(pg, &s3);
    let a = shared.replica("a", "127.0.0.1:0");
    let key = &shared.key;
    s3.readonly(true);
    let (status, v) =
        json_of(a.put_component(key, "mine", read("nboost_reranker_lexical"), json!({})));
    s3.readonly(false);
    assert_eq!(status, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("object store"), "{v}");
    // Nothing of it is visible, on this replica or a new one.
    assert_eq!(a.get(key, "/v1/components/mine").status(), 404);
    let b = shared.replica("b", "127.0.0.1:0");
    assert_eq!(b.get(key, "/v1/components/mine").status(), 404);
    let (_, v) = json_of(b.get(key, "/v1/components"));
    assert!(!v.to_string().contains("\"mine\""), "{v}");
    // Writable again: the same upload works.
    let r = a.put_component(key, "mine", read("nboost_reranker_lexical"), json!({}));
    assert_eq!(r.status(), 201);
    until("B serves it", || {
        rerank(&b.http, &b.base, key, "mine").0 == 200
    });
}

#[test]
fn a_missing_blob_breaks_its_component_only() {
    if !services::available() {
        return;
    }
    let (pg, s3) = services::shared();
    let shared = Shared::new(pg, s3);
    let a = shared.replica("a", "127.0.0.1:0");
    let key = &shared.key;
    let lexical = read("nboost_reranker_lexical");
    assert_eq!(
        a.put_component(key, "one", lexical, json!({})).status(),
        201
    );
    let (status, v) = json_of(a.put_component(key, "two", read("nboost_hostile"), json!({})));
    assert_eq!(status, 201, "{v}");
    let hex = v["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    std::fs::remove_file(shared.bucket().join("blobs").join(&hex)).unwrap();
    // A replica that has not cached it: `two` fails with a clear 5xx,
    // `one` is served.
    let b = shared.replica("b", "127.0.0.1:0");
    let (status, v) = rerank(&b.http, &b.base, key, "two");
    assert!((500..600).contains(&status), "{status} {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("missing from the object store"),
        "{v}"
    );
    let (status, v) = rerank(&b.http, &b.base, key, "one");
    assert_eq!((status, top(&v)), (200, 1), "{v}");
}

#[test]
fn migrations_apply_once_even_when_two_run_at_once() {
    if !services::available() {
        return;
    }
    let pg = &services::shared().0;
    let db = pg.database();
    let children: Vec<_> = (0..2)
        .map(|_| {
            nboost()
                .args(["migrate", "--database-url", &db])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    let applied = outs.iter().filter(|o| o.starts_with("applied 1;")).count();
    let nothing = outs
        .iter()
        .filter(|o| o.contains("nothing to apply"))
        .count();
    assert_eq!((applied, nothing), (1, 1), "{outs:?}");
    let again = succeeds(nboost().args(["migrate", "--database-url", &db]));
    assert!(
        again.contains("schema at version 1: nothing to apply"),
        "{again}"
    );
}
