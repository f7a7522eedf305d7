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
