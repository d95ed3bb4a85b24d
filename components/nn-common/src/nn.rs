//! A typed wrapper over the wasi-nn imports.
//!
//! A plugin checks its graph by name in `configure` (the host resolves only
//! names the operator allowed for the component): the graph is loaded and an
//! execution context made, then both handles are released. They are opened
//! again on the first `score` and reused for every later one. So a
//! configured instance holds no host resource, and the host may snapshot it
//! right after `configure` and start later instances from that image, with
//! the tokenizer already parsed in memory (pre-initialisation, see the
//! host's `sandbox::preinit`): a handle kept across `configure` would name
//! nothing in such an instance. Errors keep the wasi-nn error
//! code and the back-end's message, so the host's logs say what failed.

use std::cell::OnceCell;
use std::fmt;

use crate::bindings::wasi::nn::errors::{self, ErrorCode};
use crate::bindings::wasi::nn::graph::{self, Graph};
use crate::bindings::wasi::nn::inference::GraphExecutionContext;
use crate::bindings::wasi::nn::tensor::Tensor;
pub use crate::bindings::wasi::nn::tensor::TensorType;
use crate::tensors::{f32_values, i64_le_bytes};

/// A failed wasi-nn call: which one, the error code, and the back-end's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NnError {
    /// What was being done, e.g. `load-by-name("all-minilm-l6-v2")`.
    pub operation: String,
    /// The wasi-nn error code, as written in WIT (`not-found`, ...).
    pub code: &'static str,
    /// The back-end's own message (`error.data()`), possibly empty.
    pub data: String,
}

impl NnError {
    fn new(operation: impl Into<String>, error: &errors::Error) -> Self {
        Self {
            operation: operation.into(),
            code: error_code_name(error.code()),
            data: error.data(),
        }
    }
}

impl fmt::Display for NnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wasi-nn {} failed: {}", self.operation, self.code)?;
        if !self.data.is_empty() {
            write!(f, ": {}", self.data)?;
        }
        Ok(())
    }
}

impl std::error::Error for NnError {}

/// The WIT name of a wasi-nn error code.
pub fn error_code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidArgument => "invalid-argument",
        ErrorCode::InvalidEncoding => "invalid-encoding",
        ErrorCode::Timeout => "timeout",
        ErrorCode::RuntimeError => "runtime-error",
        ErrorCode::UnsupportedOperation => "unsupported-operation",
        ErrorCode::TooLarge => "too-large",
        ErrorCode::NotFound => "not-found",
        ErrorCode::Security => "security",
        ErrorCode::Unknown => "unknown",
    }
}

/// The WIT name of a tensor type.
pub fn tensor_type_name(ty: TensorType) -> &'static str {
    match ty {
        TensorType::Fp16 => "FP16",
        TensorType::Fp32 => "FP32",
        TensorType::Fp64 => "FP64",
        TensorType::Bf16 => "BF16",
        TensorType::U8 => "U8",
        TensorType::I32 => "I32",
        TensorType::I64 => "I64",
    }
}

/// A graph loaded by name, with its execution context (opened on first use).
pub struct Model {
    name: String,
    handles: OnceCell<Handles>,
}

/// A graph and its execution context.
struct Handles {
    // Field order is drop order: the context goes before its graph.
    context: GraphExecutionContext,
    _graph: Graph,
}

impl Handles {
    /// `load-by-name(name)`, then `init-execution-context`.
    fn open(name: &str) -> Result<Self, NnError> {
        let graph = graph::load_by_name(name)
            .map_err(|e| NnError::new(format!("load-by-name({name:?})"), &e))?;
        let context = graph
            .init_execution_context()
            .map_err(|e| NnError::new(format!("init-execution-context({name:?})"), &e))?;
        Ok(Self {
            context,
            _graph: graph,
        })
    }
}

impl Model {
    /// Check that `name` loads (`load-by-name`, `init-execution-context`),
    /// then release both handles; [`Model::compute`] opens them again on
    /// first use. An error here is the one `configure` should report.
    pub fn load(name: &str) -> Result<Self, NnError> {
        drop(Handles::open(name)?);
        Ok(Self {
            name: name.to_owned(),
            handles: OnceCell::new(),
        })
    }

    /// The handles, opened on first use.
    fn handles(&self) -> Result<&Handles, NnError> {
        if let Some(h) = self.handles.get() {
            return Ok(h);
        }
        let opened = Handles::open(&self.name)?;
        Ok(self.handles.get_or_init(|| opened))
    }

    /// The graph name this model was loaded by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run the graph on named input tensors (see [`i64_tensor`]).
    pub fn compute(&self, inputs: Vec<(String, Tensor)>) -> Result<Outputs, NnError> {
        self.handles()?
            .context
            .compute(inputs)
            .map(Outputs)
            .map_err(|e| NnError::new(format!("compute on {:?}", self.name), &e))
    }

    /// Run a BERT-style graph on one padded batch: its `input_ids`,
    /// `attention_mask` and `token_type_ids` as `[batch, seq]` tensors.
    pub fn compute_bert(&self, batch: &crate::tensors::Batch) -> Result<Outputs, NnError> {
        let dims = batch.dims();
        self.compute(vec![
            i64_tensor("input_ids", &dims, &batch.input_ids),
            i64_tensor("attention_mask", &dims, &batch.attention_mask),
            i64_tensor("token_type_ids", &dims, &batch.token_type_ids),
        ])
    }
}

/// A named `I64` input tensor with dimensions `dims` and row-major `values`.
pub fn i64_tensor(name: &str, dims: &[u32], values: &[i64]) -> (String, Tensor) {
    (
        name.to_owned(),
        Tensor::new(dims, TensorType::I64, &i64_le_bytes(values)),
    )
}

/// The named output tensors of one `compute`.
pub struct Outputs(Vec<(String, Tensor)>);

impl Outputs {
    /// The names the back-end returned.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The output called `name`, read as `FP32`, after checking that its
    /// data length matches its dimensions. Returns the dimensions and the
    /// values; the caller checks the dimensions are the ones it expects.
    ///
    /// When no output has that name but the back-end returned exactly one
    /// output, that one is used: some back-ends name outputs by position
    /// (wasmtime-wasi-nn's OpenVINO back-end returns `"0"`, `"1"`, ...).
    pub fn f32(&self, name: &str) -> Result<(Vec<u32>, Vec<f32>), String> {
        let found = match self.0.iter().find(|(n, _)| n == name) {
            Some(output) => Some(output),
            None if self.0.len() == 1 => self.0.first(),
            None => None,
        };
        let Some((_, tensor)) = found else {
            return Err(format!(
                "the graph has no output named {name:?} (it returned {:?})",
                self.names()
            ));
        };
        let ty = tensor.ty();
        if ty != TensorType::Fp32 {
            return Err(format!(
                "output {name:?} is {}, expected FP32",
                tensor_type_name(ty)
            ));
        }
        let dims = tensor.dimensions();
        let values =
            f32_values(&dims, &tensor.data()).map_err(|e| format!("output {name:?}: {e}"))?;
        Ok((dims, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_has_code_and_data() {
        let e = NnError {
            operation: "load-by-name(\"x\")".into(),
            code: "not-found",
            data: "no such graph".into(),
        };
        assert_eq!(
            e.to_string(),
            "wasi-nn load-by-name(\"x\") failed: not-found: no such graph"
        );
        let e = NnError {
            data: String::new(),
            ..e
        };
        assert_eq!(
            e.to_string(),
            "wasi-nn load-by-name(\"x\") failed: not-found"
        );
    }

    #[test]
    fn names() {
        assert_eq!(error_code_name(ErrorCode::TooLarge), "too-large");
        assert_eq!(tensor_type_name(TensorType::I64), "I64");
    }
}
