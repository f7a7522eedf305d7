//! `creativeflow backup`: a consistent copy of the store taken from one read snapshot while
//! writes go on. The copy is an ordinary store file: restoring is putting it in place of
//! `creativeflow.redb` in a stopped server's data folder.

use std::path::Path;

use redb::{ReadTransaction, ReadableTable};

use crate::store::{ensure_tables, open_database, DB_FILE};
use crate::verify::{verify, Report};
use crate::{StorageError, Table};

/// Records copied per write transaction of the copy: bounds memory and shows progress.
const COPY_CHUNK_RECORDS: u64 = 50_000;

#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub records: u64,
    pub bytes: u64,
    pub verify: Report,
}

/// Copies every table of `snapshot` into a new store file at `out`. The file appears at `out`
/// only once it is complete, durable and verified; a failed backup leaves nothing there.
pub fn backup(
    snapshot: &ReadTransaction,
    out: &Path,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<BackupSummary, StorageError> {
    if out.exists() {
        return Err(StorageError::Open {
            path: out.display().to_string(),
            reason: "the file exists already; backups never overwrite".into(),
        });
    }
    let tmp = out.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    // A copy of every balance and password hash: owner-only from its first byte.
    crate::store::private_file(&tmp)?;
    let result = copy_into(snapshot, &tmp, progress);
    match result {
        Ok(summary) if summary.verify.ok() => {
            std::fs::rename(&tmp, out)?;
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(summary)
        }
        Ok(summary) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn copy_into(
    snapshot: &ReadTransaction,
    tmp: &Path,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<BackupSummary, StorageError> {
    let db = open_database(tmp, 64 * 1024 * 1024)?;
    ensure_tables(&db)?;
    let mut records = 0u64;
    for table in Table::ALL {
        let source = snapshot.open_table(table.def())?;
        let mut iter = source.iter()?;
        let mut copied = 0u64;
        loop {
            let txn = db.begin_write()?;
            let mut more = false;
            {
                let mut dest = txn.open_table(table.def())?;
                for item in iter.by_ref() {
                    let (k, v) = item?;
                    dest.insert(k.value(), v.value())?;
                    copied += 1;
                    if copied.is_multiple_of(COPY_CHUNK_RECORDS) {
                        more = true;
                        break;
                    }
                }
            }
            txn.commit()?;
            if !more {
                break;
            }
            progress(table.name(), copied);
        }
        records += copied;
    }
    let verify = {
        let txn = redb::ReadableDatabase::begin_read(&db)?;
        verify(&txn, progress)?
    };
    drop(db);
    let bytes = std::fs::metadata(tmp)?.len();
    Ok(BackupSummary {
        records,
        bytes,
        verify,
    })
}

/// The file name inside a data folder that a backup replaces when restoring.
pub fn store_file_name() -> &'static str {
    DB_FILE
}
