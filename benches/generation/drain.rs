//! The broker drain: a consumer with auto-ack emptying a queue as fast as the broker delivers,
//! as the workers would, and timing each job from accept to delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use uuid::Uuid;

use crate::broker::{amqp_connect, durable};
use crate::common::*;

/// A consumer with auto-ack emptying a queue as fast as the broker delivers (the workers).
pub struct Drain {
    conn: Connection,
    received: Arc<AtomicU64>,
    first: Arc<Mutex<Option<Vec<u8>>>>,
    /// (accepted at, delivered after) in ms for each delivery whose message id is a UUID v7:
    /// the server's message id is the generation id, made when the create is accepted.
    lags: Arc<Mutex<Vec<(u64, u32)>>>,
    task: tokio::task::JoinHandle<()>,
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The creation time (unix ms) in a UUID v7 message id.
fn id_ms(props: &BasicProperties) -> Option<u64> {
    let id = props.message_id().as_ref()?;
    let (secs, nanos) = Uuid::parse_str(id.as_str())
        .ok()?
        .get_timestamp()?
        .to_unix();
    Some(secs * 1000 + u64::from(nanos) / 1_000_000)
}

async fn start_drain(url: String, queue: String) -> Res<Drain> {
    let conn = amqp_connect(&url, &format!("{queue}-drain")).await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("drain channel: {e}"))?;
    // Declared exactly as the server declares its jobs queue (durable, no arguments).
    channel
        .queue_declare(queue.as_str().into(), durable(), FieldTable::default())
        .await
        .map_err(|e| format!("declare {queue}: {e}"))?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "bench-drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("consume {queue}: {e}"))?;
    let received = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Mutex::new(None));
    let lags = Arc::new(Mutex::new(Vec::new()));
    let (r, f, l) = (received.clone(), first.clone(), lags.clone());
    let task = tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            if let Some(at) = id_ms(&delivery.properties) {
                let lag = u32::try_from(unix_ms().saturating_sub(at)).unwrap_or(u32::MAX);
                if let Ok(mut lags) = l.lock() {
                    lags.push((at, lag));
                }
            }
            if r.fetch_add(1, Ordering::Relaxed) == 0 {
                if let Ok(mut first) = f.lock() {
                    *first = Some(delivery.data);
                }
            }
        }
    });
    Ok(Drain {
        conn,
        received,
        first,
        lags,
        task,
    })
}

impl Drain {
    /// Starts draining `queue` on `runtime` (the bench's AMQP runtime, so that its CPU is told
    /// apart from the load generator's).
    pub async fn start_on(
        runtime: &tokio::runtime::Handle,
        url: &str,
        queue: String,
    ) -> Res<Drain> {
        runtime
            .spawn(start_drain(url.to_string(), queue))
            .await
            .map_err(|e| e.to_string())?
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn first(&self) -> Option<Vec<u8>> {
        self.first.lock().ok().and_then(|f| f.clone())
    }

    /// Sorted accept → delivery lags (ms) of the messages accepted within `[from, to)` (unix ms).
    pub fn lags_between(&self, from: u64, to: u64) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .lags
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(at, _)| (from..to).contains(at))
                    .map(|(_, lag)| *lag)
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    pub async fn stop(self) {
        let _ = self.conn.close(200, "bench done".into()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}
