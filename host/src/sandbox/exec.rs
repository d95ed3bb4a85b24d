//! Running guest calls under a wall-clock bound that does not depend on the
//! guest running wasm.
//!
//! Epoch interruption stops a guest that *computes* past its deadline, but
//! it only fires while wasm code runs. A guest blocked in a host call
//! (`std::thread::sleep`, `subscribe-duration` + `block`, `poll`) never
//! reaches an epoch check, so it used to hold its worker thread for as long
//! as it liked. Every guest call therefore runs as an *async* wasmtime call
//! (`call_async`, on a fiber) whose WASI host functions are async too
//! (`add_to_linker_async`): a waiting guest suspends its fiber, and the
//! future that drives it is raced against the deadline and against the
//! caller's [`CancellationToken`] (a client that disconnected). When either
//! wins, the future — and with it the fiber and the guest's wait — is
//! dropped, the worker is free again, and the instance is discarded.
//!
//! What is left outside this bound are host calls that compute
//! synchronously: wasi-nn `compute`, which [`crate::nn`] bounds by
//! construction (an element cap, a cost estimate against the remaining
//! deadline, and deadline checks between batch chunks).
//!
//! Front ends call the synchronous wrappers ([`block_on`]) from blocking
//! threads; they reuse the caller's Tokio runtime when there is one, or a
//! small process-wide runtime (the CLI), which drives the timers.

use std::future::Future;
use std::sync::OnceLock;
use std::task::Poll;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// Why a bounded call did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// The deadline passed.
    Deadline,
    /// The caller cancelled (went away).
    Cancelled,
}

/// Run `fut` until it finishes, `deadline` passes or `cancel` fires,
/// whichever comes first. Dropping the future is what frees a guest that
/// waits in a host call.
///
/// Most calls never wait (a guest that computes finishes in one poll), so
/// the timer and the cancellation waiter are only set up once the call has
/// returned `Pending`: a per-call timer would wake the runtime's timer
/// driver on every call, a context switch per request.
pub async fn bounded<F: Future>(
    deadline: Duration,
    cancel: &CancellationToken,
    fut: F,
) -> Result<F::Output, Interrupted> {
    if cancel.is_cancelled() {
        return Err(Interrupted::Cancelled);
    }
    let started = tokio::time::Instant::now();
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if let Poll::Ready(out) = first {
        return Ok(out);
    }
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Interrupted::Cancelled),
        r = tokio::time::timeout_at(started + deadline, fut.as_mut()) => {
            r.map_err(|_| Interrupted::Deadline)
        }
    }
}

/// Drive `fut` to completion from synchronous code: on the current Tokio
/// runtime when called from one of its blocking threads (`spawn_blocking`),
/// else on a process-wide runtime. Must not be called from an async task.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(fut),
        Err(_) => runtime().block_on(fut),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nboost-timers")
            .enable_all()
            .build()
            .expect("building the guest-call runtime")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_future_is_cut_at_the_deadline_and_on_cancel() {
        let never = std::future::pending::<()>();
        let cancel = CancellationToken::new();
        let r = block_on(bounded(Duration::from_millis(20), &cancel, never));
        assert_eq!(r, Err(Interrupted::Deadline));

        let cancel = CancellationToken::new();
        cancel.cancel();
        let r = block_on(bounded(
            Duration::from_secs(60),
            &cancel,
            std::future::pending::<()>(),
        ));
        assert_eq!(r, Err(Interrupted::Cancelled));

        let r = block_on(bounded(
            Duration::from_secs(60),
            &CancellationToken::new(),
            async { 7 },
        ));
        assert_eq!(r, Ok(7));
    }
}
