//! The PostgreSQL baseline: the money movement of a deduct as a guarded UPDATE plus a ledger
//! INSERT, one transaction per operation, on tables of the bench's own.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{spawn_callers, Res, Rng, Run, RunStyle, Tally};

/// `BENCH_PG` when it is not set.
pub const DEFAULT_PG: &str = "host=127.0.0.1 user=postgres dbname=test";

pub async fn pg_connect(conn: &str) -> Res<Client> {
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

/// Runs `sql` on `admin` (libpq form) with the blocking client, on a thread of its own so it
/// may be called from inside a runtime too: creating and dropping a part's database.
pub fn pg_admin_sql(admin: &str, sql: String) -> Res<()> {
    let admin = admin.to_string();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .map_err(|e| format!("cannot reach PostgreSQL ({admin}): {e}"))?;
        c.batch_execute(&sql).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_string())?
}

/// `SHOW {name}`, or what went wrong in its place.
pub async fn pg_show(admin: &Client, name: &str) -> String {
    admin
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_else(|e| format!("? ({e})"))
}

/// The server settings that decide what a commit costs.
pub struct PgServer {
    pub version: String,
    pub synchronous_commit: String,
    pub fsync: String,
}

impl PgServer {
    pub async fn read(admin: &Client) -> PgServer {
        PgServer {
            version: pg_show(admin, "server_version").await,
            synchronous_commit: pg_show(admin, "synchronous_commit").await,
            fsync: pg_show(admin, "fsync").await,
        }
    }

    /// How the summary names the server.
    pub fn settings(&self) -> String {
        format!(
            "PostgreSQL {}, synchronous_commit={}, fsync={}",
            self.version, self.synchronous_commit, self.fsync
        )
    }
}

/// The tables `{prefix}_accounts` (`accounts` rows holding `balance`) and `{prefix}_ledger`.
pub struct PgTables {
    pub prefix: &'static str,
    pub accounts: usize,
    pub balance: i64,
}

impl PgTables {
    /// Creates the tables, fills the accounts, opens `clients` connections to `conn` and hands
    /// them to `body`; the tables are dropped again whatever happened after they were made.
    pub async fn with<T, F, Fut>(
        &self,
        admin: &Client,
        conn: &str,
        clients: usize,
        body: F,
    ) -> Res<T>
    where
        F: FnOnce(PgLoad) -> Fut,
        Fut: Future<Output = Res<T>>,
    {
        let p = self.prefix;
        admin
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {p}_ledger; DROP TABLE IF EXISTS {p}_accounts;
                 CREATE TABLE {p}_accounts(id int primary key, balance bigint not null);
                 CREATE TABLE {p}_ledger(id bigserial primary key, account_id int not null,
                     amount bigint not null, created_at timestamptz default now());"
            ))
            .await
            .map_err(|e| e.to_string())?;
        let result = async {
            let accounts =
                i32::try_from(self.accounts).map_err(|_| "too many accounts".to_string())?;
            admin
                .execute(
                    &format!(
                        "INSERT INTO {p}_accounts(id, balance) SELECT g, $1 FROM generate_series(1, $2) g"
                    ),
                    &[&self.balance, &accounts],
                )
                .await
                .map_err(|e| e.to_string())?;
            admin
                .batch_execute(&format!("VACUUM ANALYZE {p}_accounts"))
                .await
                .map_err(|e| e.to_string())?;
            let mut all = Vec::with_capacity(clients);
            for _ in 0..clients {
                all.push(pg_connect(conn).await?);
            }
            body(PgLoad {
                prefix: p,
                accounts,
                clients: all,
            })
            .await
        }
        .await;
        if let Err(e) = admin
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {p}_ledger; DROP TABLE IF EXISTS {p}_accounts;"
            ))
            .await
        {
            eprintln!("could not drop the PostgreSQL bench tables: {e}");
        }
        result
    }

    /// Rows in the ledger table.
    pub async fn ledger_rows(&self, admin: &Client) -> Res<i64> {
        Ok(admin
            .query_one(&format!("SELECT count(*) FROM {}_ledger", self.prefix), &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0))
    }
}

/// The client connections of a baseline, between windows.
pub struct PgLoad {
    prefix: &'static str,
    accounts: i32,
    clients: Vec<Client>,
}

impl PgLoad {
    /// Every client loops on transactions for `duration`.
    pub async fn window(&mut self, duration: Duration, seed: u64) -> Res<Run> {
        let (prefix, accounts) = (self.prefix, self.accounts);
        let clients = std::mem::take(&mut self.clients);
        let (clients, run, _) = spawn_callers(
            clients,
            duration,
            seed,
            |mut client, rng, deadline| async move {
                let tally = client_loop(&mut client, prefix, accounts, deadline, rng).await?;
                Ok((client, tally, ()))
            },
        )
        .await?;
        self.clients = clients;
        Ok(run)
    }

    /// A window that is printed and not counted; none when `duration` is zero.
    pub async fn warm_up(&mut self, duration: Duration, style: &RunStyle) -> Res<()> {
        if !duration.is_zero() {
            let warm = self.window(duration, 1).await?;
            warm.print("warm-up (not counted)", style);
        }
        Ok(())
    }
}

/// One client on `{table_prefix}_accounts` / `_ledger`: one transaction per op (guarded UPDATE,
/// ledger INSERT, COMMIT) until `deadline`.
async fn client_loop(
    client: &mut Client,
    table_prefix: &str,
    accounts: i32,
    deadline: Instant,
    mut rng: Rng,
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
                tally.fail(3, || format!("postgres op failed: {e}"));
                if client.is_closed() {
                    return Err(format!("the connection closed: {e}"));
                }
            }
        }
    }
    Ok(tally)
}
