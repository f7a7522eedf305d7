//! What the environment asks of a run.

use crate::common::*;

/// The parts `BENCH_SKIP` may name (the create phase always runs: the others need its figures).
const PARTS: &[&str] = &[
    "conventional",
    "pgstore",
    "status",
    "lapin",
    "postgres",
    "backlog",
];

pub struct Cfg {
    pub seconds: u64,
    pub warmup: u64,
    pub connections: usize,
    pub users: usize,
    pub pg_clients: usize,
    pub pg: String,
    pub amqp: String,
    pub backlog: u64,
    pub client_threads: usize,
    pub prompt_chars: usize,
    pub skip: Skip,
}

impl Cfg {
    pub fn from_env() -> Res<Cfg> {
        let skip = Skip::from_env(PARTS)?;
        Ok(Cfg {
            seconds: env_num("BENCH_SECONDS", 10u64)?.max(1),
            warmup: env_num("BENCH_WARMUP_SECONDS", 2)?,
            connections: env_num("BENCH_CONNECTIONS", 64usize)?.max(1),
            users: env_num("BENCH_USERS", 1000usize)?.max(1),
            pg_clients: env_num("BENCH_PG_CLIENTS", 16usize)?.max(1),
            pg: env_str("BENCH_PG", DEFAULT_PG),
            amqp: env_str("BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            backlog: env_num("BENCH_BACKLOG", 30_000u64)?.max(1),
            client_threads: env_num("BENCH_CLIENT_THREADS", 1usize)?.max(1),
            prompt_chars: env_num("BENCH_PROMPT_CHARS", 120usize)?.clamp(1, 4000),
            skip,
        })
    }

    pub fn runs(&self, part: &str) -> bool {
        self.skip.runs(part)
    }
}
