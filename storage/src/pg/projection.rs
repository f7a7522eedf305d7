//! The typed columns of the money tables: decoded from the record the writer is putting and
//! written in the same statement, so plain SQL can read them and the database's own
//! constraints (balances never below zero, one ledger entry per chain position, unique invoice
//! numbers) hold whatever a node does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::types::ToSql;

use crate::codec::decode;
use crate::records::{AccountRecord, GenerationRecord, InvoiceRecord, LedgerEntry};
use crate::{StorageError, Table};

/// A statement parameter.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// The typed columns of `table` (empty for a plain key/value table).
pub fn columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Accounts => &["user_id", "balance", "next_seq", "updated_at"],
        Table::Ledger => &[
            "id",
            "user_id",
            "seq",
            "amount",
            "balance_after",
            "kind",
            "description",
            "generation_request_id",
            "invoice_id",
            "created_at",
        ],
        Table::Invoices => &[
            "id",
            "number",
            "user_id",
            "provider",
            "amount_minor",
            "currency",
            "status",
            "created_at",
        ],
        Table::Generations => &[
            "id",
            "user_id",
            "project_id",
            "status",
            "format",
            "variations",
            "cost",
            "created_at",
            "updated_at",
        ],
        _ => &[],
    }
}

/// The values of [`columns`] for a record being put, in the same order.
pub fn values(table: Table, value: &[u8]) -> Result<Vec<Param>, StorageError> {
    Ok(match table {
        Table::Accounts => {
            let a: AccountRecord = decode(value)?;
            vec![
                Box::new(a.user_id),
                Box::new(bigint(a.balance, "balance")?),
                Box::new(bigint(a.next_seq, "next_seq")?),
                Box::new(time(a.updated_at_us)),
            ]
        }
        Table::Ledger => {
            let e: LedgerEntry = decode(value)?;
            vec![
                Box::new(e.id),
                Box::new(e.user_id),
                Box::new(bigint(e.seq, "seq")?),
                Box::new(e.amount),
                Box::new(bigint(e.balance_after, "balance_after")?),
                Box::new(e.kind.as_str()),
                Box::new(e.description),
                Box::new(e.generation_request_id),
                Box::new(e.invoice_id),
                Box::new(time(e.created_at_us)),
            ]
        }
        Table::Invoices => {
            let i: InvoiceRecord = decode(value)?;
            vec![
                Box::new(i.id),
                Box::new(i.number),
                Box::new(i.user_id),
                Box::new(i.provider.as_str()),
                Box::new(bigint(i.amount_minor, "amount_minor")?),
                Box::new(i.currency),
                Box::new(i.status),
                Box::new(time(i.created_at_us)),
            ]
        }
        Table::Generations => {
            let g: GenerationRecord = decode(value)?;
            vec![
                Box::new(g.id),
                Box::new(g.user_id),
                Box::new(g.project_id),
                Box::new(g.status.as_str()),
                Box::new(g.format),
                Box::new(i16::from(g.variations)),
                Box::new(bigint(g.cost, "cost")?),
                Box::new(time(g.created_at_us)),
                Box::new(time(g.updated_at_us)),
            ]
        }
        _ => Vec::new(),
    })
}

/// What a multi-row insert does with a key already stored.
#[derive(Clone, Copy)]
pub enum Conflict {
    /// Replace the stored row (an upsert).
    Update,
    /// Keep the stored row and skip this one (the statement's row count tells).
    Nothing,
    /// Fail the statement (a unique violation).
    Refuse,
}

/// The upsert of one row of `table`: key, value and its typed columns.
pub fn upsert_sql(table: Table, table_name: &str) -> String {
    rows_sql(table, table_name, 1, Conflict::Update)
}

/// An insert of `rows` rows of `table` (key, value and its typed columns each), parameters
/// numbered row after row.
pub fn rows_sql(table: Table, table_name: &str, rows: usize, conflict: Conflict) -> String {
    let cols = columns(table);
    let mut names = vec!["k", "v"];
    names.extend_from_slice(cols);
    let width = names.len();
    let tuples: Vec<String> = (0..rows.max(1))
        .map(|r| {
            let placeholders: Vec<String> =
                (1..=width).map(|i| format!("${}", r * width + i)).collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    let on_conflict = match conflict {
        Conflict::Update => {
            let updates: Vec<String> = names[1..]
                .iter()
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            format!(" ON CONFLICT (k) DO UPDATE SET {}", updates.join(", "))
        }
        Conflict::Nothing => " ON CONFLICT (k) DO NOTHING".to_string(),
        Conflict::Refuse => String::new(),
    };
    format!(
        "INSERT INTO {table_name} ({}) VALUES {}{on_conflict}",
        names.join(", "),
        tuples.join(", ")
    )
}

/// u64 amounts fit PostgreSQL's bigint or the set is refused (never truncated).
fn bigint(v: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Engine(format!("{what} {v} does not fit a bigint")))
}

fn time(us: i64) -> SystemTime {
    match u64::try_from(us) {
        Ok(us) => UNIX_EPOCH + Duration::from_micros(us),
        Err(_) => UNIX_EPOCH - Duration::from_micros(us.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_table_upserts_key_and_value_only() {
        assert_eq!(
            upsert_sql(Table::Users, "cf_users"),
            "INSERT INTO cf_users (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
        );
    }

    #[test]
    fn a_multi_row_insert_numbers_parameters_row_after_row() {
        assert_eq!(
            rows_sql(Table::Users, "cf_users", 2, Conflict::Nothing),
            "INSERT INTO cf_users (k, v) VALUES ($1, $2), ($3, $4) ON CONFLICT (k) DO NOTHING"
        );
    }

    #[test]
    fn the_account_upsert_carries_its_typed_columns() {
        let sql = upsert_sql(Table::Accounts, "cf_accounts");
        assert!(sql.contains("(k, v, user_id, balance, next_seq, updated_at)"));
        assert!(sql.contains("$6"));
        assert!(sql.contains("balance = EXCLUDED.balance"));
    }
}
