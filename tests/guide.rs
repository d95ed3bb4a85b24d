//! docs/onnx-to-plugin.md, run as written: every `sh` block, in order, in
//! one bash session in an empty directory (the guide's own commands import
//! the model, scaffold, build, test, rerank, bundle and verify).

use std::process::Command;

use crate::common::repo;

/// The `sh` blocks of a Markdown file, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unterminated code block");
    blocks
}

#[test]
fn the_onnx_to_plugin_guide_runs_as_written() {
    let guide = std::fs::read_to_string(repo().join("docs/onnx-to-plugin.md")).unwrap();
    let blocks = sh_blocks(&guide);
    assert!(blocks.len() >= 6, "{blocks:?}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &blocks.join("\n")])
        .current_dir(dir.path())
        .env("NBOOST", repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the guide failed:\n{stdout}\n{stderr}"
    );
    // What the guide says each step shows.
    assert!(stdout.contains("10 of 10 checks passed"), "{stdout}");
    assert!(stdout.contains("parts verified"), "{stdout}");
    assert!(dir.path().join("my-reranker/my-reranker.wasm").is_file());
    // The rerank step put the passage about lift first (table: rank 1).
    let first = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("1 ") && l.contains("  "))
        .unwrap_or_else(|| panic!("no ranking in {stdout}"));
    assert!(first.contains("A wing produces lift"), "{first}");
}
