//! Concurrent callers, each on a task of its own, looping until a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{Res, Rng, Run, Tally};

/// Spawns `body` once per caller on the current tokio runtime with the caller's own random
/// stream and the window's deadline (`duration` from now). Gives back the callers (for the next
/// window), the merged figures and what else each caller collected, in the callers' order.
pub async fn spawn_callers<C, E, F, Fut>(
    callers: Vec<C>,
    duration: Duration,
    seed: u64,
    body: F,
) -> Res<(Vec<C>, Run, Vec<E>)>
where
    F: Fn(C, Rng, Instant) -> Fut,
    Fut: Future<Output = Res<(C, Tally, E)>> + Send + 'static,
    C: Send + 'static,
    E: Send + 'static,
{
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = callers
        .into_iter()
        .enumerate()
        .map(|(c, caller)| tokio::spawn(body(caller, Rng::for_caller(seed, c), deadline)))
        .collect();
    let mut callers = Vec::with_capacity(handles.len());
    let mut tallies = Vec::with_capacity(handles.len());
    let mut extras = Vec::with_capacity(handles.len());
    for h in handles {
        let (caller, tally, extra) = h
            .await
            .map_err(|e| format!("a client task failed: {e}"))??;
        callers.push(caller);
        tallies.push(tally);
        extras.push(extra);
    }
    Ok((
        callers,
        Run::from(Tally::merge(tallies), started.elapsed()),
        extras,
    ))
}
