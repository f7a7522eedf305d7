//! An embedded store → an empty PostgreSQL database, in one transaction: every record as the
//! embedded store holds it, the money tables' typed columns filled on the way (so the
//! database's constraints check the copy). How a customer moves to several nodes.

use std::sync::mpsc;

use postgres::types::ToSql;
use redb::{ReadableTable, ReadableTableMetadata};

use super::batch::describe;
use super::projection;
use super::schema::{self, table_name};
use super::settings::PgSettings;
use crate::{StorageError, Table, WholeSnapshot};

/// Rows written between two progress reports.
const PROGRESS_EVERY_ROWS: u64 = 10_000;

/// Copies everything `source` holds into the database, which must be empty (only the meta
/// record a node writes on start may be there; it is replaced by the source's). Returns how
/// many records were written; nothing is written unless all are.
pub fn import(
    settings: &PgSettings,
    source: WholeSnapshot,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<u64, StorageError> {
    let (tx, rx) = mpsc::channel::<(Table, u64)>();
    let settings = settings.clone();
    // The blocking client drives its own runtime: never on the caller's (maybe async) thread.
    let worker = std::thread::Builder::new()
        .name("pg-import".into())
        .spawn(move || copy_in(&settings, &source, &tx))?;
    for (table, n) in rx {
        progress(table.name(), n);
    }
    worker
        .join()
        .map_err(|_| StorageError::Engine("the import thread panicked".into()))?
}

fn copy_in(
    settings: &PgSettings,
    source: &redb::ReadTransaction,
    tx: &mpsc::Sender<(Table, u64)>,
) -> Result<u64, StorageError> {
    let pg = |e: postgres::Error| StorageError::Engine(format!("import: {}", describe(&e)));
    let mut client = settings.connect()?;
    schema::migrate(&mut client)?;
    let mut txn = client.transaction().map_err(pg)?;
    refuse_unless_empty(&mut txn)?;
    txn.batch_execute(&format!("DELETE FROM {}", table_name(Table::Meta)))
        .map_err(pg)?;
    let mut total = 0;
    for table in Table::ALL {
        let from = source.open_table(table.def())?;
        if from.len()? == 0 {
            continue;
        }
        let statement = txn
            .prepare(&projection::upsert_sql(table, &table_name(table)))
            .map_err(pg)?;
        let mut copied = 0u64;
        for item in from.iter()? {
            let (k, v) = item?;
            let (key, value) = (k.value(), v.value());
            let typed = projection::values(table, value)?;
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&key, &value];
            params.extend(typed.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)));
            txn.execute(&statement, &params).map_err(pg)?;
            copied += 1;
            if copied.is_multiple_of(PROGRESS_EVERY_ROWS) {
                let _ = tx.send((table, copied));
            }
        }
        let _ = tx.send((table, copied));
        total += copied;
    }
    // Nodes should be stopped for a copy; should one run, it forgets everything it cached.
    txn.execute(
        "SELECT pg_notify($1, $2)",
        &[&super::notify::CHANNEL, &super::notify::EVERYTHING],
    )
    .map_err(pg)?;
    txn.commit().map_err(pg)?;
    Ok(total)
}

/// A move into a database that already holds data would merge two stores: refused.
fn refuse_unless_empty(txn: &mut postgres::Transaction<'_>) -> Result<(), StorageError> {
    for table in Table::ALL.into_iter().filter(|t| *t != Table::Meta) {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", table_name(table));
        let any: bool = txn
            .query_one(&sql, &[])
            .map_err(|e| StorageError::Engine(describe(&e)))?
            .get(0);
        if any {
            return Err(StorageError::Open {
                path: table_name(table),
                reason: "the database already holds records; copy into an empty database".into(),
            });
        }
    }
    Ok(())
}
