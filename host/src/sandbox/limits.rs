//! Per-call resource limits for plugins.
//!
//! Every limit guards against a specific way an untrusted component could hurt
//! the host or its neighbours; each field says which. Host maxima are set by
//! the operator; a manifest entry may ask for *less* (or, up to the maxima,
//! more) through [`LimitsOverride`].

use serde::{Deserialize, Serialize};

/// The limits applied to one plugin instance and each call into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLimits {
    /// Wall-clock budget of one `configure` or `score` call, in ms. Guards
    /// against infinite loops, pathological slowness and guests that wait
    /// in host calls (sleep, poll): a computing guest is interrupted by
    /// epoch interruption, a waiting one by dropping its async call
    /// (`sandbox::exec`), a wasi-nn compute by the adapter's chunked
    /// deadline checks; all fail with `timeout`. Default
    /// 10 s: a 1000-passage neural rerank on 2 CPU cores fits; a spinning
    /// guest is cut off before clients give up.
    pub deadline_ms: u64,
    /// Cap on one instance's linear memory, in bytes. Guards against memory
    /// bombs; a denied `memory.grow` ends the call with `out of memory`.
    /// Default 512 MiB: MiniLM's tokenizer plus a 64x256 batch of hidden
    /// states needs under 100 MiB.
    pub max_memory_bytes: u64,
    /// Cap on wasm stack use, in bytes. Guards against unbounded recursion
    /// (trap `stack overflow` instead of a host crash). Default 1 MiB, the
    /// wasmtime default; plugins recurse little.
    pub max_stack_bytes: usize,
    /// Most passages one `score` call may carry, and so the most scores the
    /// host will read back. Guards against oversized guest-to-host lists: a
    /// result list longer than the request is refused before it is copied.
    /// Default 10 000.
    pub max_passages: usize,
    /// Most bytes of query + passages text in one call. Guards host and guest
    /// memory against giant requests. Default 32 MiB.
    pub max_input_bytes: usize,
    /// Most bytes of tensor data one wasi-nn `compute` may pass in or get
    /// out, and (plus 1 MiB) the most bytes one guest-to-host call may copy
    /// at all (wasmtime's hostcall fuel). Guards the host, which copies
    /// tensors outside the sandbox, against giant tensors and lists: the
    /// copy is refused before the host allocates. Default 128 MiB: a
    /// 64 x 512-token MiniLM batch's hidden states are 48 MiB.
    pub max_tensor_bytes: usize,
    /// Most elements in the largest input of one wasi-nn `compute` (batch x
    /// tokens for a BERT graph). Guards the host against computes that run
    /// for seconds or minutes on the caller's thread, where no deadline can
    /// interrupt them: `too-large` beyond. Default 32 768 (64 x 512).
    pub max_compute_elements: u64,
    /// Batches larger than this many elements are computed in chunks along
    /// the batch axis, with the deadline checked between chunks, so a
    /// compute overruns its deadline by at most one chunk. Default 4 096
    /// (16 x 256, MiniLM's own batch: about 0.3 s on 2 cores).
    pub compute_chunk_elements: u64,
    /// Bytes of guest stdout/stderr kept per instance (and sent to the log);
    /// the rest is dropped. Guards the log against a chatty guest. 64 KiB.
    pub max_log_bytes: usize,
    /// Optional instruction budget per call (wasmtime fuel). A deterministic
    /// CPU cap, independent of machine load, at a few percent of guest speed;
    /// off by default (the deadline already bounds CPU). Turning it on
    /// changes the compiled code, so the engine (and its artifact cache key)
    /// differs.
    pub fuel_per_call: Option<u64>,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            deadline_ms: 10_000,
            max_memory_bytes: 512 << 20,
            max_stack_bytes: 1 << 20,
            max_passages: 10_000,
            max_input_bytes: 32 << 20,
            max_tensor_bytes: 128 << 20,
            max_compute_elements: 32 << 10,
            compute_chunk_elements: 4 << 10,
            max_log_bytes: 64 << 10,
            fuel_per_call: None,
        }
    }
}

/// What a manifest entry may ask for; unset fields keep the host default.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsOverride {
    /// `deadline-ms = 2000`
    pub deadline_ms: Option<u64>,
    /// `memory-mib = 256`
    pub memory_mib: Option<u64>,
    /// `max-passages = 1000`
    pub max_passages: Option<usize>,
}

impl SandboxLimits {
    /// The wasi-nn part of these limits.
    pub fn nn(&self) -> crate::nn::NnLimits {
        crate::nn::NnLimits {
            max_tensor_bytes: self.max_tensor_bytes,
            max_compute_elements: self.max_compute_elements,
            chunk_elements: self.compute_chunk_elements,
        }
    }

    /// Apply a manifest entry's override, clamped to `self` (the host
    /// maxima): a component can always ask for less, never for more.
    pub fn narrowed(&self, o: &LimitsOverride) -> SandboxLimits {
        let mut l = *self;
        if let Some(ms) = o.deadline_ms {
            l.deadline_ms = ms.clamp(1, self.deadline_ms);
        }
        if let Some(mib) = o.memory_mib {
            l.max_memory_bytes = (mib << 20).clamp(1 << 20, self.max_memory_bytes);
        }
        if let Some(n) = o.max_passages {
            l.max_passages = n.clamp(1, self.max_passages);
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_clamped_to_host_maxima() {
        let host = SandboxLimits::default();
        let o = LimitsOverride {
            deadline_ms: Some(u64::MAX),
            memory_mib: Some(64),
            max_passages: Some(0),
        };
        let l = host.narrowed(&o);
        assert_eq!(l.deadline_ms, host.deadline_ms);
        assert_eq!(l.max_memory_bytes, 64 << 20);
        assert_eq!(l.max_passages, 1);
    }
}
