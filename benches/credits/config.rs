//! What the environment asks of a run.

use std::path::PathBuf;

use crate::common::*;

/// The parts `BENCH_SKIP` may name, in the order they run.
const PARTS: &[&str] = &["deduct", "postgres", "memory", "startup", "pgstore"];

pub struct Config {
    pub seconds: u64,
    pub warmup_seconds: u64,
    pub callers: usize,
    pub pg_clients: usize,
    pub accounts: usize,
    pub pg: String,
    pub users: usize,
    pub ledger_entries: u64,
    pub touch: usize,
    pub startup_runs: usize,
    pub data_dir: Option<PathBuf>,
    pub skip: Skip,
}

impl Config {
    pub fn from_env() -> Res<Config> {
        let skip = Skip::from_env(PARTS)?;
        Ok(Config {
            seconds: env_num("BENCH_SECONDS", 10)?,
            warmup_seconds: env_num("BENCH_WARMUP_SECONDS", 1)?,
            callers: env_num("BENCH_CALLERS", 64)?.max(1),
            pg_clients: env_num("BENCH_PG_CLIENTS", 16)?.max(1),
            accounts: env_num("BENCH_ACCOUNTS", 10_000)?.max(1),
            pg: env_str("BENCH_PG", DEFAULT_PG),
            users: env_num("BENCH_USERS", 1_000_000)?.max(2),
            ledger_entries: env_num("BENCH_LEDGER_ENTRIES", 10_000_000)?,
            touch: env_num("BENCH_TOUCH", 10_000)?.max(1),
            startup_runs: env_num("BENCH_STARTUP_RUNS", 3)?.max(1),
            data_dir: std::env::var_os("BENCH_DATA_DIR").map(PathBuf::from),
            skip,
        })
    }

    pub fn runs(&self, part: &str) -> bool {
        self.skip.runs(part)
    }

    pub fn temp_dir(&self, what: &str) -> Res<tempfile::TempDir> {
        temp_dir(what, self.data_dir.as_deref())
    }
}
