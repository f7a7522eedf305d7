//! What both load drivers share: environment and parts, number printing, the random picker,
//! latency tallies and the caller loops that fill them, the summary table, the PostgreSQL
//! baseline (guarded UPDATE + ledger INSERT per transaction) and the figures read from /proc.
#![allow(dead_code, unused_imports)] // each bench uses its own subset

mod callers;
mod env;
mod fmt;
mod pg;
mod procfs;
mod rng;
mod summary;
mod tally;

pub use callers::*;
pub use env::*;
pub use fmt::*;
pub use pg::*;
pub use procfs::*;
pub use rng::*;
pub use summary::*;
pub use tally::*;

pub type Res<T> = Result<T, String>;
