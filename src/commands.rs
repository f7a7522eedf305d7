//! The operator commands (`verify`, `backup`, `user create`), run either by the server for the
//! control socket ([`crate::control`]) or by the CLI on a store it opened itself. Same code
//! either way.

use std::path::Path;

use storage::records::Role;
use storage::Store;

use crate::domain::{Email, Name, Password};
use crate::error::AppError;
use crate::services::users::{self, NewUser};

/// `(ok, lines)`: what the CLI prints and whether it exits 0.
pub type Answer = (bool, Vec<String>);

pub fn verify(store: &Store, progress: &mut dyn FnMut(&str)) -> Answer {
    let started = std::time::Instant::now();
    let report = store.snapshot().and_then(|snap| {
        storage::verify::verify(&snap, &mut |table, n| {
            progress(&format!("verify: {table}: {n} records checked"))
        })
    });
    match report {
        Ok(r) => {
            let counts = r
                .records
                .iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect::<Vec<_>>()
                .join(" ");
            let mut lines: Vec<String> = r
                .violations
                .iter()
                .map(|v| format!("VIOLATION: {v}"))
                .collect();
            lines.push(format!(
                "verify: {} ({} violations; records: {counts}; {} ms)",
                if r.ok() { "ok" } else { "FAILED" },
                r.violations.len(),
                started.elapsed().as_millis()
            ));
            (r.ok(), lines)
        }
        Err(e) => (false, vec![format!("verify: cannot read the store: {e}")]),
    }
}

pub fn backup(store: &Store, out: &Path, progress: &mut dyn FnMut(&str)) -> Answer {
    let result = store.snapshot().and_then(|snap| {
        storage::backup::backup(&snap, out, &mut |table, n| {
            progress(&format!("backup: {table}: {n} records"))
        })
    });
    match result {
        Ok(s) if s.verify.ok() => (
            true,
            vec![format!(
                "backup: wrote {} ({} records, {} bytes), verified; restore by stopping the server and copying it to <data dir>/{}",
                out.display(),
                s.records,
                s.bytes,
                storage::backup::store_file_name()
            )],
        ),
        Ok(s) => {
            let mut lines: Vec<String> = s.verify.violations.iter().map(|v| format!("VIOLATION: {v}")).collect();
            lines.push("backup: the copy failed verification and was removed".into());
            (false, lines)
        }
        Err(e) => (false, vec![format!("backup failed: {e}")]),
    }
}

pub struct UserCreateArgs {
    pub email: Email,
    pub password: Password,
    pub name: Name,
    pub role: Role,
}

pub fn parse_user_create(
    email: &str,
    password: String,
    name: Option<&str>,
    role: &str,
) -> Result<UserCreateArgs, AppError> {
    let email = Email::parse(email)?;
    let default_name = email
        .as_str()
        .split('@')
        .next()
        .unwrap_or("user")
        .to_string();
    Ok(UserCreateArgs {
        name: Name::parse(name.unwrap_or(&default_name), "name")?,
        password: Password::parse(password, "password")?,
        role: Role::parse(role)
            .ok_or_else(|| AppError::validation("role", "must be admin, agent or user"))?,
        email,
    })
}

pub(crate) fn created(u: &storage::records::UserRecord) -> Answer {
    (
        true,
        vec![format!(
            "created {} {} ({})",
            u.role.as_str(),
            u.email,
            u.id
        )],
    )
}

pub(crate) fn failed(e: AppError) -> Answer {
    match e {
        AppError::Validation { field, message } => (false, vec![format!("{field}: {message}")]),
        other => (false, vec![other.to_string()]),
    }
}

pub fn user_create_blocking(store: &Store, args: UserCreateArgs, signup_grant: u64) -> Answer {
    let hash = match crate::passwords::hash_password_now(args.password.expose()) {
        Ok(h) => h,
        Err(e) => return failed(e),
    };
    let new = NewUser {
        email: args.email,
        name: args.name,
        password_hash: hash,
        role: args.role,
        signup_grant,
    };
    match users::create_user_blocking(store, new) {
        Ok(u) => created(&u),
        Err(e) => failed(e),
    }
}

/// `copy to-postgres`: the embedded store in the data folder into the configured, empty
/// PostgreSQL database, in one transaction; both sides verified and their record counts
/// compared. Run with the server stopped (the store file is locked while it runs).
pub fn copy_to_postgres(config: &crate::config::Config, progress: &mut dyn FnMut(&str)) -> Answer {
    let Some(pg) = &config.database else {
        return no_database();
    };
    let file = config.data_dir.join(storage::backup::store_file_name());
    if !file.is_file() {
        // Opening would create an empty store, and copying it would move nothing.
        return (
            false,
            vec![format!("copy: there is no store at {}", file.display())],
        );
    }
    let source = match Store::open(&config.data_dir, &config.store_options()) {
        Ok(s) => s,
        Err(e) => {
            return (
                false,
                vec![format!("copy: cannot open the embedded store: {e}")],
            )
        }
    };
    let before = match checked(&source, "the embedded store", progress) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let copied = source.snapshot().and_then(|snap| {
        storage::pg::import::import(pg, snap, &mut |table, n| {
            progress(&format!("copy: {table}: {n} records"))
        })
    });
    source.shutdown();
    let copied = match copied {
        Ok(n) => n,
        Err(e) => return (false, vec![format!("copy: nothing was copied: {e}")]),
    };
    let target = match Store::connect_postgres(pg, &config.store_options()) {
        Ok(s) => s,
        Err(e) => return (false, vec![format!("copy: cannot open the copy: {e}")]),
    };
    compare(&before, &target, copied, &pg.describe(), progress)
}

/// `copy from-postgres --out DIR`: the configured PostgreSQL database, as of one moment, into a
/// new embedded store in DIR (what `CREATIVEFLOW_DATA_DIR` then names), verified and compared.
pub fn copy_from_postgres(
    config: &crate::config::Config,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Answer {
    let Some(pg) = &config.database else {
        return no_database();
    };
    let source = match Store::connect_postgres(pg, &config.store_options()) {
        Ok(s) => s,
        Err(e) => return (false, vec![format!("copy: {e}")]),
    };
    let before = match checked(&source, "the database", progress) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let file = out.join(storage::backup::store_file_name());
    let copied = storage::private_dir(out)
        .map_err(storage::StorageError::from)
        .and_then(|()| {
            storage::pg::export::export(pg, &file, &mut |table, n| {
                progress(&format!("copy: {table}: {n} records"))
            })
        });
    let copied = match copied {
        Ok(n) => n,
        Err(e) => return (false, vec![format!("copy: nothing was copied: {e}")]),
    };
    let target = match Store::open(out, &config.store_options()) {
        Ok(s) => s,
        Err(e) => return (false, vec![format!("copy: cannot open the copy: {e}")]),
    };
    let answer = compare(
        &before,
        &target,
        copied,
        &file.display().to_string(),
        progress,
    );
    target.shutdown();
    answer
}

fn no_database() -> Answer {
    (
        false,
        vec!["copy: no database is configured: set ODOO_DB_HOST (and ODOO_DB_*) or CREATIVEFLOW_DATABASE_URL".into()],
    )
}

/// Verifies a store before it is copied: a store with violations is not moved.
fn checked(
    store: &Store,
    what: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<storage::verify::Report, Answer> {
    let report = store.snapshot().and_then(|snap| {
        storage::verify::verify(&snap, &mut |table, n| {
            progress(&format!("verify {what}: {table}: {n} records checked"))
        })
    });
    match report {
        Ok(r) if r.ok() => Ok(r),
        Ok(r) => {
            let mut lines: Vec<String> = r
                .violations
                .iter()
                .map(|v| format!("VIOLATION: {v}"))
                .collect();
            lines.push(format!(
                "copy: {what} fails verification; nothing was copied"
            ));
            Err((false, lines))
        }
        Err(e) => Err((false, vec![format!("copy: cannot read {what}: {e}")])),
    }
}

/// Verifies the copy and compares its record counts with the source's.
fn compare(
    before: &storage::verify::Report,
    target: &Store,
    copied: u64,
    place: &str,
    progress: &mut dyn FnMut(&str),
) -> Answer {
    let after = match checked(target, "the copy", progress) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    if after.records != before.records {
        return (
            false,
            vec![format!(
                "copy: the copy at {place} verifies but its record counts differ: {:?} vs {:?}",
                before.records, after.records
            )],
        );
    }
    (
        true,
        vec![format!(
            "copy: {copied} records copied to {place}; both sides verify with the same record counts"
        )],
    )
}
