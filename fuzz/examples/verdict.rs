//! Prints the validator's verdict on each file given: handy for looking at
//! seeds and at crash reproducers outside libFuzzer.
//!
//! Run from `fuzz/`: `cargo run --example verdict -- FILE...`.

// Same source inclusion as the fuzz target (see fuzz/Cargo.toml for why).
#[allow(dead_code, reason = "only validate_component is used here")]
#[rustfmt::skip] // not ours to format: `cargo fmt` here must leave host/ alone
#[path = "../../host/src/sandbox/validate.rs"]
mod validate;

fn main() {
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let verdict = validate::validate_component(&bytes, validate::DEFAULT_MAX_COMPONENT_BYTES);
        match verdict {
            Ok(r) => println!(
                "{path}: OK {} world={} imports={:?}",
                r.reranker_export, r.world, r.imports
            ),
            Err(e) => println!("{path}: ERR {e}"),
        }
    }
}
