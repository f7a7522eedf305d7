//! A test's own corner of the shared RabbitMQ: unique names, a direct lapin connection to read
//! jobs and send results, and cleanup.

use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::Value;

pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub struct Bus {
    pub tag: String,
    conn: Connection,
    channel: Channel,
    pub dir: tempfile::TempDir,
}

impl Bus {
    pub async fn new() -> Bus {
        let tag = format!("t{}", uuid::Uuid::new_v4().simple());
        let conn = Connection::connect(BROKER, ConnectionProperties::default())
            .await
            .expect("the test broker at 127.0.0.1:5672");
        let channel = conn.create_channel().await.unwrap();
        let bus = Bus {
            tag,
            conn,
            channel,
            dir: tempfile::tempdir().unwrap(),
        };
        // Declared here too (same arguments as the server's), so reading before the server has
        // declared them cannot fail and a result sent early is not dropped.
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            lapin::types::AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            lapin::types::AMQPValue::LongString(bus.dlq().as_str().into()),
        );
        bus.channel
            .queue_declare(bus.jobs().as_str().into(), durable, FieldTable::default())
            .await
            .unwrap();
        bus.channel
            .queue_declare(bus.dlq().as_str().into(), durable, FieldTable::default())
            .await
            .unwrap();
        bus.channel
            .queue_declare(bus.results().as_str().into(), durable, args)
            .await
            .unwrap();
        bus
    }

    pub fn exchange(&self) -> String {
        format!("{}.jobs_exchange", self.tag)
    }
    pub fn jobs(&self) -> String {
        format!("{}.jobs", self.tag)
    }
    pub fn results(&self) -> String {
        format!("{}.results", self.tag)
    }
    pub fn dlq(&self) -> String {
        format!("{}.results.dlq", self.tag)
    }

    /// A config file naming this test's queues, plus `extra` TOML.
    pub fn config_file(&self, extra: &str) -> String {
        let path = self.dir.path().join("cf.toml");
        let text = format!(
            "[queues]\nexchange = \"{}\"\njobs = \"{}\"\nrouting_key = \"generation.create\"\nresults = \"{}\"\nresults_dlq = \"{}\"\nconnection_name = \"{}\"\n{extra}",
            self.exchange(),
            self.jobs(),
            self.results(),
            self.dlq(),
            self.tag
        );
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().to_string()
    }

    pub fn env(&self, extra: &str) -> Vec<(String, String)> {
        vec![
            ("CREATIVEFLOW_AMQP_URL".into(), BROKER.into()),
            ("CREATIVEFLOW_CONFIG".into(), self.config_file(extra)),
        ]
    }

    async fn get(&self, queue: &str) -> Option<(Vec<u8>, BasicProperties)> {
        match self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
        {
            Ok(Some(m)) => Some((m.delivery.data.clone(), m.delivery.properties.clone())),
            _ => None,
        }
    }

    /// The next job on this test's queue, waiting up to `wait`.
    pub async fn next_job(&self, wait: Duration) -> Option<(Value, BasicProperties)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some((data, props)) = self.get(&self.jobs()).await {
                return Some((serde_json::from_slice(&data).expect("jobs are JSON"), props));
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every job that arrives within `wait` after the last one.
    pub async fn drain_jobs(&self, quiet: Duration) -> Vec<(Value, BasicProperties)> {
        let mut all = Vec::new();
        while let Some(j) = self.next_job(quiet).await {
            all.push(j);
        }
        all
    }

    pub async fn next_dead_letter(&self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some((data, _)) = self.get(&self.dlq()).await {
                return Some(data);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A worker's result, straight to the results queue.
    pub async fn send_result(&self, body: &[u8]) {
        self.channel
            .basic_publish(
                "".into(),
                self.results().as_str().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Closes, from the broker's side, every connection the server opened under this tag.
    pub fn cut_server_connections(&self) -> usize {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("rabbitmqctl");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut cut = 0;
        for line in text.lines().filter(|l| l.contains(&self.tag)) {
            if let Some(pid) = line.split_whitespace().next() {
                let ok = std::process::Command::new("rabbitmqctl")
                    .args(["-q", "close_connection", pid, "test cut"])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                cut += usize::from(ok);
            }
        }
        cut
    }

    /// Deletes this test's queues and exchange.
    pub async fn cleanup(self) {
        for q in [self.jobs(), self.results(), self.dlq()] {
            let _ = self
                .channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self
            .channel
            .exchange_delete(
                self.exchange().as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self.conn.close(200, "done".into()).await;
    }
}
