//! `nboost-hostile`: a deliberately malicious and buggy plugin, for the
//! host's sandbox tests. **Never deploy it.**
//!
//! World `nn-reranker-plugin`. The setting `attack` picks one misbehaviour;
//! it happens in `score` (only `configure-panic` happens in `configure`).
//! Every attack goes through [`std::hint::black_box`] so that the optimiser
//! cannot prove it useless and remove it.
//!
//! # Settings
//!
//! | key       | default | meaning                                                      |
//! |-----------|---------|--------------------------------------------------------------|
//! | `attack`  | `none`  | one of the attacks below                                     |
//! | `graph`   | —       | graph name for `forbidden-graph` and `giant-tensor` (required by those two) |
//! | `slow-ms` | `1000`  | busy-wait of `slow`, in milliseconds, `[0, 3600000]`         |
//!
//! # Attacks
//!
//! | `attack`          | what `score` does                                                                  | the host should see |
//! |-------------------|------------------------------------------------------------------------------------|---------------------|
//! | `none`            | behaves: score = passage length in characters                                       | success |
//! | `infinite-loop`   | spins forever                                                                      | deadline / epoch interruption |
//! | `memory-bomb`     | allocates and touches 1 MiB chunks forever                                          | memory limit, then a trap |
//! | `stack-overflow`  | unbounded non-tail recursion with small frames                                     | stack-exhaustion trap (or an out-of-bounds trap if the host's `max_wasm_stack` outgrows the 1 MiB shadow stack) |
//! | `panic`           | `panic!`                                                                           | trap (wasm32 panics abort) |
//! | `trap`            | `unreachable` instruction                                                          | trap |
//! | `wrong-count`     | returns `passages.len() + 1` scores                                                | output validation fault |
//! | `nan`             | all scores NaN                                                                     | output validation fault (needs ≥ 1 passage) |
//! | `infinity`        | all scores +∞                                                                      | output validation fault (needs ≥ 1 passage) |
//! | `huge-output`     | returns 50 000 000 scores (200 MB)                                                 | output size limit, or wrong count |
//! | `read-file`       | `std::fs::read("/etc/passwd")`, `std::fs::read_dir("/")`                           | `internal` with both io errors; if either succeeds, every score = bytes read (or directory entries) |
//! | `read-env`        | counts `std::env::vars_os()`                                                        | no variables: normal scores; any: `internal("saw env")` |
//! | `forbidden-graph` | `load-by-name(graph)` (+ `init-execution-context`)                                 | `backend` with the wasi-nn error; if it loads, normal scores |
//! | `giant-tensor`    | loads `graph`, then `compute`s with an `I64` `input_ids` tensor claiming `[1000000, 1000000]` backed by 16 bytes, then with a consistent `[1, 33554432]` one backed by 256 MiB | `backend` listing both errors; a trap if the host traps instead; normal scores if both computes succeed |
//! | `slow`            | busy-waits `slow-ms` on the monotonic clock, then behaves                           | success after the delay, or deadline |
//! | `configure-panic` | (in `configure`) `panic!`                                                          | trap during configure |
//!
//! An unknown `attack` is `invalid-config`, as are unknown keys.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use nboost_nn_common::bindings::wasi::nn::tensor::{Tensor, TensorType};
use nboost_nn_common::nn::Model;
use nboost_nn_common::settings::Settings;

/// Bindings for the `nn-reranker-plugin` world, reusing nn-common's wasi-nn.
#[allow(missing_docs, reason = "generated code")]
mod bindings {
    wit_bindgen::generate!({
        world: "nn-reranker-plugin",
        path: "../../wit",
        with: {
            "wasi:nn/tensor@0.2.0-rc-2024-10-28": nboost_nn_common::bindings::wasi::nn::tensor,
            "wasi:nn/graph@0.2.0-rc-2024-10-28": nboost_nn_common::bindings::wasi::nn::graph,
            "wasi:nn/inference@0.2.0-rc-2024-10-28": nboost_nn_common::bindings::wasi::nn::inference,
            "wasi:nn/errors@0.2.0-rc-2024-10-28": nboost_nn_common::bindings::wasi::nn::errors,
        },
    });
}

use bindings::exports::nboost::reranker::reranker::{Error, Guest, ModelInfo};

/// Every value `attack` accepts, in the order of the crate docs.
pub const ATTACKS: &[&str] = &[
    "none",
    "infinite-loop",
    "memory-bomb",
    "stack-overflow",
    "panic",
    "trap",
    "wrong-count",
    "nan",
    "infinity",
    "huge-output",
    "read-file",
    "read-env",
    "forbidden-graph",
    "giant-tensor",
    "slow",
    "configure-panic",
];

/// What `configure` was told to do.
#[derive(Clone, Debug)]
struct Config {
    attack: &'static str,
    graph: String,
    slow: Duration,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

fn parse(settings: &[(String, String)]) -> Result<Config, String> {
    let s = Settings::new(settings, &["attack", "graph", "slow-ms"])?;
    let name = s.string_or("attack", "none")?;
    let attack = ATTACKS
        .iter()
        .copied()
        .find(|a| *a == name)
        .ok_or_else(|| format!("unknown attack `{name}` (known: {})", ATTACKS.join(", ")))?;
    let graph = match attack {
        "forbidden-graph" | "giant-tensor" => s.required("graph")?.to_owned(),
        _ => s.get("graph").unwrap_or_default().to_owned(),
    };
    let slow = Duration::from_millis(u64::from(s.integer_or("slow-ms", 1000, 0, 3_600_000)?));
    Ok(Config {
        attack,
        graph,
        slow,
    })
}

/// The well-behaved answer: each passage's length in characters.
fn lengths(passages: &[String]) -> Vec<f32> {
    passages.iter().map(|p| p.chars().count() as f32).collect()
}

fn infinite_loop() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn memory_bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero bytes: every page is really touched.
        let chunk = vec![0xA5_u8; 1 << 20];
        hoard.push(black_box(chunk));
        black_box(&hoard);
    }
}

/// Recursion that is not a tail call and that the optimiser cannot bound.
/// Frames are small (one `u64` kept live across the call), so the wasm call
/// stack (Wasmtime's `max_wasm_stack`) runs out before the 1 MiB shadow stack
/// in linear memory does; either way the instance traps.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let depth = black_box(depth);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(black_box(depth))
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

fn read_file(passages: &[String]) -> Result<Vec<f32>, Error> {
    let file = black_box(std::fs::read(black_box("/etc/passwd")));
    let dir = black_box(std::fs::read_dir(black_box("/")).map(|entries| entries.count()));
    match (file, dir) {
        (Ok(bytes), _) => Ok(vec![bytes.len() as f32; passages.len()]),
        (_, Ok(entries)) => Ok(vec![entries as f32; passages.len()]),
        (Err(f), Err(d)) => Err(Error::Internal(format!(
            "read /etc/passwd: {f}; read_dir /: {d}"
        ))),
    }
}

fn read_env(passages: &[String]) -> Result<Vec<f32>, Error> {
    if black_box(std::env::vars_os().count()) > 0 {
        return Err(Error::Internal("saw env".to_owned()));
    }
    Ok(lengths(passages))
}

fn forbidden_graph(graph: &str, passages: &[String]) -> Result<Vec<f32>, Error> {
    let model = Model::load(black_box(graph)).map_err(|e| Error::Backend(e.to_string()))?;
    black_box(&model);
    Ok(lengths(passages))
}

fn giant_tensor(graph: &str, passages: &[String]) -> Result<Vec<f32>, Error> {
    let model = Model::load(graph).map_err(|e| Error::Backend(e.to_string()))?;
    let mut errors = Vec::new();

    // Dimensions claiming 10^12 elements (8 TB), backed by 16 bytes.
    let liar = Tensor::new(
        black_box(&[1_000_000, 1_000_000]),
        TensorType::I64,
        black_box(&[0_u8; 16]),
    );
    if let Err(e) = model.compute(vec![("input_ids".to_owned(), liar)]) {
        errors.push(format!("[1000000, 1000000] with 16 bytes: {e}"));
    }

    // Honest dimensions, 256 MiB of data.
    let data = black_box(vec![1_u8; 256 << 20]);
    let heavy = Tensor::new(black_box(&[1, 32 << 20]), TensorType::I64, &data);
    drop(data);
    if let Err(e) = model.compute(vec![("input_ids".to_owned(), heavy)]) {
        errors.push(format!("[1, 33554432] with 256 MiB: {e}"));
    }

    if errors.is_empty() {
        Ok(lengths(passages))
    } else {
        Err(Error::Backend(errors.join("; ")))
    }
}

fn slow(wait: Duration, passages: &[String]) -> Vec<f32> {
    let start = Instant::now();
    while black_box(start.elapsed()) < wait {
        std::hint::spin_loop();
    }
    lengths(passages)
}

/// The component: implements the exported `reranker` interface, badly.
pub struct Plugin;

impl Guest for Plugin {
    fn configure(settings: Vec<(String, String)>) -> Result<ModelInfo, Error> {
        CONFIG.with_borrow_mut(|c| *c = None);
        let config = parse(&settings).map_err(Error::InvalidConfig)?;
        if config.attack == "configure-panic" {
            panic!("hostile plugin: deliberate panic in configure");
        }
        let info = ModelInfo {
            name: "hostile".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: format!("sandbox test fixture, attack `{}`", config.attack),
            preferred_batch_size: 0,
            max_tokens: 0,
        };
        CONFIG.with_borrow_mut(|c| *c = Some(config));
        Ok(info)
    }

    fn score(_query: String, passages: Vec<String>) -> Result<Vec<f32>, Error> {
        let config = CONFIG
            .with_borrow(Clone::clone)
            .ok_or_else(|| Error::InvalidConfig("`configure` has not succeeded".to_owned()))?;
        let n = passages.len();
        match config.attack {
            "infinite-loop" => infinite_loop(),
            "memory-bomb" => memory_bomb(),
            "stack-overflow" => Ok(vec![black_box(recurse(black_box(0))) as f32; n]),
            "panic" => panic!("hostile plugin: deliberate panic in score"),
            "trap" => trap(),
            "wrong-count" => {
                let mut scores = lengths(&passages);
                scores.push(black_box(0.0));
                Ok(scores)
            }
            "nan" => Ok(vec![black_box(f32::NAN); n]),
            "infinity" => Ok(vec![black_box(f32::INFINITY); n]),
            "huge-output" => Ok(black_box(vec![1.0_f32; black_box(50_000_000)])),
            "read-file" => read_file(&passages),
            "read-env" => read_env(&passages),
            "forbidden-graph" => forbidden_graph(&config.graph, &passages),
            "giant-tensor" => giant_tensor(&config.graph, &passages),
            "slow" => Ok(slow(config.slow, &passages)),
            _ => Ok(lengths(&passages)),
        }
    }
}

// Register `Plugin` as the component's exports (wasm32 only).
#[cfg(target_arch = "wasm32")]
bindings::export!(Plugin with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_attack() {
        for attack in ATTACKS {
            let s = settings(&[("attack", attack), ("graph", "g")]);
            assert_eq!(parse(&s).unwrap().attack, *attack);
        }
        assert_eq!(parse(&[]).unwrap().attack, "none");
    }

    #[test]
    fn rejects_bad_settings() {
        for bad in [
            settings(&[("attack", "rm-rf")]),
            settings(&[("attack", "forbidden-graph")]),
            settings(&[("attack", "giant-tensor")]),
            settings(&[("attack", "slow"), ("slow-ms", "-1")]),
            settings(&[("atack", "none")]),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn harmless_attacks_behave_natively() {
        Plugin::configure(settings(&[("attack", "wrong-count")])).unwrap();
        let s = Plugin::score("q".into(), vec!["ab".into(), "é".into()]).unwrap();
        assert_eq!(s, vec![2.0, 1.0, 0.0]);
        Plugin::configure(settings(&[("attack", "slow"), ("slow-ms", "20")])).unwrap();
        let start = Instant::now();
        assert_eq!(
            Plugin::score("q".into(), vec!["ab".into()]).unwrap(),
            vec![2.0]
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        Plugin::configure(settings(&[("attack", "nan")])).unwrap();
        assert!(Plugin::score("q".into(), vec!["ab".into()]).unwrap()[0].is_nan());
        assert!(Plugin::configure(settings(&[("attack", "nope")])).is_err());
        assert!(Plugin::score("q".into(), vec![]).is_err());
    }
}
