//! The job bus: the [`Publisher`] relays the outbox to RabbitMQ with publisher confirms, and the
//! [`ResultsConsumer`] applies the workers' results. Each keeps its own connection and
//! reconnects with capped exponential backoff; the server serves normally while the broker is
//! down, and accepted jobs wait durably in the outbox.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use parking_lot::Mutex;
use serde::Deserialize;
use storage::records::{OutboxOrder, OutboxRecord};
use storage::{keys, now_us, Direction, Reader, RelayLease, Store, WriteSet};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::account::AccountRegistry;
use crate::generation::{
    apply_event, mark_published_batch, GenerationError, CONFIRMS_PER_WRITE_MAX,
};
use crate::histogram::Histogram;
use crate::lifecycle::Event;
use crate::workspace::WorkspaceRegistry;
use crate::workspace_reads::{mime_ok, object_path_ok, NewAsset, ASSET_SIZE_MAX};

/// Names and bounds of the job bus (SPEC §7 defaults; all configurable).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub amqp_url: String,
    pub exchange: String,
    pub jobs_queue: String,
    pub routing_key: String,
    pub results_queue: String,
    pub results_dlq: String,
    /// Unconfirmed publishes in flight at most.
    pub confirm_window: usize,
    /// Unacked result deliveries at most.
    pub prefetch: u16,
    pub reconnect_max_ms: u64,
    /// Shows in the broker's connection list (lets operators and tests find our connections).
    pub connection_name: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "ai_jobs_exchange".into(),
            jobs_queue: "ai_generation_jobs".into(),
            routing_key: "generation.create".into(),
            results_queue: "ai_generation_results".into(),
            results_dlq: "ai_generation_results.dlq".into(),
            confirm_window: 1000,
            prefetch: 64,
            reconnect_max_ms: 30_000,
            connection_name: "creativeflow".into(),
        }
    }
}

/// How the bus stands, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct BrokerStatus {
    pub publisher_connected: AtomicBool,
    pub consumer_connected: AtomicBool,
    pub published_total: AtomicU64,
    pub confirmed_total: AtomicU64,
    pub republished_total: AtomicU64,
    pub reconnects_total: AtomicU64,
    pub results_applied_total: AtomicU64,
    pub results_dead_lettered_total: AtomicU64,
    /// Accept → broker confirm, per job.
    pub publish_lag: Histogram,
    pub last_error: Mutex<Option<String>>,
}

impl BrokerStatus {
    fn error(&self, e: impl std::fmt::Display) {
        *self.last_error.lock() = Some(e.to_string());
    }
}

async fn connect(config: &BrokerConfig, role: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_connection_name(format!("{}-{role}", config.connection_name).into());
    Connection::connect(&config.amqp_url, props).await
}

fn backoff_ms(attempt: u32, max_ms: u64) -> u64 {
    (250u64 << attempt.min(10)).min(max_ms)
}

// --- Publisher ----------------------------------------------------------------------------------

/// The one publishing connection and channel. Follows the outbox in commit order (its
/// `outbox_order` keys, which the storage writer assigns as it commits), keeps up to
/// `confirm_window` unconfirmed, removes an entry only after the broker's ack, and republishes
/// what was nacked, returned, or unconfirmed when the connection dropped (lapin's own recovery
/// does not republish; this does, by starting again from the first entry after a reconnect).
pub struct Publisher {
    store: Store,
    config: BrokerConfig,
    status: Arc<BrokerStatus>,
    wake: Arc<Notify>,
}

impl Publisher {
    pub fn new(
        store: Store,
        config: BrokerConfig,
        status: Arc<BrokerStatus>,
        wake: Arc<Notify>,
    ) -> Self {
        Publisher {
            store,
            config,
            status,
            wake,
        }
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (store, config, status, wake) = (
            self.store.clone(),
            self.config.clone(),
            self.status.clone(),
            self.wake.clone(),
        );
        ctx.spawn(
            async move {
                let lease = match store.relay_lease() {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot take part in relaying the outbox");
                        status.error(e.to_string());
                        return;
                    }
                };
                let mut attempt = 0u32;
                loop {
                    match connect(&config, "publisher").await {
                        Ok(conn) => {
                            attempt = 0;
                            status.publisher_connected.store(true, Ordering::Relaxed);
                            tracing::info!("publisher connected to the broker");
                            let err = relay(&store, &config, &status, &wake, &lease, &conn).await;
                            status.publisher_connected.store(false, Ordering::Relaxed);
                            status.reconnects_total.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %err, "publisher lost the broker; unconfirmed jobs will be republished");
                            status.error(&err);
                            let _ = conn.close(200, "reconnecting".into()).await;
                        }
                        Err(e) => {
                            status.error(&e);
                            tracing::debug!(error = %e, "publisher cannot reach the broker");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(backoff_ms(attempt, config.reconnect_max_ms))).await;
                    attempt = attempt.saturating_add(1);
                }
            }
            .into_actor(self),
        );
    }
}

async fn declare_jobs(channel: &Channel, config: &BrokerConfig) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            config.jobs_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            config.jobs_queue.as_str().into(),
            config.exchange.as_str().into(),
            config.routing_key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// A job as the publisher tracks it: the request and where the cursor found it.
#[derive(Debug, Clone)]
struct Job {
    generation_id: Uuid,
    order_key: Vec<u8>,
    created_at_us: i64,
}

/// A job handed to lapin: its send, then its confirm.
type Confirm<'a> =
    Pin<Box<dyn Future<Output = (Job, Result<lapin::Confirmation, lapin::Error>)> + Send + 'a>>;

/// Confirmed jobs being recorded, answering what became of each.
type Recording<'a> =
    Pin<Box<dyn Future<Output = Vec<(Job, Result<(), GenerationError>)>> + Send + 'a>>;

/// How long the relay lets new outbox entries gather after a wake-up before it scans.
const PUBLISH_GATHER_US: u64 = 1_000;

/// Order entries read per scan of the cursor.
const SCAN_BATCH_MAX: usize = 256;

/// Records of confirmed jobs that may wait for their commit at once. The relay goes on
/// publishing and taking confirms while they wait (awaiting each one stalled the relay for a
/// group commit per batch: measured, it spent over half of its time there at 8.5k jobs/s).
/// Confirms that arrive meanwhile gather in `to_record` and go in the next record together.
const RECORDINGS_IN_FLIGHT_MAX: usize = 2;

/// The publisher's state on one channel.
struct Relay<'a> {
    store: &'a Store,
    config: &'a BrokerConfig,
    status: &'a BrokerStatus,
    channel: Channel,
    /// Unconfirmed jobs.
    inflight: FuturesUnordered<Confirm<'a>>,
    /// Acked jobs not yet being recorded.
    to_record: Vec<Job>,
    /// Records waiting for their commit, at most [`RECORDINGS_IN_FLIGHT_MAX`].
    recording: FuturesUnordered<Recording<'a>>,
    /// Every job published and not yet recorded (or nacked), wherever it is: `inflight`,
    /// `to_record` or `recording`. None is published again meanwhile, not even by a scan from
    /// the first entry after the lease comes back. The window is its size, at most
    /// `confirm_window`: that bounds what a failure can publish twice.
    inflight_ids: HashSet<Uuid>,
    /// Nacked, or confirmed but not recorded: published again before new entries.
    retry: VecDeque<Job>,
    /// The last `outbox_order` key read. Keys grow in commit order, so no entry that commits
    /// later can sort before it: nothing is ever left behind the cursor, and no rescan is needed.
    cursor: Option<Vec<u8>>,
}

/// How often a publisher sharing the outbox with other nodes looks for their entries (their
/// commits do not wake it) and for a change of the cluster lease.
const SHARED_POLL_MS: u64 = 100;

/// Publishes until the connection fails; returns the failure. Only while this node holds the
/// relay lease (always, on the embedded store).
async fn relay(
    store: &Store,
    config: &BrokerConfig,
    status: &BrokerStatus,
    wake: &Notify,
    lease: &RelayLease,
    conn: &Connection,
) -> String {
    let channel = match open_channel(conn, config).await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let mut relay = Relay {
        store,
        config,
        status,
        channel,
        inflight: FuturesUnordered::new(),
        to_record: Vec::new(),
        recording: FuturesUnordered::new(),
        inflight_ids: HashSet::new(),
        retry: VecDeque::new(),
        // Everything still in the outbox was not confirmed: start from the first entry.
        cursor: None,
    };
    let failure = relay.run(wake, lease, conn).await;
    relay.finish_records().await;
    failure
}

async fn open_channel(conn: &Connection, config: &BrokerConfig) -> Result<Channel, lapin::Error> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    declare_jobs(&channel, config).await?;
    Ok(channel)
}

impl<'a> Relay<'a> {
    /// The relay's loop, until the connection fails; answers the failure.
    async fn run(&mut self, wake: &Notify, lease: &RelayLease, conn: &Connection) -> String {
        let poll = Duration::from_millis(SHARED_POLL_MS);
        loop {
            if !conn.status().connected() {
                return "the connection closed".into();
            }
            if lease.is_held() {
                if let Err(e) = self.fill_window().await {
                    return e;
                }
            } else {
                // Another node relays. Should this one take over, it starts from the first
                // entry: what the other node published but did not record is published again.
                self.cursor = None;
                self.retry.clear();
            }
            self.start_recording();
            // Records first: their first poll hands their write to the writer. Then the
            // window, whose first poll of each new job sends it, before a wake-up may sleep.
            tokio::select! {
                biased;
                Some(done) = self.recording.next(), if !self.recording.is_empty() => {
                    self.recorded(done);
                }
                Some(first) = self.inflight.next(), if !self.inflight.is_empty() => {
                    if let Err(e) = self.settle(first) {
                        return e;
                    }
                }
                _ = wake.notified() => {
                    // Let the commits of the next moment land before scanning, so they leave
                    // in one batch of frames.
                    tokio::time::sleep(Duration::from_micros(PUBLISH_GATHER_US)).await;
                }
                _ = tokio::time::sleep(poll), if lease.shared() => {}
            }
        }
    }

    /// Records what the broker acked before the relay stops, so that a reconnect does not
    /// publish it again; waits for the records already started.
    async fn finish_records(&mut self) {
        let jobs = std::mem::take(&mut self.to_record);
        if !jobs.is_empty() {
            self.recording.push(self.record(jobs));
        }
        while let Some(done) = self.recording.next().await {
            self.recorded(done);
        }
    }

    /// Publishes retries first, then new entries from the cursor, until the window is full or
    /// there is nothing more.
    async fn fill_window(&mut self) -> Result<(), String> {
        while self.inflight_ids.len() < self.config.confirm_window {
            if let Some(job) = self.retry.pop_front() {
                let record = self
                    .store
                    .get::<OutboxRecord>(&keys::id(job.generation_id))
                    .map_err(|e| e.to_string())?;
                let stale = self.publish_all(vec![(job, record)], true);
                self.remove_stale(stale).await;
                continue;
            }
            let want = (self.config.confirm_window - self.inflight_ids.len()).min(SCAN_BATCH_MAX);
            let rows = self
                .store
                .scan::<OutboxOrder>(&[], self.cursor.as_deref(), Direction::Forward, want)
                .map_err(|e| e.to_string())?;
            let Some((last, _)) = rows.last() else {
                return Ok(());
            };
            self.cursor = Some(last.clone());
            // The scan's entries in one read: on PostgreSQL a read is a round trip.
            let ids: Vec<Vec<u8>> = rows
                .iter()
                .map(|(_, o)| keys::id(o.generation_id))
                .collect();
            let records = self
                .store
                .get_many::<OutboxRecord>(&ids)
                .map_err(|e| e.to_string())?;
            let jobs = rows
                .into_iter()
                .zip(records)
                .map(|((order_key, order), record)| {
                    let job = Job {
                        generation_id: order.generation_id,
                        order_key,
                        created_at_us: 0,
                    };
                    (job, record)
                })
                .collect();
            let stale = self.publish_all(jobs, false);
            self.remove_stale(stale).await;
        }
        Ok(())
    }

    /// Removes order entries whose job left the outbox unpublished. Best effort: what stays is
    /// found again after the next reconnect or restart, and removed then.
    async fn remove_stale(&self, order_keys: Vec<Vec<u8>>) {
        if order_keys.is_empty() {
            return;
        }
        let mut set = WriteSet::new();
        for key in order_keys {
            set.delete::<OutboxOrder>(key);
        }
        if let Err(e) = self.store.write(set).await {
            tracing::debug!(error = %e, "stale outbox order entries stay for now");
        }
    }

    /// Publishes jobs from their outbox entries (`record`, read by the caller).
    /// Answers the order keys of jobs whose entry is gone (the request was cancelled or failed
    /// before publishing): only their order entry is left.
    ///
    /// Nothing is awaited here: each job's send and confirm are one future of the window, and
    /// the relay's loop polls them all together. So a scan's publishes reach lapin's I/O thread
    /// in one go and leave in a few socket writes, and the relay does not wait for that thread
    /// before it takes the next confirms (it did, a third of its time at 8.5k jobs/s).
    fn publish_all(&mut self, jobs: Vec<(Job, Option<OutboxRecord>)>, again: bool) -> Vec<Vec<u8>> {
        let mut stale = Vec::new();
        for (mut job, record) in jobs {
            match record {
                _ if self.inflight_ids.contains(&job.generation_id) => {}
                None => stale.push(job.order_key),
                // Taken before sending: a job is never in flight twice, even were it listed
                // twice in one batch.
                Some(record) => {
                    self.inflight_ids.insert(job.generation_id);
                    job.created_at_us = record.created_at_us;
                    let publish = self.publish(job, record, again);
                    self.inflight.push(publish);
                }
            }
        }
        stale
    }

    /// One job's send and confirm. A job takes its delivery tag and queues its frames in one
    /// step of its first poll, so tags match frames whatever order the window polls in. A failed
    /// send answers its error: the relay then returns and starts over from the first outbox
    /// entry on a new channel, so what was sent is published again (consumers dedupe).
    fn publish(&self, job: Job, record: OutboxRecord, again: bool) -> Confirm<'a> {
        let channel = self.channel.clone();
        let (config, status) = (self.config, self.status);
        Box::pin(async move {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(record.generation_id.to_string().into());
            let sent = channel
                .basic_publish(
                    config.exchange.as_str().into(),
                    config.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &record.payload,
                    properties,
                )
                .await;
            let confirm = match sent {
                Ok(confirm) => confirm,
                Err(e) => return (job, Err(e)),
            };
            let counter = if again {
                &status.republished_total
            } else {
                &status.published_total
            };
            counter.fetch_add(1, Ordering::Relaxed);
            (job, confirm.await)
        })
    }

    /// Takes the first confirm that arrived and every other one already in; the acked jobs
    /// wait in `to_record` for [`Relay::start_recording`].
    fn settle(
        &mut self,
        first: (Job, Result<lapin::Confirmation, lapin::Error>),
    ) -> Result<(), String> {
        let mut done = vec![first];
        while let Some(Some(more)) = futures_util::FutureExt::now_or_never(self.inflight.next()) {
            done.push(more);
        }
        let mut acked = Vec::with_capacity(done.len());
        let mut failure = None;
        for (job, result) in done {
            match result {
                // Its id stays taken until the record is written (see `recorded`).
                Ok(c) if c.is_ack() => match c.take_message() {
                    None => acked.push(job),
                    Some(returned) => {
                        // Unroutable: the queue or binding is gone. Redeclare on a fresh
                        // connection rather than spin.
                        failure.get_or_insert(format!(
                            "job {} returned by the broker: {} {}",
                            job.generation_id, returned.reply_code, returned.reply_text
                        ));
                        self.inflight_ids.remove(&job.generation_id);
                        self.retry.push_back(job);
                    }
                },
                Ok(_) => {
                    // Nacked: publish again.
                    self.inflight_ids.remove(&job.generation_id);
                    self.retry.push_back(job);
                }
                Err(e) => {
                    failure.get_or_insert(e.to_string());
                    self.inflight_ids.remove(&job.generation_id);
                }
            }
        }
        // Even on a failure every confirm is sorted, and what was acked is recorded before the
        // relay stops (`finish_records`).
        self.to_record.extend(acked);
        failure.map_or(Ok(()), Err)
    }

    /// Starts recording every acked job gathered so far, if a record may start: in as few
    /// write sets as their bound allows, all riding the same group commit. [`Relay::recorded`]
    /// handles the outcome.
    fn start_recording(&mut self) {
        if self.to_record.is_empty() || self.recording.len() >= RECORDINGS_IN_FLIGHT_MAX {
            return;
        }
        let jobs = std::mem::take(&mut self.to_record);
        self.recording.push(self.record(jobs));
    }

    /// The record of `jobs` as published, answering each one's outcome.
    fn record(&self, jobs: Vec<Job>) -> Recording<'a> {
        let store = self.store;
        Box::pin(async move {
            let batches: Vec<Vec<(Uuid, Vec<u8>)>> = jobs
                .chunks(CONFIRMS_PER_WRITE_MAX)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|j| (j.generation_id, j.order_key.clone()))
                        .collect()
                })
                .collect();
            let writes = batches.iter().map(|b| mark_published_batch(store, b));
            let results: Vec<_> = futures_util::future::join_all(writes)
                .await
                .into_iter()
                .flatten()
                .collect();
            // One outcome per job: a job left out would keep its id taken and shrink the window.
            assert_eq!(results.len(), jobs.len(), "a record answers every job");
            jobs.into_iter().zip(results).collect()
        })
    }

    /// Counts the jobs a record stored, and publishes again those it could not store.
    fn recorded(&mut self, done: Vec<(Job, Result<(), GenerationError>)>) {
        let mut failed = 0usize;
        for (job, r) in done {
            self.inflight_ids.remove(&job.generation_id);
            match r {
                Ok(()) => {
                    self.status.confirmed_total.fetch_add(1, Ordering::Relaxed);
                    let lag_us = u64::try_from(now_us() - job.created_at_us).unwrap_or(0);
                    self.status.publish_lag.observe_us(lag_us);
                }
                // Publish it again (a duplicate with the same message_id, which consumers
                // dedupe) so that its outbox entry is removed once recording works again.
                Err(e) => {
                    if failed == 0 {
                        tracing::warn!(error = %e, "could not record confirmed jobs; they are published again");
                    }
                    failed += 1;
                    self.retry.push_back(job);
                }
            }
        }
        if failed > 1 {
            tracing::warn!(
                jobs = failed,
                "confirmed jobs left unrecorded in one record"
            );
        }
    }
}

// --- Results consumer ---------------------------------------------------------------------------

/// A result message from a worker (SPEC §7).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultMessage {
    pub generation_id: Uuid,
    pub status: String,
    #[serde(default)]
    pub assets: Vec<ResultAsset>,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultAsset {
    pub path: String,
    pub mime: String,
    pub size: u64,
}

/// Most assets one result may carry.
const RESULT_ASSETS_MAX: usize = 64;
const RESULT_ERROR_LEN_MAX: usize = 2000;

/// Why a result message cannot be applied, ever: it goes to the dead-letter queue.
fn parse_result(body: &[u8]) -> Result<(Uuid, Event), String> {
    let msg: ResultMessage = serde_json::from_slice(body).map_err(|e| format!("malformed: {e}"))?;
    let event = match msg.status.as_str() {
        "processing" => Event::Processing,
        "completed" => {
            if msg.assets.len() > RESULT_ASSETS_MAX {
                return Err(format!("more than {RESULT_ASSETS_MAX} assets"));
            }
            let assets = msg
                .assets
                .into_iter()
                .map(result_asset)
                .collect::<Result<Vec<_>, String>>()?;
            Event::Completed { assets }
        }
        "failed" => Event::Failed {
            error: msg
                .error
                .unwrap_or_else(|| "generation_failed".into())
                .chars()
                .take(RESULT_ERROR_LEN_MAX)
                .collect(),
        },
        other => return Err(format!("unknown status {other:?}")),
    };
    Ok((msg.generation_id, event))
}

/// A result's asset under the same rules as an asset the API accepts: a worker is not trusted
/// more than a client.
fn result_asset(a: ResultAsset) -> Result<NewAsset, String> {
    if !object_path_ok(&a.path) {
        return Err("an asset path is not a relative object-store path".into());
    }
    if !mime_ok(&a.mime) {
        return Err("an asset mime type is not type/subtype".into());
    }
    if a.size > ASSET_SIZE_MAX {
        return Err(format!("an asset is larger than {ASSET_SIZE_MAX} bytes"));
    }
    let mime = a.mime.to_ascii_lowercase();
    let kind = mime
        .split('/')
        .next()
        .filter(|k| ["image", "video", "audio"].contains(k))
        .unwrap_or("other")
        .to_string();
    Ok(NewAsset {
        kind,
        path: a.path,
        mime,
        size: a.size,
        generation_request_id: None,
    })
}

/// Consumes `ai_generation_results` with manual acks: a message is acked only after its effect
/// is durable; what can never apply (malformed, unknown request) is rejected to the DLQ; a
/// storage failure requeues it.
pub struct ResultsConsumer {
    store: Store,
    accounts: Arc<AccountRegistry>,
    workspaces: Arc<WorkspaceRegistry>,
    config: BrokerConfig,
    status: Arc<BrokerStatus>,
}

impl ResultsConsumer {
    pub fn new(
        store: Store,
        accounts: Arc<AccountRegistry>,
        workspaces: Arc<WorkspaceRegistry>,
        config: BrokerConfig,
        status: Arc<BrokerStatus>,
    ) -> Self {
        ResultsConsumer {
            store,
            accounts,
            workspaces,
            config,
            status,
        }
    }
}

impl Actor for ResultsConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (store, accounts, workspaces, config, status) = (
            self.store.clone(),
            self.accounts.clone(),
            self.workspaces.clone(),
            self.config.clone(),
            self.status.clone(),
        );
        ctx.spawn(
            async move {
                let mut attempt = 0u32;
                loop {
                    match connect(&config, "results").await {
                        Ok(conn) => {
                            attempt = 0;
                            let err =
                                consume(&store, &accounts, &workspaces, &config, &status, &conn)
                                    .await;
                            status.consumer_connected.store(false, Ordering::Relaxed);
                            tracing::warn!(error = %err, "results consumer lost the broker");
                            status.error(&err);
                            let _ = conn.close(200, "reconnecting".into()).await;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "results consumer cannot reach the broker")
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(backoff_ms(
                        attempt,
                        config.reconnect_max_ms,
                    )))
                    .await;
                    attempt = attempt.saturating_add(1);
                }
            }
            .into_actor(self),
        );
    }
}

async fn consume(
    store: &Store,
    accounts: &AccountRegistry,
    workspaces: &WorkspaceRegistry,
    config: &BrokerConfig,
    status: &BrokerStatus,
    conn: &Connection,
) -> String {
    let mut consumer = match open_results(conn, config).await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    status.consumer_connected.store(true, Ordering::Relaxed);
    tracing::info!(queue = %config.results_queue, "results consumer connected");
    while let Some(delivery) = consumer.next().await {
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => return e.to_string(),
        };
        let verdict = match parse_result(&delivery.data) {
            Err(why) => Err(why),
            Ok((id, event)) => match apply_event(store, accounts, workspaces, id, event).await {
                Ok(_) => Ok(()),
                Err(GenerationError::Unknown(id)) => Err(format!("unknown generation {id}")),
                Err(e) => {
                    // Not applied, not the message's fault: requeue and let it come back.
                    tracing::warn!(error = %e, "result not applied; requeued");
                    let requeue = BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    };
                    if let Err(e) = delivery.nack(requeue).await {
                        return e.to_string();
                    }
                    tokio::time::sleep(Duration::from_millis(REQUEUE_PAUSE_MS)).await;
                    continue;
                }
            },
        };
        if let Err(e) = settle_result(&delivery, verdict, status).await {
            return e.to_string();
        }
    }
    "the consumer was cancelled".into()
}

/// After a result could not be applied for a reason of ours, so a hot loop does not spin.
const REQUEUE_PAUSE_MS: u64 = 200;

/// Declares the results queue (dead-lettering to the DLQ through the default exchange) and
/// starts consuming it with the prefetch bound.
async fn open_results(
    conn: &Connection,
    config: &BrokerConfig,
) -> Result<lapin::Consumer, lapin::Error> {
    let channel = conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(config.results_dlq.as_str().into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(
            config.results_dlq.as_str().into(),
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(config.results_queue.as_str().into(), durable, args)
        .await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    channel
        .basic_consume(
            config.results_queue.as_str().into(),
            format!("{}-results", config.connection_name).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Acks an applied result; rejects one that can never apply, so it goes to the DLQ.
async fn settle_result(
    delivery: &lapin::message::Delivery,
    verdict: Result<(), String>,
    status: &BrokerStatus,
) -> Result<(), lapin::Error> {
    match verdict {
        Ok(()) => {
            status.results_applied_total.fetch_add(1, Ordering::Relaxed);
            delivery.ack(BasicAckOptions::default()).await.map(drop)
        }
        Err(why) => {
            status
                .results_dead_lettered_total
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %why, "result dead-lettered");
            delivery
                .reject(BasicRejectOptions { requeue: false })
                .await
                .map(drop)
        }
    }
}

/// Wakes the publisher after new outbox entries. A wake while the publisher is busy is kept
/// (one permit), so the publisher always reads again after the last commit that woke it.
#[derive(Clone)]
pub struct PublisherHandle {
    pub wake: Arc<Notify>,
    pub status: Arc<BrokerStatus>,
}

impl PublisherHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Starts the publisher and the results consumer on an arbiter of their own.
pub fn start_bus(
    store: Store,
    accounts: Arc<AccountRegistry>,
    workspaces: Arc<WorkspaceRegistry>,
    config: BrokerConfig,
) -> (PublisherHandle, Arbiter) {
    let status = Arc::new(BrokerStatus::default());
    let wake = Arc::new(Notify::new());
    let arbiter = Arbiter::new();
    let (s, c, st, w) = (store.clone(), config.clone(), status.clone(), wake.clone());
    Publisher::start_in_arbiter(&arbiter.handle(), move |_| Publisher::new(s, c, st, w));
    let st = status.clone();
    ResultsConsumer::start_in_arbiter(&arbiter.handle(), move |_| {
        ResultsConsumer::new(store, accounts, workspaces, config, st)
    });
    (PublisherHandle { wake, status }, arbiter)
}
