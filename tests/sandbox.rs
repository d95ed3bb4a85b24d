//! The hostile-component suite. Each attack is a real component built from
//! `components/hostile` (the attack chosen by its `attack` setting). Every
//! test asserts the specific error *and* that a good component, served
//! concurrently from another thread of the same host, still answers
//! correctly, and that the host keeps serving afterwards.

use nboost::nn::BackendKind;
use nboost::sandbox::GuestError;
use nboost::{RerankError, Reranker};

use crate::common::{config, model_file, reranker, wasm};

fn host() -> Reranker {
    let hostile = wasm("nboost_hostile");
    let mut text = format!(
        r#"
[graphs.all-minilm-l6-v2]
path = "{minilm}"

[graphs.tiny-cross-encoder]
path = "{tiny}"

[components.good]
path = "{lexical}"

[components.hostile-sockets]
path = "{sockets}"

[components.forbidden-graph]
path = "{hostile}"
graphs = ["tiny-cross-encoder"]
settings = {{ attack = "forbidden-graph", graph = "all-minilm-l6-v2" }}

[components.giant-tensor]
path = "{hostile}"
graphs = ["tiny-cross-encoder"]
settings = {{ attack = "giant-tensor", graph = "tiny-cross-encoder" }}

[components.slow]
path = "{hostile}"
settings = {{ attack = "slow", slow-ms = 50 }}

[components.infinite-loop]
path = "{hostile}"
settings = {{ attack = "infinite-loop" }}
limits = {{ deadline-ms = 300 }}

[components.memory-bomb]
path = "{hostile}"
settings = {{ attack = "memory-bomb" }}
limits = {{ memory-mib = 64 }}
"#,
        minilm = model_file("all-MiniLM-L6-v2", "model.onnx").display(),
        tiny = model_file("tiny-cross-encoder", "model.onnx").display(),
        lexical = wasm("nboost_reranker_lexical").display(),
        sockets = wasm("nboost_hostile_sockets").display(),
        hostile = hostile.display(),
    );
    for attack in [
        "none",
        "stack-overflow",
        "panic",
        "trap",
        "wrong-count",
        "nan",
        "infinity",
        "huge-output",
        "read-file",
        "read-env",
        "configure-panic",
    ] {
        text.push_str(&format!(
            "\n[components.{attack}]\npath = \"{}\"\nsettings = {{ attack = \"{attack}\" }}\n",
            hostile.display()
        ));
    }
    reranker(&text, config(BackendKind::Tract))
}

pub(crate) fn passages() -> Vec<String> {
    vec![
        "aircraft wings generate lift".into(),
        "bread needs flour".into(),
        "lift and drag on a wing".into(),
    ]
}

/// The good component's answer must be exactly this, under attack or not.
/// `host` must name the lexical component `good`.
pub(crate) fn good_answer(host: &Reranker) -> Vec<usize> {
    host.rerank("good", "wing lift", &passages(), None)
        .expect("the good component answers")
        .ranking
        .iter()
        .map(|r| r.index)
        .collect()
}

/// Run `attack` on one thread while the good component serves on another;
/// return the attack's result after checking the good component throughout.
fn attack(name: &str) -> Result<Vec<f32>, RerankError> {
    let host = host();
    let result = attack_on(&host, name);
    // A fresh instance of the same plugin file still works.
    assert!(host.rerank("none", "q", &passages(), None).is_ok());
    result
}

/// [`attack`] on a given host (which names the lexical component `good`):
/// the good component answers exactly the same before, during and after.
pub(crate) fn attack_on(host: &Reranker, name: &str) -> Result<Vec<f32>, RerankError> {
    let expected = good_answer(host);
    assert_eq!(expected[2], 1, "the bread passage ranks last");
    let result = std::thread::scope(|s| {
        let hostile = s.spawn(|| {
            host.rerank(name, "wing lift", &passages(), None)
                .map(|r| r.ranking.iter().map(|p| p.score).collect::<Vec<f32>>())
        });
        for _ in 0..5 {
            assert_eq!(good_answer(host), expected);
        }
        hostile.join().expect("the host thread did not panic")
    });
    // After the attack the host still serves.
    assert_eq!(good_answer(host), expected);
    result
}

fn guest_fault(result: Result<Vec<f32>, RerankError>, needle: &str) {
    match result {
        Err(RerankError::GuestFault(msg)) => assert!(msg.contains(needle), "{msg}"),
        other => panic!("expected a guest fault mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn infinite_loop_times_out() {
    assert!(matches!(
        attack("infinite-loop"),
        Err(RerankError::Timeout(300))
    ));
}

#[test]
fn memory_bomb_runs_out_of_memory() {
    assert!(matches!(
        attack("memory-bomb"),
        Err(RerankError::OutOfMemory(bytes)) if bytes == 64 << 20
    ));
}

#[test]
fn stack_overflow_is_a_trap() {
    guest_fault(attack("stack-overflow"), "stack overflow");
}

#[test]
fn panic_is_a_trap() {
    guest_fault(attack("panic"), "unreachable");
}

#[test]
fn trap_mid_call_is_a_trap() {
    guest_fault(attack("trap"), "trapped");
}

#[test]
fn configure_panic_is_a_trap() {
    guest_fault(attack("configure-panic"), "trapped");
}

#[test]
fn wrong_score_count_is_refused() {
    guest_fault(attack("wrong-count"), "returned 4 scores for 3 passages");
}

#[test]
fn nan_scores_are_refused() {
    guest_fault(attack("nan"), "non-finite");
}

#[test]
fn infinite_scores_are_refused() {
    guest_fault(attack("infinity"), "non-finite");
}

#[test]
fn huge_output_is_refused_before_it_is_copied() {
    // Scores are lifted during the call (wasmtime 48 frees results in
    // post-return before `call` returns, so no view may outlive it);
    // wasmtime's per-call hostcall fuel refuses the 200 MB list before it
    // allocates for it.
    guest_fault(
        attack("huge-output"),
        "too much data is being copied between the host and the guest",
    );
}

#[test]
fn files_are_unreachable() {
    match attack("read-file") {
        Err(RerankError::Guest(GuestError::Internal(msg))) => {
            assert!(!msg.contains("root:"), "{msg}");
        }
        other => panic!("expected the plugin to be denied, got {other:?}"),
    }
}

#[test]
fn environment_is_empty() {
    // The plugin returns `internal("saw env")` if it sees any variable.
    let scores = attack("read-env").expect("no environment variable is visible");
    assert_eq!(scores.len(), 3);
}

#[test]
fn network_imports_are_refused_at_load() {
    match attack("hostile-sockets") {
        Err(RerankError::InvalidComponent { reason, .. }) => {
            assert!(reason.contains("wasi:sockets"), "{reason}")
        }
        other => panic!("expected the validator to refuse it, got {other:?}"),
    }
}

#[test]
fn graphs_outside_the_allow_list_are_not_found() {
    match attack("forbidden-graph") {
        Err(RerankError::Guest(GuestError::Backend(msg))) => {
            assert!(msg.to_lowercase().contains("not"), "{msg}")
        }
        other => panic!("expected a wasi-nn not-found error, got {other:?}"),
    }
}

/// The first tensor lies about its size and gets a wasi-nn error; the
/// second carries 256 MiB, over the per-call copy budget (hostcall fuel =
/// `max_tensor_bytes` + 1 MiB): the copy is refused before the host
/// allocates, which ends the instance.
#[test]
fn giant_tensors_are_refused() {
    guest_fault(attack("giant-tensor"), "too much data is being copied");
}

#[test]
fn fuel_bounds_an_infinite_loop() {
    let mut cfg = config(BackendKind::Tract);
    cfg.engine.limits.fuel_per_call = Some(50_000_000);
    let text = format!(
        "[components.spin]\npath = \"{}\"\nsettings = {{ attack = \"infinite-loop\" }}\n",
        wasm("nboost_hostile").display()
    );
    let host = reranker(&text, cfg);
    assert!(matches!(
        host.rerank("spin", "q", &passages(), None),
        Err(RerankError::OutOfFuel(50_000_000))
    ));
}

#[test]
fn slow_but_legal_plugin_answers() {
    let scores = attack("slow").expect("a slow plugin within its deadline answers");
    assert_eq!(scores.len(), 3);
}
