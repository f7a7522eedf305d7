//! RabbitMQ: the run's own names, connections, the gate, cleanup.

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::{Connection, ConnectionProperties};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::common::*;
use crate::cpu::{claim_lapin_threads, lapin_threads};

pub const ROUTING_KEY: &str = "generation.create";

/// The queues and exchange of one server, named after a tag of the run's own so that runs
/// (and other users of the broker) never share them.
#[derive(Clone)]
pub struct QueueNames {
    pub tag: String,
    pub exchange: String,
    pub jobs: String,
    pub results: String,
    pub dlq: String,
}

impl QueueNames {
    pub fn new(kind: &str) -> QueueNames {
        let tag = format!("bench-gen-{kind}-{}", Uuid::new_v4().simple());
        QueueNames {
            exchange: format!("{tag}.jobs_exchange"),
            jobs: format!("{tag}.jobs"),
            results: format!("{tag}.results"),
            dlq: format!("{tag}.results.dlq"),
            tag,
        }
    }
}

/// Connects for the benchmark itself; its lapin threads are counted as the bench's.
pub async fn amqp_connect(url: &str, name: &str) -> Res<Connection> {
    let before = lapin_threads();
    let props = ConnectionProperties::default().with_connection_name(name.to_string().into());
    let conn = tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, props))
        .await
        .map_err(|_| format!("connecting to the broker at {url} timed out"))?
        .map_err(|e| format!("cannot reach the broker at {url}: {e}"))?;
    claim_lapin_threads(&before);
    Ok(conn)
}

pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

pub fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// `amqp://user:pass@host:port/vhost` → (`amqp://user:pass@`, `host:port`, `/vhost`).
pub fn split_amqp(url: &str) -> Res<(String, String, String)> {
    let rest = url
        .strip_prefix("amqp://")
        .ok_or_else(|| format!("{url}: not an amqp:// URL"))?;
    let (auth, hostpart) = match rest.rfind('@') {
        Some(i) => (&rest[..=i], &rest[i + 1..]),
        None => ("", rest),
    };
    let (host, path) = match hostpart.find('/') {
        Some(i) => (&hostpart[..i], &hostpart[i..]),
        None => (hostpart, ""),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5672")
    };
    Ok((format!("amqp://{auth}"), host, path.to_string()))
}

/// Opens the gate: accepts what waited in the listen backlog and everything after, relaying
/// each connection to the broker.
pub fn open_gate(listener: std::net::TcpListener, upstream: String) -> Res<()> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("the gate listener: {e}"))?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    Ok(())
}

pub async fn delete_broker_objects(url: &str, queues: &[String], exchanges: &[String]) -> Res<()> {
    let conn = amqp_connect(url, "bench-gen-cleanup").await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("cleanup channel: {e}"))?;
    for q in queues {
        if let Err(e) = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            eprintln!("  could not delete queue {q}: {e}");
        }
    }
    for x in exchanges {
        if let Err(e) = channel
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await
        {
            eprintln!("  could not delete exchange {x}: {e}");
        }
    }
    let _ = conn.close(200, "bench done".into()).await;
    Ok(())
}
