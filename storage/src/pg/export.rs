//! PostgreSQL → an embedded store file: every table as of one moment (a repeatable-read,
//! read-only transaction), written into a fresh redb file that is a complete store. It is how
//! `verify` and `backup` read a PostgreSQL store (the same checks as the embedded store's, on
//! one consistent view), and how a customer moves back to a single node.

use std::path::Path;
use std::sync::mpsc;

use postgres::IsolationLevel;

use super::batch::describe;
use super::schema::table_name;
use super::settings::PgSettings;
use crate::{StorageError, Table};

/// Rows read per query while copying (keyset pages of one table).
const EXPORT_PAGE_ROWS: i64 = 10_000;

/// Copies the database into a new store file at `dest` (which must not exist) and returns how
/// many records it wrote. `progress(table, records_so_far)` is called after each page.
pub fn export(
    settings: &PgSettings,
    dest: &Path,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<u64, StorageError> {
    if dest.exists() {
        return Err(StorageError::Open {
            path: dest.display().to_string(),
            reason: "already exists; export writes a new file".into(),
        });
    }
    let (tx, rx) = mpsc::channel::<(Table, u64)>();
    let (settings, dest_owned) = (settings.clone(), dest.to_path_buf());
    // The blocking client drives its own runtime: never on the caller's (maybe async) thread.
    let worker = std::thread::Builder::new()
        .name("pg-export".into())
        .spawn(move || copy_out(&settings, &dest_owned, &tx))?;
    for (table, n) in rx {
        progress(table.name(), n);
    }
    let result = worker
        .join()
        .map_err(|_| StorageError::Engine("the export thread panicked".into()))?;
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

fn copy_out(
    settings: &PgSettings,
    dest: &Path,
    tx: &mpsc::Sender<(Table, u64)>,
) -> Result<u64, StorageError> {
    let pg = |e: postgres::Error| StorageError::Engine(format!("export: {}", describe(&e)));
    let mut client = settings.connect()?;
    let mut txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg)?;
    let db = redb::Builder::new()
        .create(dest)
        .map_err(|e| StorageError::Open {
            path: dest.display().to_string(),
            reason: e.to_string(),
        })?;
    let mut total = 0;
    for table in Table::ALL {
        let mut w = db.begin_write()?;
        // One durable commit at the end covers every table.
        w.set_durability(redb::Durability::None)
            .map_err(|e| StorageError::Engine(e.to_string()))?;
        let mut copied = 0u64;
        {
            let mut out = w.open_table(table.def())?;
            let sql = format!(
                "SELECT k, v FROM {} WHERE $3 OR k > $1 ORDER BY k LIMIT $2",
                table_name(table)
            );
            let mut after: Vec<u8> = Vec::new();
            let mut first_page = true;
            loop {
                let rows = txn
                    .query(&sql, &[&after, &EXPORT_PAGE_ROWS, &first_page])
                    .map_err(pg)?;
                first_page = false;
                for row in &rows {
                    let (k, v): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
                    out.insert(k.as_slice(), v.as_slice())?;
                    after = k;
                }
                copied += rows.len() as u64;
                let _ = tx.send((table, copied));
                if (rows.len() as i64) < EXPORT_PAGE_ROWS {
                    break;
                }
            }
        }
        w.commit()?;
        total += copied;
    }
    let mut last = db.begin_write()?;
    last.set_durability(redb::Durability::Immediate)
        .map_err(|e| StorageError::Engine(e.to_string()))?;
    last.commit()?;
    txn.commit().map_err(pg)?;
    Ok(total)
}
