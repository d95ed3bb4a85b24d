//! The rerank path: one blocking job per request — authentication, the
//! request's checks, the name resolved once, the tenant's concurrency
//! permit, a worker in the tenant's share (cancellable while waiting), the
//! warm instance, the bounded guest call, the ranking.

#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;

impl Service {
    /// Rerank `job.documents` for `caller`: admission (429 when full), then
    /// one blocking job that authenticates (a key) and resolves the name
    /// (404 before a queue place), takes the tenant's concurrency permit
    /// (429), waits for a worker in the tenant's share, and runs the guest.
    /// One thread hand-off per request; SQLite only on the blocking thread.
    /// A client that goes away drops this future: its call is cancelled
    /// whether queued or running, and its permits go back.
    pub async fn rerank(
        self: &Arc<Self>,
        caller: Caller,
        job: RerankJob,
    ) -> Result<RerankOutcome, ServiceError> {
        self.rerank_with(caller, move || Ok::<_, ServiceError>((job, ())))
            .await
            .map(|(out, ())| out)
    }

    /// [`Service::rerank`] with the job built by `build` on the blocking
    /// thread, after authentication: a front end parses its request there,
    /// so a caller with a bad key learns that first, and hands back `X`
    /// (what it needs to render the answer) with the outcome.
    pub async fn rerank_with<X, E>(
        self: &Arc<Self>,
        caller: Caller,
        build: impl FnOnce() -> Result<(RerankJob, X), E> + Send + 'static,
    ) -> Result<(RerankOutcome, X), E>
    where
        X: Send + 'static,
        E: From<ServiceError> + Send + 'static,
    {
        let admission = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| E::from(ServiceError::Overloaded))?;
        let cancel = CancellationToken::new();
        let _stop_on_drop = cancel.clone().drop_guard();
        let this = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _admission = admission;
            span.in_scope(|| {
                // One database stamp for the whole request: a warm call
                // reads it once and touches no table.
                let snapshot = match &this.store {
                    Some(store) => Some(store.snapshot().map_err(|e| E::from(e.into()))?),
                    None => None,
                };
                let tenant = match caller {
                    Caller::Key(key) => tracing::debug_span!("auth")
                        .in_scope(|| this.authenticate_at(&key, snapshot))
                        .map_err(E::from)?,
                    Caller::Tenant(t) => t,
                };
                let (job, extra) = build()?;
                check_request(&job, this.options.max_documents).map_err(E::from)?;
                this.admitted(&tenant, job, &cancel, snapshot)
                    .map(|out| (out, extra))
                    .map_err(E::from)
            })
        })
        .await
        .map_err(|e| {
            E::from(ServiceError::Internal(format!(
                "the rerank task failed: {e}"
            )))
        })?
    }

    /// The rest of [`Service::rerank`], on its blocking thread.
    fn admitted(
        &self,
        tenant: &Tenant,
        job: RerankJob,
        cancel: &CancellationToken,
        snapshot: Option<crate::store::Snapshot>,
    ) -> Result<RerankOutcome, ServiceError> {
        // Unknown names fail before they take a queue place.
        let resolved = self.resolve_at(tenant, &job.model, snapshot)?;
        let own = self
            .tenant_semaphore(tenant)
            .try_acquire_owned()
            .map_err(|_| {
                ServiceError::QuotaExceeded(format!(
                    "the tenant's {} concurrent calls are all in use",
                    tenant.quotas.max_concurrent
                ))
            })?;
        let queued = Instant::now();
        let waiting = Waiting::new(&self.counters.queued);
        let queue_span = tracing::debug_span!("queue", tenant = %tenant.name.as_str());
        let share_sem = self.tenant_workers(tenant);
        // Fast path: free permits, no waiting (and no waiter to register).
        let free = share_sem
            .clone()
            .try_acquire_owned()
            .ok()
            .and_then(|share| {
                let worker = self.workers.clone().try_acquire_owned().ok()?;
                Some((share, worker))
            });
        let permits = match free {
            Some(p) => p,
            None => block_on(
                async {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => Err(ServiceError::Rerank(RerankError::Cancelled)),
                        permits = async {
                            let share = share_sem.acquire_owned().await;
                            let worker = self.workers.clone().acquire_owned().await;
                            share.and_then(|s| worker.map(|w| (s, w)))
                        } => permits.map_err(|_| {
                            ServiceError::Internal("the worker pool is closed".into())
                        }),
                    }
                }
                .instrument(queue_span),
            )?,
        };
        drop(waiting);
        let queue = queued.elapsed();
        let _permits = (own, permits);
        self.rerank_blocking(tenant, job, queue, cancel, Some(resolved))
    }

    fn rerank_blocking(
        &self,
        tenant: &Tenant,
        job: RerankJob,
        queue: Duration,
        cancel: &CancellationToken,
        resolved: Option<Resolved>,
    ) -> Result<RerankOutcome, ServiceError> {
        let t0 = Instant::now();
        let live = self.live_from(tenant, &job.model, resolved)?;
        check_limits(live.pre.limits(), &job.query, &job.documents)?;
        let mut instance = tracing::debug_span!("instantiate", component = %job.model)
            .in_scope(|| live.checkout(self, cancel))?;
        let instantiate = t0.elapsed();
        let max_tokens = instance.get().info().max_tokens;
        if job.shaping.refuse_longer && max_tokens > 0 {
            if let Some((i, n)) = passages::first_longer(&job.documents, max_tokens as usize) {
                return Err(RerankError::InvalidInput(format!(
                    "documents[{i}] has at least {n} tokens, over the {max_tokens} `{}` reads \
                     (allow truncation to rank it)",
                    job.model
                ))
                .into());
            }
        }
        let shaped = passages::shape(
            &job.documents,
            &job.shaping,
            passages::chunk_tokens(max_tokens),
        );
        let texts = match &shaped {
            Some((texts, _)) => {
                check_limits(live.pre.limits(), &job.query, texts)?;
                texts
            }
            None => &job.documents,
        };
        let t1 = Instant::now();
        let result = tracing::debug_span!("guest", component = %job.model, passages = texts.len())
            .in_scope(|| block_on(instance.get().score_async(&job.query, texts, cancel)));
        let guest = t1.elapsed();
        drop(instance);
        let (scores, chunks) = match &shaped {
            Some((_, owners)) => passages::best_per_document(&result?, owners, job.documents.len()),
            None => (result?, vec![1; job.documents.len()]),
        };
        let (scores, fused) = match &job.first_stage {
            Some(first) => {
                let fusion = job.fusion.or(live.fusion).unwrap_or(Fusion::DEFAULT);
                (fusion.fuse(&scores, first), Some((fusion, scores)))
            }
            None => (scores, None),
        };
        let ranking = crate::service::rank(scores, job.top_n);
        Ok(RerankOutcome {
            ranking,
            documents: job.documents,
            chunks,
            fused,
            timing: Timing {
                queue,
                instantiate,
                guest,
            },
        })
    }
}
