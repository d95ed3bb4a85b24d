//! The component contract suite: what every reranker must do, as
//! `wit/reranker.wit` states it, run against one component through the
//! real sandbox.
//!
//! One suite, two users: `nboost components test` runs it on any file
//! before an upload (a plugin author's check), and `tests/contract.rs` runs
//! it on every component in `components/`. It calls instances directly,
//! not through the service's input checks, so an empty list or a 100 000-
//! character passage reaches the guest. Each check is independent: a
//! failing one is reported and the next still runs (an instance that
//! faulted is replaced).

use std::time::Instant;

use serde::Serialize;

use crate::registry::Manifest;
use crate::sandbox::Plugin;
use crate::service::{Reranker, RerankerConfig};
use crate::RerankError;

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed.
    pub ok: bool,
    /// What was seen (on failure: why it failed).
    pub detail: String,
}

/// The query every check scores against.
const QUERY: &str = "what causes lift on a wing";

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Run the suite on component `name` of `manifest`. `Err` only when the
/// component cannot be loaded or configured at all (then nothing else can
/// run); every other failure is a failed [`Check`].
pub fn run(
    manifest: &Manifest,
    name: &str,
    config: &RerankerConfig,
) -> Result<Vec<Check>, RerankError> {
    let host = Reranker::new(manifest.clone(), config.clone())?;
    let pre = host.registry().get(name)?;
    let engine = host.registry().engine();
    let t0 = Instant::now();
    let mut plugin = pre.instantiate(engine)?;
    let info = plugin.info().clone();
    let mut checks = vec![Check {
        name: "configure",
        ok: true,
        detail: format!(
            "`{}` {} ({} ms to instantiate and configure), max-tokens {}",
            info.name,
            info.version,
            t0.elapsed().as_millis(),
            info.max_tokens
        ),
    }];
    let mut check = |name: &'static str, outcome: Result<String, String>| {
        let (ok, detail) = match outcome {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        checks.push(Check { name, ok, detail });
    };
    let score = |plugin: &mut Plugin, passages: &[String]| -> Result<Vec<f32>, String> {
        if !plugin.is_alive() {
            *plugin = pre.instantiate(engine).map_err(|e| e.to_string())?;
        }
        plugin.score(QUERY, passages).map_err(|e| e.to_string())
    };
    let one_each = |got: Result<Vec<f32>, String>, n: usize| -> Result<String, String> {
        let got = got?;
        if got.len() == n {
            Ok(format!("{n} finite scores"))
        } else {
            Err(format!("{} scores for {n} passages", got.len()))
        }
    };

    check(
        "an empty passage list gives an empty list",
        one_each(score(&mut plugin, &[]), 0),
    );
    let blank = texts(&["", "   \t\n"]);
    check(
        "empty and whitespace passages",
        one_each(score(&mut plugin, &blank), blank.len()),
    );
    let unicode = texts(&[
        "翼の揚力はどこから来るのか",
        "lift 🛩️🚀 wing ✈ 👩‍👩‍👧",
        "e\u{301}le\u{300}ve a\u{308}ile \u{200b}",
        "подъёмная сила крыла",
        "قوة الرفع",
    ]);
    check(
        "unicode: CJK, emoji, combining marks, RTL",
        one_each(score(&mut plugin, &unicode), unicode.len()),
    );
    let long = vec!["wing lift ".repeat(10_000)];
    check(
        "a passage far over the token limit (100 000 characters)",
        one_each(score(&mut plugin, &long), 1),
    );
    let many: Vec<String> = (0..1000)
        .map(|i| format!("passage {i} about wings and lift"))
        .collect();
    check(
        "1 000 passages in one call",
        one_each(score(&mut plugin, &many), many.len()),
    );
    let some = texts(&[
        "lift is produced by the pressure difference across a wing",
        "bread needs flour",
    ]);
    let a = score(&mut plugin, &some);
    let b = score(&mut plugin, &some);
    check("deterministic across calls", same(&a, &b));
    let c = pre
        .instantiate(engine)
        .map_err(|e| e.to_string())
        .and_then(|mut fresh| fresh.score(QUERY, &some).map_err(|e| e.to_string()));
    check("deterministic across fresh instances", same(&a, &c));
    check(
        "an unknown setting is `invalid-config`, naming it",
        unknown_setting(manifest, name, config),
    );
    check(
        "an empty value for each setting: an error variant or scores, never a fault",
        empty_values(manifest, name, config),
    );
    Ok(checks)
}

fn same(a: &Result<Vec<f32>, String>, b: &Result<Vec<f32>, String>) -> Result<String, String> {
    match (a, b) {
        (Ok(a), Ok(b)) if a == b => Ok(format!("{a:?}")),
        (Ok(a), Ok(b)) => Err(format!("{a:?} then {b:?}")),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    }
}

fn with_settings(
    manifest: &Manifest,
    name: &str,
    edit: impl FnOnce(&mut Vec<(String, String)>),
) -> Manifest {
    let mut m = manifest.clone();
    if let Some(entry) = m.components.get_mut(name) {
        edit(&mut entry.settings);
    }
    m
}

fn unknown_setting(
    manifest: &Manifest,
    name: &str,
    config: &RerankerConfig,
) -> Result<String, String> {
    let m = with_settings(manifest, name, |s| {
        s.push(("no-such-setting".into(), "x".into()))
    });
    let host = Reranker::new(m, config.clone()).map_err(|e| e.to_string())?;
    match host.rerank(name, QUERY, &texts(&["wing"]), None) {
        Err(RerankError::Config { reason, .. })
            if reason.contains("misconfigured") && reason.contains("no-such-setting") =>
        {
            Ok(reason)
        }
        Err(e) => Err(format!(
            "expected invalid-config naming `no-such-setting`, got: {e}"
        )),
        Ok(_) => Err("accepted an unknown setting: typos would pass silently".into()),
    }
}

fn empty_values(
    manifest: &Manifest,
    name: &str,
    config: &RerankerConfig,
) -> Result<String, String> {
    let keys: Vec<String> = manifest
        .components
        .get(name)
        .map(|e| e.settings.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        return Ok("no settings".into());
    }
    let mut seen = Vec::new();
    for key in &keys {
        let m = with_settings(manifest, name, |s| {
            for (k, v) in s.iter_mut() {
                if k == key {
                    v.clear();
                }
            }
        });
        let host = Reranker::new(m, config.clone()).map_err(|e| e.to_string())?;
        match host.rerank(name, QUERY, &texts(&["wing"]), None) {
            Err(
                e @ (RerankError::GuestFault(_)
                | RerankError::Timeout(_)
                | RerankError::OutOfFuel(_)
                | RerankError::OutOfMemory(_)),
            ) => return Err(format!("`{key}` empty: a fault: {e}")),
            Err(e) => seen.push(format!("`{key}`: {e}")),
            Ok(_) => seen.push(format!("`{key}`: accepted")),
        }
    }
    Ok(seen.join("; "))
}
