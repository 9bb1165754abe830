//! The one way an invocation runs: on a task of its own, as each Lambda invocation
//! is isolated from its caller (a slow function blocks nobody else, a panic fails
//! only its invocation, and a caller that goes away does not cut it short), for at
//! most its timeout, after which it is stopped, as Lambda stops a timed-out
//! invocation.

use std::time::Duration;

/// Runs `work` on its own task for at most `timeout`; `None` when it timed out, in
/// which case the work is dropped (cancelled) on its task, whether or not anyone
/// still waits for it. `Some(Err(_))`: the task panicked.
pub async fn run_with_timeout<T: Send + 'static>(
    timeout: Duration,
    work: impl Future<Output = T> + Send + 'static,
) -> Option<Result<T, tokio::task::JoinError>> {
    match tokio::spawn(tokio::time::timeout(timeout, work)).await {
        Ok(Ok(result)) => Some(Ok(result)),
        Ok(Err(_elapsed)) => None,
        Err(join) => Some(Err(join)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_timed_out_invocation_is_aborted() {
        struct Dropped(Arc<AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let guard = Dropped(dropped.clone());
        let done = finished.clone();
        let result = run_with_timeout(Duration::from_millis(50), async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_millis(300)).await;
            done.store(true, Ordering::SeqCst);
        })
        .await;
        assert!(result.is_none());
        // Abort takes effect at the task's next poll.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(dropped.load(Ordering::SeqCst), "the task was not stopped");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!finished.load(Ordering::SeqCst));
        assert_eq!(
            run_with_timeout(Duration::from_secs(1), async { 7 })
                .await
                .unwrap()
                .unwrap(),
            7
        );
    }
}
