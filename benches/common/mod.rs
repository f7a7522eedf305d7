//! What both load drivers share: number parsing and printing, the random picker, latency
//! tallies, and the PostgreSQL baseline (guarded UPDATE + ledger INSERT per transaction).
#![allow(dead_code)] // each bench uses its own subset

use std::time::{Duration, Instant};

pub type Res<T> = Result<T, String>;

pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Res<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// xorshift64*: enough randomness to pick accounts, no dependency, no lock.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

/// Latencies (µs) of the applied operations of one caller, and what went wrong.
#[derive(Default)]
pub struct Tally {
    pub lat_us: Vec<u32>,
    pub refused: u64,
    pub errors: u64,
}

impl Tally {
    pub fn record(&mut self, started: Instant) {
        self.lat_us
            .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }

    pub fn merge(tallies: Vec<Tally>) -> Tally {
        let mut all = Tally::default();
        for t in tallies {
            all.lat_us.extend(t.lat_us);
            all.refused += t.refused;
            all.errors += t.errors;
        }
        all.lat_us.sort_unstable();
        all
    }
}

/// What one timed load phase measured.
#[derive(Clone, Copy, Default)]
pub struct Run {
    pub ops: u64,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub refused: u64,
    pub errors: u64,
}

impl Run {
    pub fn from(tally: Tally, elapsed: Duration) -> Run {
        let pct = |q: f64| -> f64 {
            if tally.lat_us.is_empty() {
                return 0.0;
            }
            let i = ((tally.lat_us.len() - 1) as f64 * q).round() as usize;
            f64::from(tally.lat_us[i]) / 1000.0
        };
        Run {
            ops: tally.lat_us.len() as u64,
            elapsed,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: pct(1.0),
            refused: tally.refused,
            errors: tally.errors,
        }
    }

    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn pg_connect(conn: &str) -> Res<tokio_postgres::Client> {
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(conn, tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| format!("connecting to {conn:?} timed out"))?
    .map_err(|e| format!("{e} ({conn:?})"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection error: {e}");
        }
    });
    Ok(client)
}

/// Every client loops on `{table_prefix}_accounts` / `_ledger`: one transaction per op (guarded UPDATE, ledger INSERT, COMMIT).
pub async fn pg_load(
    clients: Vec<tokio_postgres::Client>,
    table_prefix: &'static str,
    accounts: i32,
    duration: Duration,
    seed: u64,
) -> Res<(Vec<tokio_postgres::Client>, Run)> {
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, mut client)| {
            tokio::spawn(async move {
                let tally = pg_client_loop(
                    &mut client,
                    table_prefix,
                    accounts,
                    deadline,
                    seed * 1_000_003 + c as u64 + 1,
                )
                .await;
                (client, tally)
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(handles.len());
    let mut tallies = Vec::with_capacity(handles.len());
    for h in handles {
        let (client, tally) = h.await.map_err(|e| format!("a client task failed: {e}"))?;
        clients.push(client);
        tallies.push(tally?);
    }
    Ok((clients, Run::from(Tally::merge(tallies), started.elapsed())))
}

async fn pg_client_loop(
    client: &mut tokio_postgres::Client,
    table_prefix: &str,
    accounts: i32,
    deadline: Instant,
    seed: u64,
) -> Res<Tally> {
    let update = client
        .prepare(&format!(
            "UPDATE {table_prefix}_accounts SET balance = balance - 1 WHERE id = $1 AND balance >= 1"
        ))
        .await
        .map_err(|e| e.to_string())?;
    let insert = client
        .prepare(&format!(
            "INSERT INTO {table_prefix}_ledger(account_id, amount) VALUES ($1, $2)"
        ))
        .await
        .map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let id = rng.below(accounts as usize) as i32 + 1;
        let t = Instant::now();
        let op = async {
            let tx = client.transaction().await?;
            if tx.execute(&update, &[&id]).await? != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            tx.execute(&insert, &[&id, &-1i64]).await?;
            tx.commit().await?;
            Ok::<bool, tokio_postgres::Error>(true)
        };
        match op.await {
            Ok(true) => tally.record(t),
            Ok(false) => tally.refused += 1,
            Err(e) => {
                tally.errors += 1;
                if tally.errors <= 3 {
                    eprintln!("postgres op failed: {e}");
                }
                if client.is_closed() {
                    return Err(format!("the connection closed: {e}"));
                }
            }
        }
    }
    Ok(tally)
}
