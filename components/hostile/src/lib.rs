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
//! | `batch`, `tokens`, `rounds` | `64`, `256`, `1` | shape and repeats of `huge-compute`     |
//! | `count`   | `200` (`tensor-flood`), `100000` (`log-flood`) | how many                       |
//! | `flood-mib` | `100` | size of each `tensor-flood` tensor                               |
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
//! | `sleep`           | `std::thread::sleep` for one hour                                                   | deadline (the guest waits in a host call: no epoch fires) |
//! | `block`           | `wasi:clocks/monotonic-clock.subscribe-duration(1 h)`, then `pollable.block()`      | deadline |
//! | `poll`            | `wasi:io/poll.poll([...])` on two one-hour pollables                                | deadline |
//! | `configure-sleep` | (in `configure`) `std::thread::sleep` for one hour                                  | deadline during configure |
//! | `huge-compute`    | loads `graph` and `compute`s one legal MiniLM batch of `batch` x `tokens` ids, `rounds` times | deadline (or `too-large` over the host's element cap) |
//! | `tensor-flood`    | builds `count` wasi-nn tensors of `flood-mib` MiB each from one guest buffer and keeps them all | out of memory (host bytes are metered) |
//! | `log-flood`       | calls `load-by-name("no-such-graph")` `count` times                                 | normal scores; the host logs a few lines, not `count` |
//!
//! An unknown `attack` is `invalid-config`, as are unknown keys.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use nboost_nn_common::bindings::wasi::nn::tensor::{Tensor, TensorType};
use nboost_nn_common::nn::Model;
use nboost_nn_common::settings::Settings;

nboost_nn_common::plugin_bindings!();

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
    "sleep",
    "block",
    "poll",
    "configure-sleep",
    "huge-compute",
    "tensor-flood",
    "log-flood",
];

/// What `configure` was told to do.
#[derive(Clone, Debug)]
struct Config {
    attack: &'static str,
    graph: String,
    slow: Duration,
    batch: u32,
    tokens: u32,
    rounds: u32,
    count: u32,
    flood_mib: u32,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

fn parse(settings: &[(String, String)]) -> Result<Config, String> {
    let s = Settings::new(
        settings,
        &[
            "attack",
            "graph",
            "slow-ms",
            "batch",
            "tokens",
            "rounds",
            "count",
            "flood-mib",
        ],
    )?;
    let name = s.string_or("attack", "none")?;
    let attack = ATTACKS
        .iter()
        .copied()
        .find(|a| *a == name)
        .ok_or_else(|| format!("unknown attack `{name}` (known: {})", ATTACKS.join(", ")))?;
    let graph = match attack {
        "forbidden-graph" | "giant-tensor" | "huge-compute" => s.required("graph")?.to_owned(),
        _ => s.get("graph").unwrap_or_default().to_owned(),
    };
    let slow = Duration::from_millis(u64::from(s.integer_or("slow-ms", 1000, 0, 3_600_000)?));
    let default_count = if attack == "log-flood" { 100_000 } else { 200 };
    Ok(Config {
        attack,
        graph,
        slow,
        batch: s.integer_or("batch", 64, 1, 4096)?,
        tokens: s.integer_or("tokens", 256, 1, 512)?,
        rounds: s.integer_or("rounds", 1, 1, 1000)?,
        count: s.integer_or("count", default_count, 1, 10_000_000)?,
        flood_mib: s.integer_or("flood-mib", 100, 1, 1024)?,
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

const HOUR: Duration = Duration::from_secs(3600);

fn sleep_hour() {
    std::thread::sleep(black_box(HOUR));
}

#[cfg(target_arch = "wasm32")]
fn block_on_clock() {
    let p = wasip2::clocks::monotonic_clock::subscribe_duration(black_box(HOUR.as_nanos() as u64));
    p.block();
}

#[cfg(target_arch = "wasm32")]
fn poll_clocks() {
    let a = wasip2::clocks::monotonic_clock::subscribe_duration(black_box(HOUR.as_nanos() as u64));
    let b =
        wasip2::clocks::monotonic_clock::subscribe_duration(black_box(2 * HOUR.as_nanos() as u64));
    black_box(wasip2::io::poll::poll(&[&a, &b]));
}

#[cfg(not(target_arch = "wasm32"))]
fn block_on_clock() {
    sleep_hour();
}

#[cfg(not(target_arch = "wasm32"))]
fn poll_clocks() {
    sleep_hour();
}

fn huge_compute(config: &Config, passages: &[String]) -> Result<Vec<f32>, Error> {
    let model = Model::load(&config.graph).map_err(|e| Error::Backend(e.to_string()))?;
    let dims = [config.batch, config.tokens];
    let n = (config.batch * config.tokens) as usize;
    let ids: Vec<i64> = (0..n).map(|i| 1000 + (i % 5000) as i64).collect();
    for _ in 0..config.rounds {
        let inputs = vec![
            nboost_nn_common::nn::i64_tensor("input_ids", &dims, &ids),
            nboost_nn_common::nn::i64_tensor("attention_mask", &dims, &vec![1; n]),
            nboost_nn_common::nn::i64_tensor("token_type_ids", &dims, &vec![0; n]),
        ];
        let out = model
            .compute(black_box(inputs))
            .map_err(|e| Error::Backend(e.to_string()))?;
        black_box(&out);
    }
    Ok(lengths(passages))
}

fn tensor_flood(config: &Config, passages: &[String]) -> Result<Vec<f32>, Error> {
    let data = black_box(vec![7_u8; (config.flood_mib as usize) << 20]);
    let dims = [1, (config.flood_mib << 20) / 8];
    let mut hoard = Vec::new();
    for _ in 0..config.count {
        hoard.push(Tensor::new(black_box(&dims), TensorType::I64, &data));
    }
    black_box(&hoard);
    Ok(lengths(passages))
}

fn log_flood(config: &Config, passages: &[String]) -> Result<Vec<f32>, Error> {
    let mut failures = 0u32;
    for _ in 0..config.count {
        if Model::load(black_box("no-such-graph")).is_err() {
            failures += 1;
        }
    }
    black_box(failures);
    Ok(lengths(passages))
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
        if config.attack == "configure-sleep" {
            sleep_hour();
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
            "sleep" => {
                sleep_hour();
                Ok(lengths(&passages))
            }
            "block" => {
                block_on_clock();
                Ok(lengths(&passages))
            }
            "poll" => {
                poll_clocks();
                Ok(lengths(&passages))
            }
            "huge-compute" => huge_compute(&config, &passages),
            "tensor-flood" => tensor_flood(&config, &passages),
            "log-flood" => log_flood(&config, &passages),
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

    use nboost_nn_common::settings::pairs as settings;

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
