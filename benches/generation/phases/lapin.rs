//! 3. Raw lapin publishes with confirms: what the broker and client library can do alone.

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind, PublisherConfirm};
use uuid::Uuid;

use crate::broker::{amqp_connect, durable_exchange, ROUTING_KEY};
use crate::common::*;
use crate::cpu::{CpuReport, CpuSnap};
use crate::drain::Drain;
use crate::phases::Rig;

/// Publisher-confirm window of the raw lapin baseline (the server's default too).
pub const CONFIRM_WINDOW: usize = 1000;

pub struct RawRun {
    /// The confirms that arrived within the window: their count, rate and latency.
    pub window: Run,
    pub confirmed_total: u64,
    pub nacked: u64,
}

impl RawRun {
    pub fn per_s(&self) -> f64 {
        self.window.ops_per_s()
    }
}

async fn tracked(
    confirm: PublisherConfirm,
    sent: Instant,
) -> (Instant, Result<Confirmation, lapin::Error>) {
    (sent, confirm.await)
}

/// Publishes `payload` (persistent, mandatory, a message id each, like the server) with up to
/// `CONFIRM_WINDOW` unconfirmed, for `duration`; counts the confirms that arrive within it.
async fn raw_publish(
    channel: &Channel,
    exchange: &str,
    payload: &[u8],
    duration: Duration,
) -> Res<RawRun> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut inflight = FuturesUnordered::new();
    let (mut total, mut nacked) = (0u64, 0u64);
    let mut in_window = Tally::default();
    loop {
        while inflight.len() < CONFIRM_WINDOW && Instant::now() < deadline {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(Uuid::now_v7().to_string().into());
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    ROUTING_KEY.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    payload,
                    props,
                )
                .await
                .map_err(|e| format!("publish: {e}"))?;
            inflight.push(tracked(confirm, Instant::now()));
        }
        let Some((sent, result)) = inflight.next().await else {
            break;
        };
        match result {
            Ok(Confirmation::Ack(None)) => {
                total += 1;
                if Instant::now() <= deadline {
                    in_window.record(sent);
                }
            }
            Ok(_) => nacked += 1,
            Err(e) => return Err(format!("confirm: {e}")),
        }
    }
    Ok(RawRun {
        window: Run::from(Tally::merge(vec![in_window]), duration),
        confirmed_total: total,
        nacked,
    })
}

/// A confirming channel publishing to a durable direct `exchange` bound to `queue`.
async fn raw_channel(url: &str, queue: &str, exchange: &str) -> Res<(Connection, Channel)> {
    let conn = amqp_connect(url, "bench-gen-raw-publisher").await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("confirm.select: {e}"))?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("exchange: {e}"))?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("bind: {e}"))?;
    Ok((conn, channel))
}

pub async fn lapin_phase(
    rig: &Rig<'_>,
    queue: &str,
    exchange: &str,
    payload: Vec<u8>,
) -> Res<RawRun> {
    heading(format_args!(
        "3. Raw lapin: persistent {}-byte publishes, confirms, window {CONFIRM_WINDOW}, durable queue (drained)",
        payload.len()
    ));
    let url = rig.cfg.amqp.clone();
    let drain = Drain::start_on(rig.amqp, &url, queue.to_string()).await?;
    let (queue, exchange) = (queue.to_string(), exchange.to_string());
    let (warmup, seconds) = (rig.cfg.warmup.max(1), rig.cfg.seconds);
    let task = rig.amqp.spawn(async move {
        let (conn, channel) = raw_channel(&url, &queue, &exchange).await?;
        let warm = raw_publish(&channel, &exchange, &payload, Duration::from_secs(warmup)).await?;
        let a = CpuSnap::take();
        let run = raw_publish(&channel, &exchange, &payload, Duration::from_secs(seconds)).await?;
        let b = CpuSnap::take();
        let _ = conn.close(200, "bench done".into()).await;
        Ok::<_, String>((warm, run, CpuReport::between(&a, &b)))
    });
    let outcome = task.await.map_err(|e| e.to_string());
    let received = drain.received();
    drain.stop().await;
    let (warm, run, cpu) = outcome??;
    println!(
        "  warm-up (not counted): {} confirmed",
        thousands(warm.confirmed_total)
    );
    println!(
        "  raw lapin: {} confirmed within {:.0} s = {} msg/s (confirm latency p50 {:.1} ms, p99 {:.1} ms); \
         {} confirmed in all, {} nacked/returned; drain consumer received {}",
        thousands(run.window.ops),
        run.window.elapsed.as_secs_f64(),
        rate(run.per_s()),
        run.window.p50_ms,
        run.window.p99_ms,
        thousands(run.confirmed_total),
        run.nacked,
        thousands(received)
    );
    cpu.print();
    Ok(run)
}
