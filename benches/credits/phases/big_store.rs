//! 3 and 4. A big store: the users both parts read, and the accounts the memory child touches.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use storage::Table;
use uuid::Uuid;

use crate::common::*;
use crate::config::Config;
use crate::data::{accounts_set, new_ids, write_stream, USER_BALANCE};
use crate::phases::memory::{memory_part, TOUCH_FILE};
use crate::phases::startup::startup_part;
use crate::store::{open_store, wait_until_closed};

const USERS_PER_SET: usize = 5_000;

pub fn big_store_parts(cfg: &Config, summary: &mut Summary) -> Res<()> {
    heading(format_args!(
        "3/4. Big store: {} users, {} ledger entries",
        thousands(cfg.users as u64),
        thousands(cfg.ledger_entries)
    ));
    let dir = cfg.temp_dir("big")?;
    let path = dir.path().to_path_buf();
    let ids = create_users(cfg, &path, summary)?;
    let touch = write_touch_file(cfg, &path, &ids)?;

    if cfg.runs("memory") {
        memory_part(cfg, &path, touch, summary)?;
    }
    if cfg.runs("startup") {
        startup_part(cfg, &path, &ids, summary)?;
    }
    Ok(())
}

/// Users: an account with its signup grant each, ~5,000 per write set; the store is closed
/// again when this returns.
fn create_users(cfg: &Config, path: &Path, summary: &mut Summary) -> Res<Arc<Vec<Uuid>>> {
    let store = open_store(path)?;
    let t = Instant::now();
    let ids = Arc::new(new_ids(cfg.users));
    let sets = {
        let ids = ids.clone();
        let chunks = ids.len().div_ceil(USERS_PER_SET);
        (0..chunks).map(move |c| {
            let chunk = &ids[c * USERS_PER_SET..((c + 1) * USERS_PER_SET).min(ids.len())];
            (accounts_set(chunk, USER_BALANCE), chunk.len() as u64)
        })
    };
    let mut done = 0u64;
    let mut next_report = 100_000u64;
    write_stream(&store, sets, |n| {
        done += n;
        if done >= next_report || done == ids.len() as u64 {
            eprintln!(
                "  users: {:>10} / {} ({:.1} s)",
                thousands(done),
                thousands(ids.len() as u64),
                t.elapsed().as_secs_f64()
            );
            next_report = (done / 100_000 + 1) * 100_000;
        }
    })?;
    let users_time = t.elapsed();
    let accounts_count = store.count(Table::Accounts).map_err(|e| e.to_string())?;
    println!(
        "  created {} users (account + signup ledger entry) in {} ({:.0} users/s)",
        thousands(accounts_count),
        secs(users_time),
        ids.len() as f64 / users_time.as_secs_f64()
    );
    summary.row(
        format!(
            "Data generation: {} users (account + signup entry, {} per write set)",
            thousands(ids.len() as u64),
            thousands(USERS_PER_SET as u64)
        ),
        secs(users_time),
    );
    store.shutdown();
    drop(store);
    wait_until_closed(path)?;
    Ok(ids)
}

/// The accounts the memory child touches: spread evenly over the key space; the first one
/// is touched before measuring (it starts the arbiters' first actor). Returns how many are
/// measured.
fn write_touch_file(cfg: &Config, path: &Path, ids: &[Uuid]) -> Res<usize> {
    let touch = cfg.touch.min(ids.len() - 1);
    let stride = ids.len() / (touch + 1);
    let mut chosen: Vec<Uuid> = (0..=touch).map(|i| ids[i * stride + stride / 2]).collect();
    chosen.rotate_right(1);
    let bytes: Vec<u8> = chosen.iter().flat_map(|u| *u.as_bytes()).collect();
    std::fs::write(path.join(TOUCH_FILE), bytes).map_err(|e| e.to_string())?;
    Ok(touch)
}
