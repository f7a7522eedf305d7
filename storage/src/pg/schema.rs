//! Schema migrations, versioned in the repository (`storage/migrations/`) and applied at
//! start-up under a PostgreSQL advisory lock, so nodes starting together migrate once.

use super::batch::describe;
use crate::{StorageError, Table};

/// Every migration in order: (version, what it does, SQL). Append only; never edit one that
/// has shipped.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "tables of the storage interface, typed money columns, operator views",
        include_str!("../../migrations/0001_store.sql"),
    ),
    (
        2,
        "attempt windows shared by the nodes (rate limits)",
        include_str!("../../migrations/0002_attempt_windows.sql"),
    ),
];

/// The advisory lock key the migrations run under ("cf-migr" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x0063_662d_6d69_6772;

/// The table of a storage table in PostgreSQL.
pub fn table_name(table: Table) -> String {
    format!("cf_{}", table.name())
}

/// Applies the migrations this database has not seen, each in its own transaction, while
/// holding the advisory lock (a second node waits, then finds nothing left to do). Returns
/// the versions applied now. A database at a newer version than this build knows is refused.
pub fn migrate(client: &mut postgres::Client) -> Result<Vec<i32>, StorageError> {
    let pg = |e: postgres::Error| StorageError::Engine(format!("migration: {}", describe(&e)));
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .map_err(pg)?;
    let result = apply_missing(client);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]);
    let applied = result?;
    unlocked.map_err(pg)?;
    Ok(applied)
}

fn apply_missing(client: &mut postgres::Client) -> Result<Vec<i32>, StorageError> {
    let pg = |e: postgres::Error| StorageError::Engine(format!("migration: {}", describe(&e)));
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS cf_schema_migrations (
                version integer PRIMARY KEY,
                description text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .map_err(pg)?;
    let newest: Option<i32> = client
        .query_one("SELECT max(version) FROM cf_schema_migrations", &[])
        .map_err(pg)?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(v) = newest.filter(|v| *v > known) {
        return Err(StorageError::Engine(format!(
            "the database is at schema version {v}, newer than this build knows ({known}); \
             run the newer build"
        )));
    }
    let mut applied = Vec::new();
    for (version, description, sql) in MIGRATIONS {
        if newest.is_some_and(|n| n >= *version) {
            continue;
        }
        let mut txn = client.transaction().map_err(pg)?;
        txn.batch_execute(sql).map_err(pg)?;
        txn.execute(
            "INSERT INTO cf_schema_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .map_err(pg)?;
        txn.commit().map_err(pg)?;
        tracing::info!(version, description, "database migrated");
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_storage_table_has_its_table_in_the_migrations() {
        let sql: String = MIGRATIONS.iter().map(|m| m.2).collect();
        for t in Table::ALL {
            let create = format!("CREATE TABLE {} (", table_name(t));
            assert!(
                sql.contains(&create),
                "no migration creates {}",
                table_name(t)
            );
        }
    }

    #[test]
    fn versions_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
