//! The component contract suite: what every reranker component must do, as
//! `wit/reranker.wit` states it, checked against each component in
//! `components/` through the real sandbox (not the host's input checks:
//! the suite calls the instance directly, so an empty list reaches the
//! guest). [`check`] runs on any manifest entry, so a new component gets
//! the same checks by adding one line here.

use nboost::nn::BackendKind;
use nboost::registry::Manifest;
use nboost::{RerankError, Reranker};

use crate::common::{config, reranker, standard_manifest};

/// Every check, against component `name` of `manifest` (TOML text).
fn check(manifest: &str, name: &str) {
    let host = reranker(manifest, config(BackendKind::Tract));
    let pre = host
        .registry()
        .get(name)
        .unwrap_or_else(|e| panic!("{name}: cannot load: {e}"));
    let engine = host.registry().engine();
    let mut plugin = pre
        .instantiate(engine)
        .unwrap_or_else(|e| panic!("{name}: configure failed: {e}"));
    let q = "what causes lift on a wing";
    let score = |plugin: &mut nboost::sandbox::Plugin, passages: &[String], what: &str| {
        plugin
            .score(q, passages)
            .unwrap_or_else(|e| panic!("{name}: {what}: {e}"))
    };

    // An empty list returns an empty list.
    assert!(score(&mut plugin, &[], "empty list").is_empty(), "{name}");

    // Empty and whitespace passages, unicode of every shape, a passage far
    // over any token limit: one finite score each (the sandbox checks the
    // length and finiteness of every answer).
    let odd: Vec<String> = vec![
        String::new(),
        "   \t\n".into(),
        "翼の揚力はどこから来るのか".into(),
        "lift 🛩️🚀 wing ✈".into(),
        "e\u{301}le\u{300}ve a\u{308}ile".into(),
        "wing lift ".repeat(10_000),
    ];
    assert_eq!(score(&mut plugin, &odd, "odd passages").len(), odd.len());

    // 1 000 passages in one call.
    let many: Vec<String> = (0..1000)
        .map(|i| format!("passage {i} about wings and lift"))
        .collect();
    assert_eq!(score(&mut plugin, &many, "1000 passages").len(), 1000);

    // Deterministic: the same call twice, and on a fresh instance.
    let some: Vec<String> = vec![
        "lift is produced by the pressure difference across a wing".into(),
        "bread needs flour".into(),
    ];
    let a = score(&mut plugin, &some, "first call");
    let b = score(&mut plugin, &some, "second call");
    let mut fresh = pre.instantiate(engine).unwrap();
    let c = score(&mut fresh, &some, "fresh instance");
    assert_eq!(a, b, "{name}: scores differ between calls");
    assert_eq!(a, c, "{name}: scores differ between instances");

    // An unknown setting is `invalid-config`, reported at configure.
    let mut m = Manifest::parse(manifest, std::path::Path::new("/")).unwrap();
    m.components
        .get_mut(name)
        .unwrap()
        .settings
        .push(("no-such-setting".into(), "x".into()));
    let strict = Reranker::new(m, config(BackendKind::Tract)).unwrap();
    match strict.rerank(name, q, &some, None) {
        Err(RerankError::Config { reason, .. }) => {
            assert!(reason.contains("misconfigured"), "{name}: {reason}");
            assert!(reason.contains("no-such-setting"), "{name}: {reason}");
        }
        other => panic!("{name}: expected invalid-config, got {other:?}"),
    }
}

#[test]
fn lexical_keeps_the_contract() {
    check(&standard_manifest(), "lexical");
}

#[test]
fn minilm_keeps_the_contract() {
    check(&standard_manifest(), "minilm");
}

#[test]
fn cross_encoder_keeps_the_contract() {
    check(&standard_manifest(), "cross-encoder");
}
