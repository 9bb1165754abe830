//! The fan-out engine: one payload to a set of connections: a room's live members,
//! a user's connections, a list of connection ids, or every connection.
//!
//! Audience are read page by page as a stream and posted with bounded concurrency,
//! so posting starts with the first page and the next page is fetched while posts
//! are in flight. A room whose memberships are spread over several shards is read
//! one page of every shard at a time, the shards' reads in parallel and their ids
//! interleaved, so reading K shards takes about as long as reading one. Each post
//! is retried on 429 and 5xx with full-jitter exponential backoff within a
//! deadline; a 410 removes the connection and its memberships.
//!
//! Recipients whose token has expired are not skipped: their connection and
//! memberships end with the token, so every page (a room's members, a user's
//! connections, all connections) is read looking back [`EXPIRED_LOOKBACK`] and
//! split on the client by expiry: the same Query or Scan as before (it always read
//! the ended items TTL had not deleted yet, and dropped them on the client), so no
//! extra read capacity. A recipient found ended
//! has its connection record read (one GetItem); if its token expired it is told
//! (`token_expired`) and closed through `@connections` ([`Fanout::close`], the same
//! code a frame from an expired connection runs), not counted as a recipient. Its
//! `$disconnect` then removes it, so each expired connection costs one read, one
//! extra post and one delete, once. Items that ended by TTL are left alone.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde::Serialize;

use crate::limits::CONNECTION_CAP;
use crate::management::{Management, PostError};
use crate::pace::Pacer;
use crate::policy::Policies;
use crate::protocol::{ErrorCode, ProtocolError, ServerFrame};
use crate::store::{ConnectionPage, Removed, Store, StoreError};

/// How far back recipient pages (a room's, a user's, all) look for memberships
/// and connections that ended with their token: API Gateway's connection cap,
/// as no connection lives longer.
pub const EXPIRED_LOOKBACK: Duration = CONNECTION_CAP;

/// What a connection whose token has expired is told before it is closed.
pub fn token_expired() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::TokenExpired,
        "your token has expired; reconnect with a fresh one",
    )
}

/// A fan-out starts no post or retry later than this before the invocation's
/// deadline: a post in flight may take its 5 s attempt timeout, and the function
/// must still answer, or Lambda counts a timeout and SQS redelivers the batch.
pub const FANOUT_STOP_MARGIN: Duration = Duration::from_secs(7);

/// When a fan-out of an invocation ending at `deadline_ms` (epoch
/// milliseconds) must stop: [`FANOUT_STOP_MARGIN`] before it.
pub fn stop_at(deadline_ms: u64) -> Option<Instant> {
    let margin = u64::try_from(FANOUT_STOP_MARGIN.as_millis()).unwrap_or(u64::MAX);
    let left = deadline_ms
        .saturating_sub(crate::store::now_millis())
        .saturating_sub(margin);
    Instant::now().checked_add(Duration::from_millis(left))
}

/// Audience read per Query (or Scan) page.
pub const PAGE_SIZE: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per post, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts after this much time since the fan-out began.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a random delay up to the capped exponential step.
    fn delay(&self, retry: u32) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay);
        let millis = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }
}

/// What a fan-out did, as reported to the sender and by the broadcast function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FanoutStats {
    /// Live members posted to.
    pub recipients: usize,
    /// Posts API Gateway accepted.
    pub delivered: usize,
    /// Connections found gone (410) and removed.
    pub gone: usize,
    /// Posts that failed for good (413, 403, retries exhausted).
    pub failed: usize,
    /// Retries after a 429.
    pub throttled_retries: usize,
    /// Milliseconds from the start of the fan-out to its last post's outcome.
    pub ms: u64,
    /// Stopped at its deadline ([`Fanout::stop_at`]): the recipients read but not
    /// posted to count as failed; those not read yet are not counted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut_short: bool,
    /// Not sent: a repeat of a broadcast already sent (same idempotency key).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
    /// Handed to this many workers (one per shard of a big room) instead of
    /// sent here: the other figures are then the workers' to report.
    #[serde(skip_serializing_if = "is_zero")]
    pub workers: u16,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// A fan-out cut short by a failed recipient read. The recipients already read
/// were still posted to: `stats` says what went out before and after the failure.
#[derive(Debug)]
pub struct Incomplete {
    pub stats: FanoutStats,
    pub error: StoreError,
}

/// Who a fan-out posts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    /// The room's live members in all of its `shards` (its namespace's
    /// [`Policies::shards`]): a Query per shard partition, the shards in parallel.
    Room { room: &'a str, shards: u16 },
    /// The live members of one shard of a room: what one of several workers
    /// sharing a big room's fan-out posts to.
    Shard { room: &'a str, shard: u16 },
    /// The user's live connections (Query on the `byUser` index).
    User(&'a str),
    /// These connection ids, duplicates posted once. Not looked up: an id that is
    /// not connected answers 410 and is cleaned up like any gone connection.
    Connections(&'a [String]),
    /// Every live connection (a paginated Scan: see docs/data-model.md).
    All,
}

/// The paged source of [`Audience`], owned so each page read can be boxed.
#[derive(Clone)]
enum Source {
    /// A room's members in these shards.
    Room {
        room: String,
        shards: Vec<u16>,
    },
    User(String),
    All,
}

/// Where the next page of a [`Source`] starts.
#[derive(Clone)]
enum Cursor {
    /// A user's or every connection's listing: the store's cursor.
    One(String),
    /// A room: the shards not read to the end, each with its store cursor
    /// (`None`: from its first member).
    Shards(Vec<(u16, Option<String>)>),
}

/// The recipients read and not yet posted to, and who is left out.
struct Pending<'e> {
    queued: VecDeque<String>,
    /// Recipients found with an ended membership or connection, to be checked
    /// and closed.
    expired: Vec<String>,
    except: HashSet<&'e str>,
    seen: Option<HashSet<String>>,
}

impl Pending<'_> {
    /// Gives up on the recipients not posted to yet: the fan-out's time is up.
    /// They count as failed; recipients not read yet are not counted.
    fn stop(&mut self, stats: &mut FanoutStats) {
        let unsent = self.queued.len();
        stats.recipients += unsent;
        stats.failed += unsent;
        stats.cut_short = true;
        tracing::warn!(unsent, "fan-out stopped: its time ran out");
        self.queued.clear();
    }

    /// The next recipient to post to, past those left out and those already posted to.
    fn next(&mut self) -> Option<String> {
        while let Some(connection_id) = self.queued.pop_front() {
            if self.except.contains(connection_id.as_str()) {
                continue;
            }
            if let Some(seen) = &mut self.seen
                && !seen.insert(connection_id.clone())
            {
                continue;
            }
            return Some(connection_id);
        }
        None
    }
}

impl Source {
    /// The paged source of `recipients`, or the list of ids they are.
    fn of<'r>(recipients: Audience<'r>) -> Result<Self, &'r [String]> {
        match recipients {
            Audience::Room { room, shards } => Ok(Self::Room {
                room: room.to_owned(),
                shards: (0..shards.max(1)).collect(),
            }),
            Audience::Shard { room, shard } => Ok(Self::Room {
                room: room.to_owned(),
                shards: vec![shard],
            }),
            Audience::User(user) => Ok(Self::User(user.to_owned())),
            Audience::All => Ok(Self::All),
            Audience::Connections(ids) => Err(ids),
        }
    }
}

/// One room fan-out's parameters.
#[derive(Clone, Copy)]
pub struct Fanout<'a> {
    pub store: &'a dyn Store,
    pub management: &'a dyn Management,
    /// The `@connections` endpoint.
    pub endpoint: &'a str,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// The policies, when connections found gone should be announced as leaving
    /// rooms with presence events (`None`: removed silently).
    pub presence: Option<&'a Policies>,
    /// No post or retry starts after this (the invocation's time running out).
    pub stop_at: Option<Instant>,
    /// Spaces the posts to a share of the account's `@connections` quota
    /// (`None`: as fast as `concurrency` allows). A paced fan-out retries a 429
    /// until `stop_at`, slowing down, instead of giving up after `retry`'s attempts.
    pub pacer: Option<&'a Pacer>,
}

impl FanoutStats {
    fn count(&mut self, outcome: Outcome) {
        self.recipients += 1;
        let throttled = match outcome {
            Outcome::Delivered { throttled } => {
                self.delivered += 1;
                throttled
            }
            Outcome::Gone { throttled } => {
                self.gone += 1;
                throttled
            }
            Outcome::Failed { throttled } => {
                self.failed += 1;
                throttled
            }
        };
        self.throttled_retries += throttled;
    }
}

enum Outcome {
    Delivered { throttled: usize },
    Gone { throttled: usize },
    Failed { throttled: usize },
}

impl<'a> Fanout<'a> {
    /// A fan-out over `app`'s store and management client, with its configured
    /// concurrency and the default retry policy.
    pub fn for_app(app: &'a crate::App, endpoint: &'a str) -> Self {
        Self {
            store: app.store.as_ref(),
            management: app.management.as_ref(),
            endpoint,
            concurrency: app.config.fanout_concurrency,
            retry: RetryPolicy::default(),
            presence: Some(&app.config.policies),
            stop_at: None,
            pacer: None,
        }
    }

    /// The same fan-out, its posts spaced by `pacer`.
    pub fn paced(self, pacer: &'a Pacer) -> Self {
        Self {
            pacer: Some(pacer),
            ..self
        }
    }

    /// The same fan-out, stopping at `stop_at`.
    pub fn until(self, stop_at: Option<Instant>) -> Self {
        Self { stop_at, ..self }
    }

    fn stopped(&self, after: Duration) -> bool {
        self.stop_at
            .is_some_and(|stop| Instant::now() + after >= stop)
    }
}

impl Fanout<'_> {
    /// Posts `payload` to every live member of `room`, in its `shards`, but `except`.
    pub async fn to_room(
        &self,
        room: &str,
        shards: u16,
        except: Option<&str>,
        payload: Bytes,
        now: u64,
    ) -> Result<FanoutStats, StoreError> {
        let except: Vec<&str> = except.into_iter().collect();
        self.to(Audience::Room { room, shards }, &except, payload, now)
            .await
    }

    /// Posts `payload` to every one of `recipients` but those in `except`. A failed
    /// recipient read is an error even if some posts went out; see [`Self::send`]
    /// to keep what was done.
    pub async fn to(
        &self,
        recipients: Audience<'_>,
        except: &[&str],
        payload: Bytes,
        now: u64,
    ) -> Result<FanoutStats, StoreError> {
        self.send(recipients, except, payload, now)
            .await
            .map_err(|incomplete| incomplete.error)
    }

    /// Posts `payload` to every one of `recipients` but those in `except`. When a
    /// recipient page cannot be read, no further page is read, the recipients
    /// already read are still posted to, and the stats come back in [`Incomplete`].
    ///
    /// A written-out loop rather than stream combinators: its future stays `Send`
    /// (closures borrowing `self` inside `try_unfold` hit rust-lang/rust#100013), so
    /// callers can `tokio::spawn` a handler.
    pub async fn send(
        &self,
        recipients: Audience<'_>,
        except: &[&str],
        payload: Bytes,
        now: u64,
    ) -> Result<FanoutStats, Incomplete> {
        let started = Instant::now();
        let concurrency = self.concurrency.max(1);
        let mut pending = Pending {
            queued: VecDeque::new(),
            expired: Vec::new(),
            except: except.iter().copied().collect(),
            // Ids already posted to, for explicit lists only: a list may repeat an
            // id (and is bounded by `MAX_IDS`), while paginated Query and Scan pages
            // return each key once, so paged recipients keep no per-recipient state.
            seen: matches!(recipients, Audience::Connections(_)).then(HashSet::new),
        };
        let source = match Source::of(recipients) {
            Ok(source) => Some(source),
            Err(ids) => {
                pending.queued.extend(ids.iter().cloned());
                None
            }
        };
        let mut next_page = source
            .clone()
            .map(|source| read_page(self.store, source, None, now));
        let mut in_flight = FuturesUnordered::new();
        let mut stats = FanoutStats::default();
        let mut failure: Option<StoreError> = None;
        loop {
            if (!pending.queued.is_empty() || next_page.is_some()) && self.stopped(Duration::ZERO) {
                pending.stop(&mut stats);
                next_page = None;
            }
            self.start(
                &mut in_flight,
                &mut pending,
                &mut stats,
                &payload,
                started,
                now,
            );
            // The next page is read while this one's posts are in flight, and only
            // once the queue runs low, so memory stays at about two pages for paged
            // recipients (a `Connections` list is held whole, with its `seen` set).
            let want_page = next_page.is_some() && pending.queued.len() < concurrency;
            if in_flight.is_empty() && !want_page {
                if next_page.is_none() && pending.queued.is_empty() && pending.expired.is_empty() {
                    stats.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    return match failure {
                        None => Ok(stats),
                        Some(error) => Err(Incomplete { stats, error }),
                    };
                }
                continue;
            }
            tokio::select! {
                Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some(outcome) = outcome {
                        stats.count(outcome);
                    }
                }
                page = async {
                    match next_page.as_mut() {
                        Some(page) => page.await,
                        None => std::future::pending().await,
                    }
                }, if want_page => {
                    next_page = self.took_page(page, source.as_ref(), &mut pending, &mut failure, now);
                }
            }
        }
    }

    /// Starts posts (and checks of expired members) until `concurrency` are in
    /// flight or nothing is queued. Posts that complete at once (in-process) skip
    /// the future and its slot, and are counted here.
    fn start<'s>(
        &'s self,
        in_flight: &mut FuturesUnordered<BoxFuture<'s, Option<Outcome>>>,
        pending: &mut Pending<'_>,
        stats: &mut FanoutStats,
        payload: &Bytes,
        started: Instant,
        now: u64,
    ) {
        while in_flight.len() < self.concurrency.max(1) {
            if let Some(connection_id) = pending.expired.pop() {
                in_flight.push(Box::pin(async move {
                    self.close_if_expired(&connection_id, now).await
                }));
                continue;
            }
            let Some(connection_id) = pending.next() else {
                break;
            };
            // A paced post waits its turn first, so it cannot be made at once.
            let first = match self.pacer {
                Some(_) => None,
                None => self
                    .management
                    .post_now(self.endpoint, &connection_id, payload),
            };
            if let Some(Ok(())) = first {
                stats.count(Outcome::Delivered { throttled: 0 });
                continue;
            }
            let payload = payload.clone();
            in_flight.push(Box::pin(async move {
                Some(self.deliver(&connection_id, payload, started, first).await)
            }));
        }
    }

    /// Takes a recipient page: its ids join the queue, and the read of the next
    /// page, if there is one, is returned. A failed read ends the reading, and the
    /// failure is kept for the answer: posts may have gone out, and those already
    /// read are still made.
    fn took_page(
        &self,
        page: Result<RecipientPage, StoreError>,
        source: Option<&Source>,
        pending: &mut Pending<'_>,
        failure: &mut Option<StoreError>,
        now: u64,
    ) -> Option<PageRead<'_>> {
        match page {
            Ok(page) => {
                pending.queued.extend(page.connection_ids);
                let expired = page.expired.into_iter();
                pending
                    .expired
                    .extend(expired.filter(|id| !pending.except.contains(id.as_str())));
                page.next
                    .zip(source.cloned())
                    .map(|(cursor, source)| read_page(self.store, source, Some(cursor), now))
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "reading recipients failed mid-fan-out");
                *failure = Some(e);
                None
            }
        }
    }

    /// Every live recipient of `recipients` (every shard of a room), read once,
    /// page by page; `None` when there are more than `max` (a list of ids is
    /// returned as it is).
    pub async fn list(
        &self,
        recipients: Audience<'_>,
        now: u64,
        max: usize,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let source = match Source::of(recipients) {
            Ok(source) => source,
            Err(ids) => return Ok(Some(ids.to_vec())),
        };
        let mut ids = Vec::new();
        let mut cursor = None;
        loop {
            let page = read_page(self.store, source.clone(), cursor, now).await?;
            ids.extend(page.connection_ids);
            if ids.len() > max {
                return Ok(None);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(Some(ids)),
            }
        }
    }

    /// Posts to one connection, retrying what may succeed later. `first`: the
    /// first attempt's result when [`Management::post_now`] already made it.
    async fn deliver(
        &self,
        connection_id: &str,
        payload: Bytes,
        started: Instant,
        mut first: Option<Result<(), PostError>>,
    ) -> Outcome {
        let mut throttled = 0;
        let mut attempt = 0;
        loop {
            let result = match first.take() {
                Some(result) => result,
                None => {
                    if let Some(pacer) = self.pacer {
                        let stop = self.stop_at.map(tokio::time::Instant::from_std);
                        if !pacer.wait(stop).await {
                            tracing::warn!(
                                connection_id,
                                "no turn to post before the fan-out's stop"
                            );
                            return Outcome::Failed { throttled };
                        }
                    }
                    self.management
                        .post(self.endpoint, connection_id, payload.clone())
                        .await
                }
            };
            // A paced fan-out's 429s slow the pacer down and do not use up attempts:
            // the quota says "later", not "never".
            let paced_throttle = self.pacer.is_some() && result == Err(PostError::Throttled);
            if !paced_throttle {
                attempt += 1;
            }
            match result {
                Ok(()) => {
                    if let Some(pacer) = self.pacer {
                        pacer.delivered();
                    }
                    return Outcome::Delivered { throttled };
                }
                Err(PostError::Gone) => {
                    self.remove_gone(connection_id).await;
                    return Outcome::Gone { throttled };
                }
                Err(e) if paced_throttle => {
                    if self.stopped(Duration::ZERO) || started.elapsed() > self.retry.deadline {
                        tracing::warn!(connection_id, error = %e, "post throttled; the fan-out's time is up");
                        return Outcome::Failed { throttled };
                    }
                    throttled += 1;
                    if let Some(pacer) = self.pacer {
                        pacer.throttled();
                    }
                }
                Err(e) if e.is_retryable() && attempt < self.retry.max_attempts => {
                    let delay = self.retry.delay(attempt - 1);
                    if started.elapsed() + delay > self.retry.deadline || self.stopped(delay) {
                        tracing::warn!(connection_id, error = %e, "post failed; deadline reached");
                        return Outcome::Failed { throttled };
                    }
                    if e == PostError::Throttled {
                        throttled += 1;
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    tracing::warn!(connection_id, attempt, error = %e, "post failed");
                    return Outcome::Failed { throttled };
                }
            }
        }
    }

    /// Checks a recipient whose item (membership or connection) has ended: when
    /// its connection's token has expired, the connection is told and closed
    /// ([`Self::close`]). An item that ended by its TTL (the connection outlived
    /// the item TTL or is long gone) is left to expire, as before. Counted as no
    /// recipient.
    async fn close_if_expired(&self, connection_id: &str, now: u64) -> Option<Outcome> {
        let since = now.saturating_sub(EXPIRED_LOOKBACK.as_secs());
        let connection = match self.store.connection(connection_id, since).await {
            Ok(connection) => connection,
            Err(e) => {
                tracing::warn!(connection_id, error = %crate::error_chain(&e), "could not read an expired member");
                return None;
            }
        };
        let expired = connection
            .is_some_and(|c| c.expires_at <= now && c.token_expires_at.is_some_and(|t| t < now));
        if expired {
            let frame = ServerFrame::error(None, &token_expired()).to_json();
            self.close(connection_id, frame).await;
        }
        None
    }

    /// Sends `frame` (an error) to the connection, then closes it (DELETE), as API
    /// Gateway's `@connections` allows: the error cannot go after the close. One
    /// attempt each: a connection already gone needs neither.
    pub async fn close(&self, connection_id: &str, frame: String) {
        tracing::info!(connection_id, "closing the connection");
        if let Err(err) = self
            .management
            .post(self.endpoint, connection_id, Bytes::from(frame))
            .await
        {
            tracing::info!(connection_id, error = %err, "could not send the closing error");
        }
        if let Err(err) = self.management.delete(self.endpoint, connection_id).await {
            tracing::warn!(connection_id, error = %err, "could not close the connection");
        }
    }

    async fn remove_gone(&self, connection_id: &str) {
        let now = crate::store::now_secs();
        let removed = match self.presence {
            Some(policies) => policies.depart_gone(self, connection_id, now).await,
            None => self.store.remove_connection(connection_id).await,
        };
        match removed {
            Ok(removed) => {
                tracing::info!(
                    connection_id,
                    items = removed.items,
                    "removed gone connection"
                );
            }
            // The items expire by TTL anyway; a later fan-out will try again.
            Err(e) => {
                tracing::warn!(connection_id, error = %crate::error_chain(&e), "could not remove gone connection")
            }
        }
    }
}

/// How the fan-out hands over a connection it found gone (410): removed, and its
/// leaves announced (`departure.rs` implements it for the policies).
pub trait Departures: Sync {
    fn depart_gone<'a>(
        &'a self,
        fanout: &'a Fanout<'a>,
        connection_id: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Removed, StoreError>>;
}

/// One page of recipients: the live ones and those (a room's memberships or the
/// connections themselves) ended within [`EXPIRED_LOOKBACK`] (their token may
/// have expired).
struct RecipientPage {
    connection_ids: Vec<String>,
    expired: Vec<String>,
    next: Option<Cursor>,
}

impl RecipientPage {
    /// Splits a page read as of [`EXPIRED_LOOKBACK`] ago into the live (expiring
    /// after `now`) and those ended since.
    fn split(ids: impl IntoIterator<Item = (String, u64)>, next: Option<Cursor>, now: u64) -> Self {
        let (live, expired): (Vec<_>, Vec<_>) = ids.into_iter().partition(|(_, at)| *at > now);
        Self {
            connection_ids: live.into_iter().map(|(id, _)| id).collect(),
            expired: expired.into_iter().map(|(id, _)| id).collect(),
            next,
        }
    }

    /// A user's or every connection's page, split like a room's.
    fn of_connections(page: ConnectionPage, now: u64) -> Self {
        let ids = page.connection_ids.into_iter().zip(page.expires_at);
        Self::split(ids, page.next.map(Cursor::One), now)
    }
}

/// The read of one recipient page.
type PageRead<'a> = BoxFuture<'a, Result<RecipientPage, StoreError>>;

/// The next page of each of `shards` of `room`, read in parallel, their members
/// interleaved (one of each shard in turn) so a page's posts spread over the
/// shards; the page's cursor holds the shards with more to read.
async fn read_shards(
    store: &dyn Store,
    room: &str,
    shards: Vec<(u16, Option<String>)>,
    since: u64,
    now: u64,
) -> Result<RecipientPage, StoreError> {
    let reads = shards.into_iter().map(|(shard, cursor)| async move {
        let page = store
            .members_page(room, shard, cursor.as_deref(), PAGE_SIZE, since)
            .await?;
        Ok::<_, StoreError>((shard, page))
    });
    let pages = futures::future::try_join_all(reads).await?;
    let mut left = Vec::new();
    let mut lists = Vec::with_capacity(pages.len());
    for (shard, page) in pages {
        if let Some(next) = page.next {
            left.push((shard, Some(next)));
        }
        lists.push(page.members.into_iter());
    }
    let total = lists.iter().map(ExactSizeIterator::len).sum();
    let mut ids = Vec::with_capacity(total);
    while ids.len() < total {
        for list in &mut lists {
            ids.extend(list.next().map(|m| (m.connection_id, m.expires_at)));
        }
    }
    let next = (!left.is_empty()).then_some(Cursor::Shards(left));
    Ok(RecipientPage::split(ids, next, now))
}

/// One page of a paged source's connection ids, boxed so the fan-out can hold
/// the next read while posts are in flight. Every page is read as of
/// [`EXPIRED_LOOKBACK`] ago, so memberships and connections that ended since
/// come back, apart.
fn read_page(store: &dyn Store, source: Source, cursor: Option<Cursor>, now: u64) -> PageRead<'_> {
    Box::pin(async move {
        let since = now.saturating_sub(EXPIRED_LOOKBACK.as_secs());
        let (shards, cursor) = match cursor {
            Some(Cursor::Shards(shards)) => (Some(shards), None),
            Some(Cursor::One(cursor)) => (None, Some(cursor)),
            None => (None, None),
        };
        let cursor = cursor.as_deref();
        match &source {
            Source::Room { room, shards: all } => {
                let shards = shards.unwrap_or_else(|| all.iter().map(|&s| (s, None)).collect());
                read_shards(store, room, shards, since, now).await
            }
            Source::User(user) => {
                let page = store
                    .user_connections_page(user, cursor, PAGE_SIZE, since)
                    .await?;
                Ok(RecipientPage::of_connections(page, now))
            }
            Source::All => {
                let page = store.connections_page(cursor, PAGE_SIZE, since).await?;
                Ok(RecipientPage::of_connections(page, now))
            }
        }
    })
}
