//! The manifest and the registry: only the named component is loaded, and
//! compiled artifacts are reused.

use std::sync::atomic::Ordering;

use nboost::nn::BackendKind;
use nboost::RerankError;

use crate::common::{self, config, reranker, wasm};

fn passages() -> Vec<String> {
    vec![
        "the wing produces lift from the pressure difference".into(),
        "a recipe for bread".into(),
    ]
}

#[test]
fn only_the_named_component_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let text = format!(
        r#"
[components.lexical]
path = "{}"

[components.missing]
path = "{}"

[components.corrupt]
path = "{}"
"#,
        wasm("nboost_reranker_lexical").display(),
        dir.path().join("does-not-exist.wasm").display(),
        corrupt.display()
    );
    let r = reranker(&text, config(BackendKind::Tract));
    let out = r.rerank("lexical", "wing lift", &passages(), None).unwrap();
    assert_eq!(out.ranking[0].index, 0);
    let stats = r.registry().stats();
    assert_eq!(stats.loaded.load(Ordering::Relaxed), 1);

    // The broken entries fail only when asked for, each with its reason.
    match r.rerank("missing", "wing", &passages(), None) {
        Err(RerankError::InvalidComponent { name, reason }) => {
            assert_eq!(name, "missing");
            assert!(reason.contains("cannot read"), "{reason}");
        }
        other => panic!("expected InvalidComponent, got {other:?}"),
    }
    match r.rerank("corrupt", "wing", &passages(), None) {
        Err(RerankError::InvalidComponent { reason, .. }) => {
            assert!(reason.contains("invalid component"), "{reason}")
        }
        other => panic!("expected InvalidComponent, got {other:?}"),
    }
    assert!(matches!(
        r.rerank("nope", "wing", &passages(), None),
        Err(RerankError::UnknownComponent(_))
    ));
    // The good one still serves, and nothing else was loaded.
    assert!(r.rerank("lexical", "wing lift", &passages(), None).is_ok());
    assert_eq!(stats.loaded.load(Ordering::Relaxed), 1);
}

#[test]
fn compiled_artifacts_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[components.lexical]\npath = \"{}\"\n",
        wasm("nboost_reranker_lexical").display()
    );
    let mut cfg = config(BackendKind::Tract);
    cfg.cache_dir = Some(dir.path().to_path_buf());

    let first = reranker(&text, cfg.clone());
    first.rerank("lexical", "wing", &passages(), None).unwrap();
    assert_eq!(first.registry().stats().compiled.load(Ordering::Relaxed), 1);
    assert_eq!(
        first.registry().stats().cache_hits.load(Ordering::Relaxed),
        0
    );

    let second = reranker(&text, cfg.clone());
    let out = second.rerank("lexical", "wing", &passages(), None).unwrap();
    assert_eq!(out.ranking[0].index, 0);
    assert_eq!(
        second.registry().stats().compiled.load(Ordering::Relaxed),
        0
    );
    assert_eq!(
        second.registry().stats().cache_hits.load(Ordering::Relaxed),
        1
    );

    // An engine whose code differs (fuel metering compiled in) never sees
    // those artifacts: it compiles its own.
    let mut other = cfg;
    other.engine.limits.fuel_per_call = Some(1 << 40);
    let third = reranker(&text, other);
    third.rerank("lexical", "wing", &passages(), None).unwrap();
    assert_eq!(third.registry().stats().compiled.load(Ordering::Relaxed), 1);
}

#[test]
fn pinned_digest_mismatch_is_refused() {
    let text = format!(
        "[components.lexical]\npath = \"{}\"\nsha256 = \"sha256:{}\"\n",
        wasm("nboost_reranker_lexical").display(),
        "0".repeat(64)
    );
    let r = reranker(&text, config(BackendKind::Tract));
    match r.rerank("lexical", "wing", &passages(), None) {
        Err(RerankError::InvalidComponent { reason, .. }) => {
            assert!(reason.contains("the manifest pins"), "{reason}")
        }
        other => panic!("expected a digest error, got {other:?}"),
    }
}

#[test]
fn bad_requests_are_refused_before_the_plugin_runs() {
    let r = reranker(&common::standard_manifest(), config(BackendKind::Tract));
    for (query, passages) in [("", passages()), ("  ", passages()), ("wing", vec![])] {
        assert!(matches!(
            r.rerank("lexical", query, &passages, None),
            Err(RerankError::InvalidInput(_))
        ));
    }
    assert_eq!(r.registry().stats().loaded.load(Ordering::Relaxed), 1);
}

/// A plugin built against a later `0.1.x` of the contract still resolves:
/// the host's bindings (generated from `wit/`, `@0.1.0`) look the export
/// up semver-compatibly. The file is the real lexical component with every
/// occurrence of its export name rewritten to `@0.1.7` (same length, so the
/// binary stays valid).
#[test]
fn exports_of_a_later_0_1_x_contract_still_resolve() {
    let bytes = std::fs::read(wasm("nboost_reranker_lexical")).unwrap();
    let (from, to) = (
        b"nboost:reranker/reranker@0.1.0".as_slice(),
        b"nboost:reranker/reranker@0.1.7".as_slice(),
    );
    let mut patched = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut replaced = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            patched.extend_from_slice(to);
            i += from.len();
            replaced += 1;
        } else {
            patched.push(bytes[i]);
            i += 1;
        }
    }
    assert!(replaced > 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lexical-0.1.7.wasm");
    std::fs::write(&file, &patched).unwrap();
    let report = nboost::sandbox::validate_component(&patched, 64 << 20).unwrap();
    assert_eq!(report.reranker_export, "nboost:reranker/reranker@0.1.7");
    let r = reranker(
        &format!("[components.later]\npath = \"{}\"\n", file.display()),
        config(BackendKind::Tract),
    );
    let out = r
        .rerank(
            "later",
            "wing lift",
            &["bread".to_string(), "lift of a wing".to_string()],
            None,
        )
        .unwrap();
    assert_eq!(out.ranking[0].index, 1);
}

/// `nboost rerank -c NAME` reads only NAME's part of the manifest: the
/// same answer with 999 other entries (one of them broken, which only a
/// whole-file read would notice), through an alias too; a manifest the
/// scanner declines is read whole, with the whole file's errors.
#[test]
fn one_component_start_reads_only_its_part_of_the_manifest() {
    use crate::common::standard_manifest;
    use crate::server::{nboost, succeeds};
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.toml");
    std::fs::write(&small, standard_manifest()).unwrap();
    let mut text = standard_manifest();
    for i in 0..999 {
        text.push_str(&format!(
            "\n[components.extra-{i}]\npath = \"/nowhere/{i}.wasm\"\ngraphs = [\"undeclared-{i}\"]\n"
        ));
    }
    text.push_str("\n[aliases]\n\"my-bm25\" = \"lexical\"\n");
    let big = dir.path().join("big.toml");
    std::fs::write(&big, &text).unwrap();
    let rerank = |manifest: &std::path::Path, name: &str| {
        succeeds(
            nboost()
                .arg("--manifest")
                .arg(manifest)
                .args(["rerank", "-c", name, "-q", "wing lift", "--json"])
                .args(["--passage", "bread", "--passage", "the lift of a wing"]),
        )
    };
    let want = rerank(&small, "lexical");
    assert_eq!(rerank(&big, "lexical"), want);
    assert_eq!(rerank(&big, "my-bm25"), want);
    // The whole file is still checked where the whole file is read.
    let out = nboost()
        .arg("--manifest")
        .arg(&big)
        .args(["components", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("undeclared-"));
    // A layout the scanner declines (an array of tables) falls back to the
    // whole file, and so to its error.
    let odd = dir.path().join("odd.toml");
    std::fs::write(&odd, format!("{}\n[[weird]]\nx = 1\n", standard_manifest())).unwrap();
    let out = nboost()
        .arg("--manifest")
        .arg(&odd)
        .args(["rerank", "-c", "lexical", "-q", "q", "--passage", "p"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("weird"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
