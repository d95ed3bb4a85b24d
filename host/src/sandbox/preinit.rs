//! Pre-initialisation: a component snapshotted right after `configure`.
//!
//! Why: MiniLM's `configure` parses a 700 KB `tokenizer.json` inside the
//! guest, 20–30 ms of every fresh instance and of every cold start, while
//! instantiating the compiled component itself costs microseconds (the
//! pooling allocator maps its memory image copy-on-write). Wizer's answer
//! is to run the initialisation once and write the resulting memory and
//! globals back into the component as its data segments: an instance of
//! the new component *starts* configured. `wasmtime-wizer` does this for
//! components; this module drives it with nboost's own sandbox, so the
//! `configure` that is snapshotted runs under the component's limits, with
//! the same settings, graphs and WASI context as any other.
//!
//! What a snapshot cannot carry is host state: a wasi-nn graph or context
//! handle (or a WASI stream) kept by the guest across `configure` would
//! name nothing in a new instance. So the snapshot is refused when the
//! configured instance still holds any host resource, naming the fix
//! (open handles on first use, as `nboost-nn-common`'s `Model` does).
//! Everything else a guest computes in `configure` is plain memory, and is
//! exactly what a later instance would have computed from the same
//! settings: the snapshot is keyed by the component's digest and its
//! settings, never reused for other ones.
//!
//! Compiling the instrumented component needs Cranelift, so this exists
//! in builds with the `compiler` feature; a runtime-only node runs
//! snapshots made by the operator and shipped in a signed bundle.

use std::panic::AssertUnwindSafe;

use wasmtime::component::{Instance, Lift, WasmList};
use wasmtime::Store;
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use super::exec::block_on;
use super::{HostState, ModelInfo, PluginPre, SandboxEngine};
use crate::RerankError;

/// Snapshot `bytes` (the component called `name`) after `configure`: the
/// pre-initialised component and what its `configure` returned.
/// `prepare` compiles and links the instrumented component it is given
/// under the component's spec (limits, settings, graphs).
pub fn snapshot(
    name: &str,
    bytes: &[u8],
    engine: &SandboxEngine,
    prepare: impl FnOnce(&[u8]) -> Result<PluginPre, RerankError>,
) -> Result<(Vec<u8>, ModelInfo), RerankError> {
    let refuse = |reason: String| RerankError::InvalidComponent {
        name: name.to_string(),
        reason: format!("cannot be pre-initialised: {reason}"),
    };
    let wizer = Wizer::new();
    let (cx, instrumented) = wizer
        .instrument_component(bytes)
        .map_err(|e| refuse(format!("{e:#}")))?;
    let pre = prepare(&instrumented)?;
    let mut plugin = pre.instantiate(engine)?;
    let info = plugin.info().clone();
    let (store, instance) = plugin.snapshot_parts();
    if store.data().holds_resources() {
        return Err(refuse(
            "after `configure` it still holds host resources (a wasi-nn graph or execution \
             context, a tensor or a stream), which a snapshot cannot carry; open them on first \
             `score` instead (as nboost-nn-common's `Model` does), or leave `preinit` off"
                .into(),
        ));
    }
    // Wizer reads the instance's state through exports it added; a trap
    // there is a panic inside wasmtime-wizer, caught here so that a
    // hostile component cannot take the host down with it.
    let taken = std::panic::catch_unwind(AssertUnwindSafe(|| {
        block_on(wizer.snapshot_component(&cx, &mut State { store, instance }))
    }));
    let wasm = match taken {
        Ok(Ok(wasm)) => wasm,
        Ok(Err(e)) => return Err(refuse(format!("{e:#}"))),
        Err(_) => return Err(refuse("its state could not be read back".into())),
    };
    Ok((wasm, info))
}

/// Wizer's view of one configured instance.
struct State<'a> {
    store: &'a mut Store<HostState>,
    instance: Instance,
}

impl State<'_> {
    /// Call the nullary export `func` of the exported instance `instance`.
    async fn call<R: Lift + Send + Sync + 'static, T>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&Store<HostState>, R) -> T,
    ) -> T {
        let (_, parent) = self
            .instance
            .get_export(&mut *self.store, None, instance)
            .unwrap_or_else(|| panic!("the instrumented component exports `{instance}`"));
        let (_, index) = self
            .instance
            .get_export(&mut *self.store, Some(&parent), func)
            .unwrap_or_else(|| panic!("the instrumented component exports `{func}`"));
        let typed = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, index)
            .unwrap_or_else(|e| panic!("`{func}` has the accessor's type: {e:#}"));
        let (value,) = typed
            .call_async(&mut *self.store, ())
            .await
            .unwrap_or_else(|e| panic!("`{func}` trapped: {e:#}"));
        read(self.store, value)
    }
}

impl ComponentInstanceState for State<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        self.call(instance, func, |store, list: WasmList<u8>| {
            contents(list.as_le_slice(store))
        })
        .await
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, v| v).await
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, v| v).await
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, v: f32| v.to_bits()).await
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, v: f64| v.to_bits()).await
    }
}
