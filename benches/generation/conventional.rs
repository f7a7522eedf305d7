//! The conventional design, as a typical team would build the create route: actix-web, a pool
//! of PostgreSQL connections (tokio-postgres), lapin. Per create: the token looked up, the
//! project read and its owner checked, then one transaction (guarded `UPDATE … RETURNING`,
//! ledger, request and outbox `INSERT`s, `COMMIT` with synchronous commit as the server has it).
//! A relay task claims outbox rows (`FOR UPDATE SKIP LOCKED`, up to 1,000), publishes them
//! persistent with publisher confirms, deletes them and marks their requests `queued`, in the
//! same transaction. It publishes to the main app's exchange, so the bench's drain consumer
//! receives and times its jobs too.
//!
//! The HTTP server runs on its own actix System thread; PostgreSQL connections and the relay
//! on a runtime of their own (`conv-pg`), so the CPU report finds them in this process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use crate::api::BenchUser;
use crate::broker::ROUTING_KEY;
use crate::common::*;

/// Connections the pool opens; `set_pool_size` uses up to this many.
pub const POOL_MAX: usize = 64;
/// Outbox rows the relay claims and publishes per transaction (the confirm window).
const RELAY_BATCH_MAX: i64 = 1000;
const HTTP_WORKERS: usize = 2;

const SCHEMA: &str = "
CREATE TABLE users (id uuid PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
CREATE TABLE tokens (hash bytea PRIMARY KEY, user_id uuid NOT NULL REFERENCES users, expires_at timestamptz NOT NULL);
CREATE TABLE projects (id uuid PRIMARY KEY, user_id uuid NOT NULL REFERENCES users);
CREATE TABLE ledger (id bigserial PRIMARY KEY, user_id uuid NOT NULL, amount bigint NOT NULL,
    balance_after bigint NOT NULL, kind text NOT NULL, generation_id uuid, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE requests (id uuid PRIMARY KEY, user_id uuid NOT NULL, project_id uuid NOT NULL, prompt text NOT NULL,
    format text NOT NULL, variations int NOT NULL, cost bigint NOT NULL, status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE outbox (id bigserial PRIMARY KEY, request_id uuid NOT NULL, payload bytea NOT NULL);
";

/// One pooled connection with its prepared statements.
struct Conn {
    client: Client,
    token: Statement,
    project: Statement,
    charge: Statement,
    ledger: Statement,
    request: Statement,
    outbox: Statement,
}

impl Conn {
    async fn open(pg: &str, schema: &str) -> Res<Conn> {
        let client = pg_connect(pg).await?;
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
            .await
            .map_err(|e| e.to_string())?;
        let prep = |sql: &'static str| {
            let c = &client;
            async move { c.prepare(sql).await.map_err(|e| e.to_string()) }
        };
        Ok(Conn {
            token: prep("SELECT user_id FROM tokens WHERE hash = $1 AND expires_at > now()").await?,
            project: prep("SELECT user_id FROM projects WHERE id = $1").await?,
            charge: prep("UPDATE users SET balance = balance - $2 WHERE id = $1 AND balance >= $2 RETURNING balance").await?,
            ledger: prep("INSERT INTO ledger (user_id, amount, balance_after, kind, generation_id) VALUES ($1, $2, $3, 'generation_charge', $4)").await?,
            request: prep("INSERT INTO requests (id, user_id, project_id, prompt, format, variations, cost, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')").await?,
            outbox: prep("INSERT INTO outbox (request_id, payload) VALUES ($1, $2)").await?,
            client,
        })
    }
}

/// The pool: idle connections and the ones set aside by `set_size`.
struct Pool {
    idle: parking_lot::Mutex<Vec<Conn>>,
    reserve: parking_lot::Mutex<Vec<Conn>>,
    freed: tokio::sync::Notify,
}

impl Pool {
    async fn get(&self) -> Conn {
        loop {
            let freed = self.freed.notified();
            if let Some(c) = self.idle.lock().pop() {
                return c;
            }
            freed.await;
        }
    }

    fn put(&self, c: Conn) {
        self.idle.lock().push(c);
        self.freed.notify_one();
    }

    /// Between windows only (nothing checked out): `n` connections in use.
    fn set_size(&self, n: usize) {
        let (mut idle, mut reserve) = (self.idle.lock(), self.reserve.lock());
        while idle.len() > n {
            if let Some(c) = idle.pop() {
                reserve.push(c);
            }
        }
        while idle.len() < n {
            match reserve.pop() {
                Some(c) => idle.push(c),
                None => break,
            }
        }
    }
}

#[derive(Deserialize)]
struct CreateBody {
    project_id: Uuid,
    prompt: String,
    format: String,
    variations: Option<i32>,
    params: Option<serde_json::Value>,
}

fn price(format: &str) -> Option<i64> {
    match format {
        "banner" => Some(1),
        "image_hd" => Some(2),
        "social_post" => Some(1),
        "video_short" => Some(10),
        _ => None,
    }
}

fn refuse(status: u16, code: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .json(json!({"error": {"code": code, "message": code, "details": {}}}))
}

async fn create(req: HttpRequest, body: web::Bytes, pool: web::Data<Pool>) -> HttpResponse {
    let Some(token) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return refuse(401, "unauthenticated");
    };
    let hash: Vec<u8> = Sha256::digest(token.as_bytes()).to_vec();
    let Ok(b) = serde_json::from_slice::<CreateBody>(&body) else {
        return refuse(422, "validation_failed");
    };
    let variations = b.variations.unwrap_or(1);
    let (Some(unit), true, true) = (
        price(&b.format),
        (1..=4).contains(&variations),
        (1..=4000).contains(&b.prompt.chars().count()),
    ) else {
        return refuse(422, "validation_failed");
    };
    let cost = unit * i64::from(variations);
    let mut conn = pool.get().await;
    let answer = charge(&mut conn, &hash, &b, variations, cost).await;
    pool.put(conn);
    match answer {
        Ok(Ok((id, balance))) => HttpResponse::Accepted()
            .json(json!({"id": id, "status": "pending", "cost": cost, "credit_balance": balance})),
        Ok(Err(status)) => refuse(status, "refused"),
        Err(e) => {
            eprintln!("conventional create failed: {e}");
            refuse(500, "internal")
        }
    }
}

/// The reads and the transaction of one create: `Ok(Err(status))` for a refusal.
async fn charge(
    conn: &mut Conn,
    hash: &[u8],
    b: &CreateBody,
    variations: i32,
    cost: i64,
) -> Result<Result<(Uuid, i64), u16>, tokio_postgres::Error> {
    let Some(user) = conn.client.query_opt(&conn.token, &[&hash]).await? else {
        return Ok(Err(401));
    };
    let user: Uuid = user.get(0);
    let owner = conn
        .client
        .query_opt(&conn.project, &[&b.project_id])
        .await?;
    if owner.map(|r| r.get::<_, Uuid>(0)) != Some(user) {
        return Ok(Err(404));
    }
    let id = Uuid::now_v7();
    let payload = json!({
        "generation_request_id": id, "user_id": user, "project_id": b.project_id,
        "prompt": b.prompt, "format": b.format, "variations": variations, "cost": cost,
        "params": b.params.clone().unwrap_or_else(|| json!({})),
    })
    .to_string()
    .into_bytes();
    let (charge_s, ledger_s, request_s, outbox_s) = (
        conn.charge.clone(),
        conn.ledger.clone(),
        conn.request.clone(),
        conn.outbox.clone(),
    );
    let tx = conn.client.transaction().await?;
    let Some(row) = tx.query_opt(&charge_s, &[&user, &cost]).await? else {
        tx.rollback().await?;
        return Ok(Err(402));
    };
    let balance: i64 = row.get(0);
    tx.execute(&ledger_s, &[&user, &(-cost), &balance, &id])
        .await?;
    tx.execute(
        &request_s,
        &[
            &id,
            &user,
            &b.project_id,
            &b.prompt,
            &b.format,
            &variations,
            &cost,
        ],
    )
    .await?;
    tx.execute(&outbox_s, &[&id, &payload]).await?;
    tx.commit().await?;
    Ok(Ok((id, balance)))
}

/// The running baseline: its address, the relay's count, and how to stop it.
pub struct Conventional {
    pub addr: SocketAddr,
    pub confirmed: Arc<AtomicU64>,
    pool: Arc<Pool>,
    admin: Client,
    schema: String,
    runtime: Option<tokio::runtime::Runtime>,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Conventional {
    /// Creates the schema with `users` (their tokens and projects, a large balance each),
    /// opens the pool and the relay, and serves.
    pub async fn start(
        pg: &str,
        amqp: &str,
        exchange: &str,
        users: &[BenchUser],
    ) -> Res<Conventional> {
        let schema = format!("conv_{}", Uuid::new_v4().simple());
        let admin = pg_connect(pg).await?;
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path TO {schema}; {SCHEMA}"
            ))
            .await
            .map_err(|e| format!("schema: {e}"))?;
        load_users(&admin, users).await?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("conv-pg")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (pg_s, schema_s) = (pg.to_string(), schema.clone());
        let conns = runtime
            .spawn(async move {
                let mut v = Vec::with_capacity(POOL_MAX);
                for _ in 0..POOL_MAX {
                    v.push(Conn::open(&pg_s, &schema_s).await?);
                }
                Ok::<_, String>(v)
            })
            .await
            .map_err(|e| e.to_string())??;
        let pool = Arc::new(Pool {
            idle: parking_lot::Mutex::new(conns),
            reserve: parking_lot::Mutex::new(Vec::new()),
            freed: tokio::sync::Notify::new(),
        });
        let confirmed = Arc::new(AtomicU64::new(0));
        let relay = Relay {
            pg: pg.into(),
            schema: schema.clone(),
            amqp: amqp.into(),
            exchange: exchange.into(),
            confirmed: confirmed.clone(),
        };
        runtime.spawn(relay.run());
        let (addr, server, thread) = serve(pool.clone())?;
        Ok(Conventional {
            addr,
            confirmed,
            pool,
            admin,
            schema,
            runtime: Some(runtime),
            server,
            thread: Some(thread),
        })
    }

    pub fn set_pool_size(&self, n: usize) {
        self.pool.set_size(n);
    }

    pub async fn outbox_backlog(&self) -> Res<i64> {
        let row = self
            .admin
            .query_one(&format!("SELECT count(*) FROM {}.outbox", self.schema), &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    }

    /// Stops the server and the relay and drops the schema.
    pub async fn stop(mut self) {
        self.server.stop(true).await;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        if let Err(e) = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await
        {
            eprintln!("could not drop the baseline schema: {e}");
        }
    }
}

async fn load_users(admin: &Client, users: &[BenchUser]) -> Res<()> {
    let mut sql = String::from("BEGIN;");
    for u in users {
        let id = Uuid::new_v4();
        let hash = hex_bytes(&Sha256::digest(u.token.as_bytes()));
        sql.push_str(&format!(
            "INSERT INTO users VALUES ('{id}', 1000000000); \
             INSERT INTO tokens VALUES ('\\x{hash}', '{id}', now() + interval '1 day'); \
             INSERT INTO projects VALUES ('{}', '{id}');",
            Uuid::parse_str(&u.project).map_err(|e| e.to_string())?
        ));
    }
    sql.push_str("COMMIT; ANALYZE;");
    admin
        .batch_execute(&sql)
        .await
        .map_err(|e| format!("users: {e}"))
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn serve(
    pool: Arc<Pool>,
) -> Res<(
    SocketAddr,
    actix_web::dev::ServerHandle,
    std::thread::JoinHandle<()>,
)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("conv-http".into())
        .spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                let data = web::Data::from(pool);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route("/api/v1/generation/create", web::post().to(create))
                })
                .workers(HTTP_WORKERS)
                .disable_signals()
                .listen(listener);
                match server {
                    Ok(s) => {
                        let s = s.run();
                        let _ = tx.send(Ok(s.handle()));
                        let _ = s.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        })
        .map_err(|e| e.to_string())?;
    let handle = rx.recv().map_err(|e| e.to_string())??;
    Ok((addr, handle, thread))
}

/// The outbox relay: claim, publish with confirms, delete and mark `queued`, one transaction.
struct Relay {
    pg: String,
    schema: String,
    amqp: String,
    exchange: String,
    confirmed: Arc<AtomicU64>,
}

impl Relay {
    async fn run(self) {
        loop {
            if let Err(e) = self.session().await {
                eprintln!("conventional relay: {e}; restarting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn session(&self) -> Res<()> {
        let mut client = pg_connect(&self.pg).await?;
        client
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .await
            .map_err(|e| e.to_string())?;
        // Not through `amqp_connect`: that marks its I/O thread as the bench's own, and this
        // one is the baseline server's.
        let props = lapin::ConnectionProperties::default()
            .with_connection_name("bench-conventional-relay".to_string().into());
        let conn = lapin::Connection::connect(&self.amqp, props)
            .await
            .map_err(|e| format!("relay broker connection: {e}"))?;
        let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let n = self.batch(&mut client, &channel).await?;
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    async fn batch(&self, client: &mut Client, channel: &lapin::Channel) -> Res<usize> {
        let e = |e: tokio_postgres::Error| e.to_string();
        let tx = client.transaction().await.map_err(e)?;
        let rows = tx
            .query(
                "SELECT id, request_id, payload FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                &[&RELAY_BATCH_MAX],
            )
            .await
            .map_err(e)?;
        if rows.is_empty() {
            tx.commit().await.map_err(e)?;
            return Ok(0);
        }
        let mut confirms = FuturesUnordered::new();
        let (mut ids, mut requests) = (
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
        );
        for row in &rows {
            let (id, request, payload): (i64, Uuid, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(request.to_string().into());
            let confirm = channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    ROUTING_KEY.into(),
                    BasicPublishOptions::default(),
                    &payload,
                    props,
                )
                .await
                .map_err(|e| format!("publish: {e}"))?;
            confirms.push(confirm);
            ids.push(id);
            requests.push(request);
        }
        while let Some(c) = confirms.next().await {
            match c {
                Ok(Confirmation::Ack(_)) => {}
                // Not confirmed: the transaction rolls back and the rows are published again.
                other => return Err(format!("a publish was not confirmed: {other:?}")),
            }
        }
        tx.execute("DELETE FROM outbox WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(e)?;
        tx.execute(
            "UPDATE requests SET status = 'queued' WHERE id = ANY($1)",
            &[&requests],
        )
        .await
        .map_err(e)?;
        tx.commit().await.map_err(e)?;
        self.confirmed
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        Ok(rows.len())
    }
}
