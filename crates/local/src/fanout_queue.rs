//! The fan-out FIFO queue and the workers it feeds, in-process: what the
//! template's `FanoutQueue` and the broadcast function's event source mapping
//! on it do on AWS, for big rooms' fan-out jobs (`roomcast_core::workers`).
//!
//! Kept from AWS: a group's jobs (one room's shard) run one at a time, in the
//! order they were handed over, and groups run in parallel, at most `workers`
//! at once (the mapping's `MaximumConcurrency`); each job runs with the broadcast
//! function's timeout, through the same `workers::run` the function calls.
//! Not kept: a failed job is logged, not redelivered (on AWS it comes back after
//! the visibility timeout and finds its claim), and jobs live in memory only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use roomcast_core::App;
use roomcast_core::broadcast::FUNCTION_TIMEOUT;
use roomcast_core::fanout::stop_at;
use roomcast_core::store::now_millis;
use roomcast_core::workers::{Dispatch, DispatchError, Job};
use tokio::sync::Semaphore;

/// The in-process fan-out queue. Cheap to clone; every clone is the same queue.
#[derive(Clone)]
pub struct FanoutQueue {
    inner: Arc<Inner>,
}

struct Inner {
    /// The app jobs run on, set once the gateway's app exists (it holds this
    /// queue, hence the weak reference).
    app: OnceLock<Weak<App>>,
    /// The jobs waiting in each group that has a runner; a group without a
    /// runner has no entry.
    groups: Mutex<HashMap<String, VecDeque<Job>>>,
    workers: Arc<Semaphore>,
}

impl FanoutQueue {
    /// A queue running at most `workers` jobs at once.
    pub fn new(workers: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                app: OnceLock::new(),
                groups: Mutex::default(),
                workers: Arc::new(Semaphore::new(workers.max(1))),
            }),
        }
    }

    /// Runs jobs on `app` from now on.
    pub fn attach(&self, app: &Arc<App>) {
        let _ = self.inner.app.set(Arc::downgrade(app));
    }
}

#[async_trait]
impl Dispatch for FanoutQueue {
    async fn dispatch(&self, jobs: Vec<Job>) -> Result<(), DispatchError> {
        if self.inner.app.get().and_then(Weak::upgrade).is_none() {
            return Err(DispatchError::Stopped);
        }
        for job in jobs {
            let group = job.group();
            let start = {
                let mut groups = self.inner.lock();
                match groups.get_mut(&group) {
                    Some(waiting) => {
                        waiting.push_back(job);
                        None
                    }
                    None => {
                        groups.insert(group.clone(), VecDeque::new());
                        Some(job)
                    }
                }
            };
            if let Some(job) = start {
                tokio::spawn(Arc::clone(&self.inner).run_group(group, job));
            }
        }
        Ok(())
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Job>>> {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a group's jobs one after another until it has none waiting. Each
    /// runs on a task of its own, as a Lambda invocation is isolated: a job that
    /// panics fails alone, and the group goes on with the next.
    async fn run_group(self: Arc<Self>, group: String, first: Job) {
        let mut job = first;
        loop {
            let inner = Arc::clone(&self);
            let run = tokio::spawn(async move { inner.run_one(&job).await });
            if let Err(e) = run.await {
                tracing::error!(error = %e, "a fan-out job failed");
            }
            let mut groups = self.lock();
            match groups.get_mut(&group).and_then(VecDeque::pop_front) {
                Some(next) => job = next,
                None => {
                    groups.remove(&group);
                    return;
                }
            }
        }
    }

    async fn run_one(&self, job: &Job) {
        let Ok(_slot) = self.workers.acquire().await else {
            return;
        };
        let Some(app) = self.app.get().and_then(Weak::upgrade) else {
            return;
        };
        // The broadcast function's deadline, as `functions/broadcast.rs` gives it.
        let timeout_ms = u64::try_from(FUNCTION_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        let stop_at = stop_at(now_millis().saturating_add(timeout_ms));
        if let Err(e) = roomcast_core::workers::run(&app, job, stop_at).await {
            tracing::warn!(shard = job.shard, error = %roomcast_core::error_chain(&e), "fan-out job failed");
        }
    }
}
