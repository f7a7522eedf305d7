//! The job bus: the [`Publisher`] relays the outbox to RabbitMQ with publisher confirms, and the
//! [`ResultsConsumer`] applies the workers' results. Each keeps its own connection and
//! reconnects with capped exponential backoff; the server serves normally while the broker is
//! down, and accepted jobs wait durably in the outbox.

use std::collections::{HashSet, VecDeque};
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
use storage::records::OutboxRecord;
use storage::{now_us, Direction, Store};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::generation::{apply_event, mark_published, Event, GenerationError};
use crate::workspace::{NewAsset, WorkspaceRegistry};
use crate::AccountRegistry;

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
    /// Recent publish lags (accept → broker confirm), microseconds; bounded.
    lags_us: Mutex<VecDeque<u64>>,
    pub last_error: Mutex<Option<String>>,
}

const LAGS_KEPT_MAX: usize = 4096;

impl BrokerStatus {
    fn record_lag(&self, lag_us: u64) {
        let mut lags = self.lags_us.lock();
        if lags.len() >= LAGS_KEPT_MAX {
            lags.pop_front();
        }
        lags.push_back(lag_us);
    }

    /// The p-th percentile (0..=100) of recent publish lags, in milliseconds.
    pub fn lag_percentile_ms(&self, p: f64) -> f64 {
        let mut v: Vec<u64> = self.lags_us.lock().iter().copied().collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_unstable();
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)] as f64 / 1000.0
    }

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

/// The one publishing connection and channel. Relays outbox entries in key order (time order),
/// keeps up to `confirm_window` unconfirmed, removes an entry only after the broker's ack, and
/// republishes what was nacked, returned, or unconfirmed when the connection dropped (lapin's
/// own recovery does not republish; this does, by rescanning the outbox after a reconnect).
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
                let mut attempt = 0u32;
                loop {
                    match connect(&config, "publisher").await {
                        Ok(conn) => {
                            attempt = 0;
                            status.publisher_connected.store(true, Ordering::Relaxed);
                            tracing::info!("publisher connected to the broker");
                            let err = relay(&store, &config, &status, &wake, &conn).await;
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

/// How often the publisher rescans the whole outbox (in-flight entries are skipped).
const RESCAN_EVERY_MS: u64 = 250;

type Confirm = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (Uuid, i64, Result<lapin::Confirmation, lapin::Error>)>
            + Send,
    >,
>;

/// Publishes until the connection fails; returns the failure.
async fn relay(
    store: &Store,
    config: &BrokerConfig,
    status: &BrokerStatus,
    wake: &Notify,
    conn: &Connection,
) -> String {
    let channel = match conn.create_channel().await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    if let Err(e) = channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
    {
        return e.to_string();
    }
    if let Err(e) = declare_jobs(&channel, config).await {
        return e.to_string();
    }
    let mut inflight: FuturesUnordered<Confirm> = FuturesUnordered::new();
    let mut inflight_ids: HashSet<Uuid> = HashSet::new();
    let mut retry: VecDeque<Uuid> = VecDeque::new();
    // Everything still in the outbox was not confirmed: start from the beginning.
    let mut cursor: Option<Vec<u8>> = None;
    // Outbox keys are request ids, taken before the charge waits for its commit, so an entry
    // can commit behind the cursor (or stay after a failed mark). A rescan from the start on a
    // fixed beat — not reset by wakes or confirms — bounds how long such an entry waits.
    let mut rescan = tokio::time::interval(Duration::from_millis(RESCAN_EVERY_MS));
    loop {
        if !conn.status().connected() {
            return "the connection closed".into();
        }
        // Fill the confirm window: retries first, then new outbox entries in key order.
        while inflight.len() < config.confirm_window {
            let next = match retry.pop_front() {
                Some(id) => match store.get::<OutboxRecord>(&storage::keys::id(id)) {
                    Ok(Some(r)) => Some(r),
                    Ok(None) => continue, // cancelled meanwhile
                    Err(e) => return e.to_string(),
                },
                None => {
                    let want = config.confirm_window - inflight.len();
                    let rows = match store.scan::<OutboxRecord>(
                        &[],
                        cursor.as_deref(),
                        Direction::Forward,
                        want.min(256),
                    ) {
                        Ok(r) => r,
                        Err(e) => return e.to_string(),
                    };
                    if rows.is_empty() {
                        break;
                    }
                    cursor = rows.last().map(|(k, _)| k.clone());
                    for (_, r) in rows {
                        if inflight_ids.contains(&r.generation_id) {
                            continue;
                        }
                        match publish(&channel, config, &r).await {
                            Ok(confirm) => {
                                status.published_total.fetch_add(1, Ordering::Relaxed);
                                inflight_ids.insert(r.generation_id);
                                inflight.push(confirm);
                            }
                            Err(e) => return e.to_string(),
                        }
                    }
                    continue;
                }
            };
            if let Some(r) = next {
                if inflight_ids.contains(&r.generation_id) {
                    continue;
                }
                match publish(&channel, config, &r).await {
                    Ok(confirm) => {
                        status.republished_total.fetch_add(1, Ordering::Relaxed);
                        inflight_ids.insert(r.generation_id);
                        inflight.push(confirm);
                    }
                    Err(e) => return e.to_string(),
                }
            }
        }
        tokio::select! {
            Some((id, created_at_us, result)) = inflight.next(), if !inflight.is_empty() => {
                inflight_ids.remove(&id);
                let mut done = vec![(id, created_at_us, result)];
                // Take every confirm already in, to write their removals together.
                while let Some(Some(more)) = futures_util::FutureExt::now_or_never(inflight.next()) {
                    inflight_ids.remove(&more.0);
                    done.push(more);
                }
                let mut confirmed = Vec::with_capacity(done.len());
                for (id, created_at_us, result) in done {
                    match result {
                        Ok(c) if c.is_ack() => match c.take_message() {
                            None => confirmed.push((id, created_at_us)),
                            Some(returned) => {
                                // Unroutable: the queue or binding is gone. Redeclare on a fresh
                                // connection rather than spin.
                                retry.push_back(id);
                                return format!("job {id} returned by the broker: {} {}", returned.reply_code, returned.reply_text);
                            }
                        },
                        Ok(_) => retry.push_back(id), // nacked: publish again
                        Err(e) => return e.to_string(),
                    }
                }
                let marks = confirmed.iter().map(|(id, _)| mark_published(store, *id));
                for ((_, created_at_us), r) in confirmed.iter().zip(futures_util::future::join_all(marks).await) {
                    match r {
                        Ok(()) => {
                            status.confirmed_total.fetch_add(1, Ordering::Relaxed);
                            status.record_lag(u64::try_from(now_us() - created_at_us).unwrap_or(0));
                        }
                        // The entry stays in the outbox and is published again later: a
                        // duplicate with the same message_id, which consumers dedupe.
                        Err(e) => tracing::warn!(error = %e, "could not record a confirmed job"),
                    }
                }
            }
            _ = wake.notified() => {}
            _ = rescan.tick() => cursor = None,
        }
    }
}

async fn publish(
    channel: &Channel,
    config: &BrokerConfig,
    record: &OutboxRecord,
) -> Result<Confirm, lapin::Error> {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(record.generation_id.to_string().into());
    let confirm = channel
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
        .await?;
    let (id, created) = (record.generation_id, record.created_at_us);
    Ok(Box::pin(async move { (id, created, confirm.await) }))
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
                .map(|a| {
                    let kind = a
                        .mime
                        .split('/')
                        .next()
                        .filter(|k| ["image", "video", "audio"].contains(k))
                        .unwrap_or("other")
                        .to_string();
                    valid_path(&a.path).then_some(NewAsset {
                        kind,
                        path: a.path,
                        mime: a.mime,
                        size: a.size,
                        generation_request_id: None,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .ok_or("an asset path is not a relative object-store path")?;
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

fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 1024
        && !p.starts_with('/')
        && !p.contains("://")
        && p.split('/').all(|s| !s.is_empty() && s != ".." && s != ".")
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
    let channel = match conn.create_channel().await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
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
    let setup = async {
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
    };
    let mut consumer = match setup.await {
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
                    if let Err(e) = delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                    {
                        return e.to_string();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let sent = match verdict {
            Ok(()) => {
                status.results_applied_total.fetch_add(1, Ordering::Relaxed);
                delivery.ack(BasicAckOptions::default()).await
            }
            Err(why) => {
                status
                    .results_dead_lettered_total
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(reason = %why, "result dead-lettered");
                delivery.reject(BasicRejectOptions { requeue: false }).await
            }
        };
        if let Err(e) = sent {
            return e.to_string();
        }
    }
    "the consumer was cancelled".into()
}

/// Wakes the publisher after new outbox entries (it also polls, so a lost wake only delays).
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
