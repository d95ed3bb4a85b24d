//! Per-instance host state: what a plugin can reach, and nothing more.
//!
//! [`HostState`] is the `T` of every `Store<T>`. Its defaults are the
//! sandbox's promise, spelled out:
//!
//! * no command-line arguments, no environment variables;
//! * no preopened directories: `wasi:filesystem` is linked (Rust's std
//!   imports it even when unused) but resolves no path;
//! * stdin is closed; stdout and stderr go to [`GuestLog`], capped, and from
//!   there to `tracing` with the component's name;
//! * no network: TCP, UDP and name lookup are all denied (and the validator
//!   refuses components that import `wasi:sockets` in the first place);
//! * clocks and random numbers are the host's (harmless, and Rust's std
//!   needs them);
//! * wasi-nn sees only the named graphs this component is allowed
//!   ([`crate::nn::adapter`]);
//! * linear memory and tables are capped by [`Limiter`], whose
//!   [`MemoryBudget`] also pays for the host objects (wasi-nn tensors,
//!   contexts, outputs) the guest keeps alive.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::meter::MemoryBudget;
use crate::nn::{NnState, NnView};

/// The data a store holds for one plugin instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The instance's wasi-nn state (allowed graphs, deadline, log share).
    pub nn: NnState,
    /// Memory and table caps, and whether a grow was refused.
    pub limiter: Limiter,
    /// Captured guest stdout + stderr.
    pub log: GuestLog,
}

impl HostState {
    /// A state with no ambient capabilities (see the module docs).
    pub fn new(nn: NnState, max_memory_bytes: u64, max_log_bytes: usize) -> Self {
        let log = GuestLog::new(max_log_bytes);
        let wasi = WasiCtxBuilder::new()
            .stdout(log.clone())
            .stderr(log.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut limiter = Limiter::new(max_memory_bytes);
        // The guest log buffer is host memory the guest fills: paid for
        // up front, from the same budget (it is capped, so never more).
        let _ = limiter
            .budget
            .charge(max_log_bytes as u64, "the guest log buffer");
        Self {
            wasi,
            table: ResourceTable::new(),
            nn,
            limiter,
            log,
        }
    }

    /// Whether the guest holds a host resource (a wasi-nn graph, context or
    /// tensor, a WASI stream...): an instance that does cannot be
    /// snapshotted, since its handles would name nothing in a new one.
    pub fn holds_resources(&self) -> bool {
        !self.table.is_empty()
    }

    /// The wasi-nn view handed to the wasi-nn host functions.
    pub fn nn_view(&mut self) -> NnView<'_> {
        NnView::new(&mut self.table, &mut self.nn, &mut self.limiter.budget)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and table growth of one instance, remembering whether
/// it ever refused a grow so that the resulting trap can be reported as
/// "out of memory" rather than a generic fault.
pub struct Limiter {
    /// Linear memory plus host objects, against one cap.
    pub budget: MemoryBudget,
    /// Set when a table grow was refused.
    pub denied: bool,
}

/// Most table elements one table may hold. Generous for real programs (a
/// large Rust component has a few thousand function-pointer slots).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl Limiter {
    fn new(max_memory_bytes: u64) -> Self {
        Self {
            budget: MemoryBudget::new(max_memory_bytes),
            denied: false,
        }
    }

    /// The memory cap in bytes.
    pub fn max_memory_bytes(&self) -> u64 {
        self.budget.cap()
    }

    /// Whether a memory, table or host-object request was refused.
    pub fn refused(&self) -> bool {
        self.denied || self.budget.denied()
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.budget.grow_linear(desired as u64))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= MAX_TABLE_ELEMENTS;
        self.denied |= !ok;
        Ok(ok)
    }

    fn instances(&self) -> usize {
        // Core instances per store: a Rust plugin needs a handful, a Python
        // one (componentize-py links CPython, libc and the app as separate
        // modules) about 35.
        64
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        8
    }
}

/// A capped in-memory sink for guest stdout/stderr. Writes past the cap are
/// accepted and dropped (a chatty guest must not fail, nor fill the host's
/// memory or log).
#[derive(Clone)]
pub struct GuestLog {
    inner: Arc<Mutex<LogBuf>>,
}

struct LogBuf {
    cap: usize,
    buf: Vec<u8>,
    dropped: usize,
}

impl GuestLog {
    fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LogBuf {
                cap,
                buf: Vec::new(),
                dropped: 0,
            })),
        }
    }

    /// Take what the guest wrote since the last call, and how many bytes
    /// were dropped over the cap.
    pub fn take(&self) -> (String, usize) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&b.buf).into_owned();
        b.buf.clear();
        let dropped = std::mem::take(&mut b.dropped);
        (text, dropped)
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = b.cap.saturating_sub(b.buf.len());
        let n = room.min(data.len());
        b.buf.extend_from_slice(&data[..n]);
        b.dropped += data.len() - n;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
