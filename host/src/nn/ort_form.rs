//! ONNX Runtime's prepared form: its optimised model, weights apart.
//!
//! Why: a session made from ONNX bytes parses the protobuf and copies
//! every initializer out of it, after the caller has read the whole file
//! into memory: for MiniLM, about 50 ms to read 90 MB and 150 ms to start
//! the session. Written with external initializers, the optimised model is
//! a ~50 KB graph plus a weights file that ONNX Runtime maps instead of
//! reading, so a session starts in about 50 ms (most of it packing the
//! GEMM weights, which it still does, so inference is as fast as before).
//!
//! Layout: the form file is the graph; its weights are the file
//! `<graph file name>.weights` beside it, named after the temporary file
//! the graph was first written to ([`crate::fsutil::write_atomic_with`]),
//! so each write has weights of its own: a writer never truncates weights
//! that another process has mapped. The graph names its weights file, so a
//! form renamed into place keeps finding them. Weights of earlier writes of
//! the same form are removed after a new one is written (unlinking a mapped
//! file is safe: its pages stay until the mapping goes).

use std::path::Path;

use ort::session::builder::SessionBuilder;

/// Write the optimised model of the ONNX `bytes` through `builder` (set to
/// optimise) to `out`, its weights beside it.
pub fn write(builder: SessionBuilder, bytes: &[u8], out: &Path) -> Result<(), String> {
    let dir = out.parent().unwrap_or_else(|| Path::new("."));
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a usable form path", out.display()))?;
    let weights = format!("{name}.weights");
    // `.onnx` in the name makes ONNX Runtime write ONNX, not its ORT format.
    let onnx = out.with_extension("onnx");
    let written = builder
        .with_config_entry(
            "session.optimized_model_external_initializers_file_name",
            &weights,
        )
        .and_then(|b| {
            b.with_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes",
                "1024",
            )
        })
        .and_then(|b| b.with_optimized_model_path(&onnx))
        .and_then(|b| b.commit_from_memory(bytes))
        .map_err(|e| format!("ONNX Runtime cannot write its optimised model: {e}"));
    let finish = || -> std::io::Result<()> {
        // The graph file is made durable by its atomic replace; the weights
        // must be on disk before the graph that names them is.
        std::fs::File::open(dir.join(&weights))?.sync_all()?;
        std::fs::rename(&onnx, out)
    };
    let done = written.and_then(|_| finish().map_err(|e| format!("{}: {e}", out.display())));
    if done.is_err() {
        let _ = std::fs::remove_file(&onnx);
        let _ = std::fs::remove_file(dir.join(&weights));
        return done;
    }
    remove_earlier_weights(dir, name, &weights);
    Ok(())
}

/// Remove the weights of earlier writes of the form whose temporary file
/// is `tmp_name` (`.NAME.PID-SEQ.tmp`), sparing `keep`.
fn remove_earlier_weights(dir: &Path, tmp_name: &str, keep: &str) {
    let Some(form) = tmp_name
        .strip_suffix(".tmp")
        .and_then(|n| n.rsplit_once('.'))
        .map(|(form, _seq)| format!("{form}."))
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if file != keep && file.starts_with(&form) && file.ends_with(".tmp.weights") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_earlier_weights_of_the_same_form_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            ".abc.form.10-0.tmp.weights",
            ".abc.form.11-3.tmp.weights",
            ".abd.form.10-1.tmp.weights",
            "abc.form",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        remove_earlier_weights(
            dir.path(),
            ".abc.form.11-3.tmp",
            ".abc.form.11-3.tmp.weights",
        );
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".abc.form.11-3.tmp.weights",
                ".abd.form.10-1.tmp.weights",
                "abc.form"
            ]
        );
    }
}
