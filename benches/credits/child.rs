//! The re-executed child processes: how the parent starts one and reads what it reports.
//!
//! The child is this same binary with [`CHILD_ENV`] naming its measurement and
//! [`CHILD_DIR_ENV`] the store; it prints `@@credits key value` lines for the parent and
//! anything else is echoed by the parent as the child's own output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::common::*;
use crate::phases::{memory, startup};

/// Set in the environment of the re-executed child: which measurement it runs.
pub const CHILD_ENV: &str = "CREDITS_BENCH_CHILD";
const CHILD_DIR_ENV: &str = "CREDITS_BENCH_DIR";
const CHILD_USER_ENV: &str = "CREDITS_BENCH_USER";
/// Lines a child prints for the parent start with this.
const CHILD_PREFIX: &str = "@@credits ";

/// The child's side: runs the measurement `role` names on the store the parent named.
pub fn child_main(role: &str) -> Res<()> {
    let dir = PathBuf::from(
        std::env::var_os(CHILD_DIR_ENV).ok_or_else(|| format!("{CHILD_DIR_ENV} is not set"))?,
    );
    match role {
        "memory" => memory::child_memory(&dir),
        "startup" => startup::child_startup(&dir),
        other => Err(format!("unknown child role {other:?}")),
    }
}

/// The account the parent asked the child to charge.
pub fn child_user() -> Res<Uuid> {
    std::env::var(CHILD_USER_ENV)
        .map_err(|_| format!("{CHILD_USER_ENV} is not set"))?
        .parse()
        .map_err(|e| format!("{CHILD_USER_ENV}: {e}"))
}

/// The child's side: one figure for the parent.
pub fn report(key: &str, value: impl std::fmt::Display) {
    println!("{CHILD_PREFIX}{key} {value}");
}

/// The parent's side: runs the `role` child on the store in `dir` and returns what it
/// reported, and how long the whole process took.
pub fn run_child(
    role: &str,
    dir: &Path,
    user: Option<Uuid>,
) -> Res<(HashMap<String, String>, Duration)> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, role)
        .env(CHILD_DIR_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(u) = user {
        cmd.env(CHILD_USER_ENV, u.to_string());
    }
    let t = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the {role} child: {e}"))?;
    let wall = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut values = HashMap::new();
    for line in stdout.lines() {
        match line.strip_prefix(CHILD_PREFIX) {
            Some(kv) => {
                if let Some((k, v)) = kv.split_once(' ') {
                    values.insert(k.to_string(), v.to_string());
                }
            }
            None => println!("  [{role}] {line}"),
        }
    }
    if !out.status.success() {
        return Err(format!("the {role} child failed ({})", out.status));
    }
    Ok((values, wall))
}

/// The parent's side: one reported figure.
pub fn value<T: std::str::FromStr>(values: &HashMap<String, String>, key: &str) -> Res<T> {
    values
        .get(key)
        .ok_or_else(|| format!("the child did not report {key}"))?
        .parse()
        .map_err(|_| format!("the child reported an unreadable {key}"))
}
