//! The warm pool: configured instances per caller and component version,
//! bounded per component and in total, never shared across tenants.

#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;

/// Live instance counts, for metrics.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) in_use: AtomicUsize,
    pub(super) idle: AtomicUsize,
    pub(super) queued: AtomicUsize,
}

/// A snapshot of the instance counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Gauges {
    /// Instances running a call now.
    pub in_use: usize,
    /// Warm instances waiting in pools.
    pub idle: usize,
    /// Admitted calls waiting for a worker.
    pub queued: usize,
    /// Back-end calls that ran several callers' computes (`nn::merge`).
    pub merged_calls: u64,
    /// Callers' computes answered by those calls.
    pub merged_computes: u64,
}

/// One component version as one tenant runs it: its compiled form (under
/// the tenant's limits) and that tenant's warm instances of it.
pub(super) struct Live {
    pub(super) pre: PluginPre,
    /// The component's default fusion (manifest or upload config).
    pub(super) fusion: Option<Fusion>,
    pub(super) idle: Mutex<Vec<Plugin>>,
    pub(super) counters: Arc<Counters>,
    pub(super) max_idle: usize,
    pub(super) max_idle_total: usize,
}

impl Live {
    pub(super) fn new(pre: PluginPre, fusion: Option<Fusion>, service: &Service) -> Self {
        Self {
            pre,
            fusion,
            idle: Mutex::new(Vec::new()),
            counters: service.counters.clone(),
            max_idle: service.options.max_idle_per_component.max(1),
            max_idle_total: service.options.max_idle_total,
        }
    }

    pub(super) fn checkout(
        &self,
        service: &Service,
        cancel: &CancellationToken,
    ) -> Result<InUse<'_>, RerankError> {
        let warm = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let plugin = match warm {
            Some(p) => {
                self.counters.idle.fetch_sub(1, Ordering::Relaxed);
                p
            }
            None => block_on(
                self.pre
                    .instantiate_async(service.registry.engine(), cancel),
            )?,
        };
        self.counters.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(InUse {
            live: self,
            plugin: Some(plugin),
        })
    }

    pub(super) fn checkin(&self, plugin: Plugin) {
        if !plugin.is_alive() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.max_idle {
            return;
        }
        // Reserve a place in the server-wide total, or drop the instance.
        if self.counters.idle.fetch_add(1, Ordering::Relaxed) >= self.max_idle_total {
            self.counters.idle.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        idle.push(plugin);
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let n = self.idle.get_mut().map_or(0, |v| v.len());
        self.counters.idle.fetch_sub(n, Ordering::Relaxed);
    }
}

/// One call counted in the `queued` gauge while it lives.
pub(super) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(super) fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An instance out of its pool; goes back (or is dropped) on drop.
pub(super) struct InUse<'a> {
    pub(super) live: &'a Live,
    pub(super) plugin: Option<Plugin>,
}

impl InUse<'_> {
    pub(super) fn get(&mut self) -> &mut Plugin {
        self.plugin.as_mut().expect("present until drop")
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.live.counters.in_use.fetch_sub(1, Ordering::Relaxed);
        if let Some(p) = self.plugin.take() {
            self.live.checkin(p);
        }
    }
}
