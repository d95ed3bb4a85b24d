//! Tests of the OpenVINO back-end against the real library (skipped when
//! the wheel's library is not installed).

use super::*;

fn options(dir: &Path) -> NnOptions {
    NnOptions {
        openvino_library: Some(dir.to_path_buf()),
        ..NnOptions::default()
    }
}

/// The wheel's library directory and the tiny test graph, when both are
/// present (`OPENVINO_LIB_DIR`, else the repository's `.venv`).
fn real_setup() -> Option<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("OPENVINO_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/lib/python3.11/site-packages/openvino/libs"));
    let model = std::fs::read(root.join("models/tiny-cross-encoder/model.onnx")).ok()?;
    if !dir.join(LIBRARY_FILE).exists() {
        eprintln!("skipped: no {LIBRARY_FILE} in {}", dir.display());
        return None;
    }
    Some((dir, model))
}

fn i64s(name: &str, dims: Vec<u32>, v: &[i64]) -> NamedTensor {
    NamedTensor {
        name: name.into(),
        tensor: super::super::i64_tensor(&dims.iter().map(|d| *d as usize).collect::<Vec<_>>(), v),
    }
}

fn bert_inputs(ids: &[i64]) -> Vec<NamedTensor> {
    let n = ids.len() as u32;
    vec![
        i64s("token_type_ids", vec![1, n], &vec![0; ids.len()]),
        i64s("input_ids", vec![1, n], ids),
        i64s("attention_mask", vec![1, n], &vec![1; ids.len()]),
    ]
}

fn run(graph: &Graph, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, BackendError> {
    graph.init_execution_context()?.compute_with_io(inputs)
}

#[test]
fn real_library_matches_tract_and_rejects_bad_input() {
    let Some((dir, model)) = real_setup() else {
        return;
    };
    let opts = NnOptions {
        threads: 2,
        ..options(&dir)
    };
    let (graph, _) = OpenvinoLoader::new(&opts)
        .unwrap()
        .load("tiny", &model)
        .unwrap();
    let (tract, _) = super::super::tract::TractLoader::new(&opts)
        .unwrap()
        .load("tiny", &model)
        .unwrap();
    let ids = [101, 2054, 2003, 1037, 102, 2023, 102];
    let ov = run(&graph, bert_inputs(&ids)).unwrap();
    let tr = run(&tract, bert_inputs(&ids)).unwrap();
    assert_eq!(ov[0].name, "logits");
    assert_eq!(ov[0].tensor.dimensions, vec![1, 1]);
    let (a, b) = (bytes_to_f32(&ov[0].tensor), bytes_to_f32(&tr[0].tensor));
    assert!((a[0] - b[0]).abs() < 1e-4, "openvino {a:?} vs tract {b:?}");

    // i32 ids are widened to the graph's i64.
    let mut widened = bert_inputs(&ids);
    let i32s: Vec<u8> = ids.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect();
    widened[1].tensor = NnTensor::new(vec![1, 7], TensorType::I32, i32s);
    let w = run(&graph, widened).unwrap();
    assert_eq!(bytes_to_f32(&w[0].tensor), a);

    // Wrong name, wrong rank, a missing input: errors, not panics.
    let mut renamed = bert_inputs(&ids);
    renamed[0].name = "segment_ids".into();
    assert!(run(&graph, renamed).is_err());
    let mut flat = bert_inputs(&ids);
    flat[1] = i64s("input_ids", vec![7], &ids);
    assert!(run(&graph, flat).is_err());
    let mut missing = bert_inputs(&ids);
    missing.remove(0);
    assert!(run(&graph, missing).is_err());

    // Concurrent requests share the compiled model and agree.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| bytes_to_f32(&run(&graph, bert_inputs(&ids)).unwrap()[0].tensor)))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), a);
        }
    });
}

#[test]
fn gpu_without_a_gpu_is_a_clear_error() {
    let Some((dir, _)) = real_setup() else {
        return;
    };
    let opts = NnOptions {
        target: Target::Gpu,
        ..options(&dir)
    };
    match OpenvinoLoader::new(&opts) {
        // A machine with an Intel GPU.
        Ok(_) => {}
        Err(e) => assert!(e.to_string().contains("no GPU device"), "{e}"),
    }
}

#[test]
fn missing_directory_is_a_clear_error() {
    let err = library_path(&options(Path::new("/nonexistent/openvino/libs")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn versioned_library_only_explains_the_link() {
    let dir = std::env::temp_dir().join(format!("nboost-ov-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("libopenvino_c.so.2641"), b"").unwrap();
    let err = library_path(&options(&dir)).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.contains("ln -s libopenvino_c.so.2641"), "{err}");
}

#[test]
fn empty_directory_names_the_library() {
    let dir = std::env::temp_dir().join(format!("nboost-ov-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = library_path(&options(&dir)).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.contains("holds no libopenvino_c.so"), "{err}");
}
