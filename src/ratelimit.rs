//! Attempt limiting in fixed windows (failed logins per account and per client IP, signups per
//! IP, reset requests per email and per IP). It slows guessing and farming; it is not a ledger.
//!
//! Where the counts live follows the store: one node on the embedded store counts in its
//! memory; nodes on one PostgreSQL database count in the database (`cf_attempt_windows`), so
//! spreading attempts over N nodes does not give N times the limit.
//!
//! An attempt is *reserved before* the expensive work it guards (a password hash), so parallel
//! attempts cannot all pass the check and count afterwards: exactly `max` get through a window.
//! Bounded: keys longer than [`KEY_LEN_MAX`] share one key; in memory, past [`KEYS_MAX`] keys
//! expired windows go first, then the oldest; in the database, ended windows are purged a
//! bounded slice at a time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use storage::pg::{PgStore, Taken};

use crate::error::AppError;

/// Keys kept at most in memory (each ~100 bytes).
const KEYS_MAX: usize = 100_000;
/// A key (an email is at most 254 bytes, plus a prefix) longer than this is not kept as itself.
pub const KEY_LEN_MAX: usize = 300;
const OVERLONG_KEY: &str = "~overlong";

pub struct WindowLimiter {
    /// Names this limiter's keys in the shared table (limiters share it).
    name: &'static str,
    window: Duration,
    counts: Counts,
}

/// Where a limiter's counts live.
enum Counts {
    /// This node's memory: one node is the whole deploy.
    Node(Mutex<HashMap<String, (Instant, u32)>>),
    /// The database every node shares.
    Shared(PgStore),
}

impl std::fmt::Debug for WindowLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.counts {
            Counts::Node(_) => "node",
            Counts::Shared(_) => "database",
        };
        f.debug_struct("WindowLimiter")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("counts", &place)
            .finish()
    }
}

fn bounded(key: &str) -> &str {
    if key.len() <= KEY_LEN_MAX {
        key
    } else {
        OVERLONG_KEY
    }
}

impl WindowLimiter {
    /// Counts in this node's memory.
    pub fn new(name: &'static str, window: Duration) -> Self {
        WindowLimiter {
            name,
            window,
            counts: Counts::Node(Mutex::new(HashMap::new())),
        }
    }

    /// Counts in the database of `store` when it is shared by nodes (PostgreSQL), else in
    /// memory.
    pub fn for_store(name: &'static str, window: Duration, store: &storage::Store) -> Self {
        match store.postgres() {
            Some(pg) => WindowLimiter {
                name,
                window,
                counts: Counts::Shared(pg.clone()),
            },
            None => WindowLimiter::new(name, window),
        }
    }

    /// Takes one attempt from every `(key, max)` at once, or none: `RateLimited` when any key
    /// has used its `max` in the current window.
    pub fn try_take(&self, keys: &[(&str, u32)]) -> Result<(), AppError> {
        match &self.counts {
            Counts::Node(map) => take_in_memory(map, self.window, keys)
                .map_err(|retry_after_s| AppError::RateLimited { retry_after_s }),
            Counts::Shared(pg) => {
                let named: Vec<String> = keys.iter().map(|(k, _)| self.shared_key(k)).collect();
                let keys: Vec<(&str, u32)> = named
                    .iter()
                    .zip(keys)
                    .map(|(k, (_, max))| (k.as_str(), *max))
                    .collect();
                let window_s = u32::try_from(self.window.as_secs().max(1)).unwrap_or(u32::MAX);
                match pg.take_attempts(window_s, &keys)? {
                    Taken::Taken => Ok(()),
                    Taken::Refused { retry_after_s } => {
                        Err(AppError::RateLimited { retry_after_s })
                    }
                }
            }
        }
    }

    /// Returns an attempt taken by [`Self::try_take`] (it turned out not to count, e.g. a
    /// successful login for the client's IP).
    pub fn give_back(&self, key: &str) {
        match &self.counts {
            Counts::Node(map) => {
                if let Some(slot) = map.lock().get_mut(bounded(key)) {
                    slot.1 = slot.1.saturating_sub(1);
                }
            }
            Counts::Shared(pg) => {
                if let Err(e) = pg.give_back_attempt(&self.shared_key(key)) {
                    // Kept counted: the limit errs on the strict side.
                    tracing::warn!(error = %e, limiter = self.name, "attempt not given back");
                }
            }
        }
    }

    /// Forgets a key (a successful login clears its account's failures).
    pub fn clear(&self, key: &str) {
        match &self.counts {
            Counts::Node(map) => {
                map.lock().remove(bounded(key));
            }
            Counts::Shared(pg) => {
                if let Err(e) = pg.clear_attempts(&self.shared_key(key)) {
                    tracing::warn!(error = %e, limiter = self.name, "attempts not cleared");
                }
            }
        }
    }

    fn shared_key(&self, key: &str) -> String {
        format!("{}/{}", self.name, bounded(key))
    }

    /// Keys counted in memory (0 when the counts live in the database).
    pub fn keys(&self) -> usize {
        match &self.counts {
            Counts::Node(map) => map.lock().len(),
            Counts::Shared(_) => 0,
        }
    }
}

/// [`WindowLimiter::try_take`] in memory: `Err(retry_after_s)` when refused.
fn take_in_memory(
    map: &Mutex<HashMap<String, (Instant, u32)>>,
    window: Duration,
    keys: &[(&str, u32)],
) -> Result<(), u64> {
    let mut map = map.lock();
    let now = Instant::now();
    for (key, max) in keys {
        if let Some((start, n)) = map.get(bounded(key)) {
            let age = now.duration_since(*start);
            if age < window && *n >= *max {
                return Err((window - age).as_secs().max(1));
            }
        }
    }
    make_room(&mut map, window, now, keys.len());
    for (key, _) in keys {
        let slot = map.entry(bounded(key).to_string()).or_insert((now, 0));
        if now.duration_since(slot.0) >= window {
            *slot = (now, 0);
        }
        slot.1 += 1;
    }
    Ok(())
}

fn make_room(
    map: &mut HashMap<String, (Instant, u32)>,
    window: Duration,
    now: Instant,
    wanted: usize,
) {
    if map.len() + wanted <= KEYS_MAX {
        return;
    }
    map.retain(|_, (start, _)| now.duration_since(*start) < window);
    while map.len() + wanted > KEYS_MAX {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, (s, _))| *s)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        map.remove(&oldest);
    }
}

/// Failed-login limits: per account and per client IP.
#[derive(Debug)]
pub struct LoginLimiter {
    limiter: WindowLimiter,
    per_account_max: u32,
    per_ip_max: u32,
}

impl LoginLimiter {
    pub fn new(limiter: WindowLimiter, per_account_max: u32, per_ip_max: u32) -> Self {
        LoginLimiter {
            limiter,
            per_account_max,
            per_ip_max,
        }
    }

    /// Reserves one attempt for the account and the IP before the password is checked;
    /// `RateLimited` when either is used up.
    pub fn reserve(&self, account: &str, ip: &str) -> Result<(), AppError> {
        self.limiter.try_take(&[
            (&format!("a:{account}"), self.per_account_max),
            (&format!("i:{ip}"), self.per_ip_max),
        ])
    }

    /// The attempt succeeded: the account's failures are forgotten and the IP's reservation
    /// returned. A failure keeps both reservations (they were the count).
    pub fn succeeded(&self, account: &str, ip: &str) {
        self.limiter.clear(&format!("a:{account}"));
        self.limiter.give_back(&format!("i:{ip}"));
    }

    /// The attempt was never checked (refused before the hash ran): both reservations return.
    pub fn not_checked(&self, account: &str, ip: &str) {
        self.limiter.give_back(&format!("a:{account}"));
        self.limiter.give_back(&format!("i:{ip}"));
    }
}

/// Requests in flight per client IP: a client that opens many requests and sends their bodies
/// slowly (or never) holds at most this many at a time. Entries exist only while requests do.
#[derive(Debug)]
pub struct InFlightPerIp {
    max: u32,
    counts: Mutex<HashMap<std::net::IpAddr, u32>>,
}

/// One request in flight; counted down when dropped.
pub struct InFlight<'a> {
    owner: &'a InFlightPerIp,
    ip: std::net::IpAddr,
}

impl InFlightPerIp {
    pub fn new(max: u32) -> Self {
        InFlightPerIp {
            max,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// `None` when the IP has `max` requests in flight already.
    pub fn enter(&self, ip: std::net::IpAddr) -> Option<InFlight<'_>> {
        let mut map = self.counts.lock();
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(InFlight { owner: self, ip })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = self.owner.counts.lock();
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Open connections per client IP. A guard lives in each connection's data and counts the
/// connection down when the connection closes.
#[derive(Debug, Clone)]
pub struct ConnectionsPerIp {
    max: u32,
    counts: std::sync::Arc<Mutex<HashMap<std::net::IpAddr, u32>>>,
}

/// One open connection; `over` when its IP had `max` open already.
#[derive(Debug)]
pub struct ConnectionSlot {
    pub over: bool,
    ip: std::net::IpAddr,
    counts: std::sync::Arc<Mutex<HashMap<std::net::IpAddr, u32>>>,
}

impl ConnectionsPerIp {
    pub fn new(max: u32) -> Self {
        ConnectionsPerIp {
            max,
            counts: Default::default(),
        }
    }

    pub fn open(&self, ip: std::net::IpAddr) -> ConnectionSlot {
        let mut map = self.counts.lock();
        let n = map.entry(ip).or_insert(0);
        *n += 1;
        ConnectionSlot {
            over: *n > self.max,
            ip,
            counts: self.counts.clone(),
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock();
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_blocked_after_its_limit_and_cleared_by_success() {
        let l = LoginLimiter::new(WindowLimiter::new("login", Duration::from_secs(60)), 3, 100);
        for _ in 0..3 {
            assert!(l.reserve("a@x.io", "1.2.3.4").is_ok());
        }
        assert!(l.reserve("a@x.io", "9.9.9.9").is_err());
        l.succeeded("a@x.io", "1.2.3.4");
        assert!(l.reserve("a@x.io", "9.9.9.9").is_ok());
    }

    #[test]
    fn an_ip_is_blocked_across_accounts() {
        let l = LoginLimiter::new(WindowLimiter::new("login", Duration::from_secs(60)), 100, 2);
        assert!(l.reserve("a@x.io", "1.2.3.4").is_ok());
        assert!(l.reserve("b@x.io", "1.2.3.4").is_ok());
        assert!(l.reserve("c@x.io", "1.2.3.4").is_err());
        assert!(l.reserve("c@x.io", "5.6.7.8").is_ok());
    }

    #[test]
    fn a_refused_attempt_takes_nothing_from_the_other_key() {
        let l = WindowLimiter::new("test", Duration::from_secs(60));
        assert!(l.try_take(&[("a", 1)]).is_ok());
        assert!(l.try_take(&[("b", 5), ("a", 1)]).is_err());
        for _ in 0..5 {
            assert!(l.try_take(&[("b", 5)]).is_ok());
        }
    }

    #[test]
    fn overlong_keys_share_one_slot_and_the_map_is_bounded() {
        let l = WindowLimiter::new("test", Duration::from_secs(60));
        let long_a = "a".repeat(KEY_LEN_MAX + 1);
        let long_b = "b".repeat(KEY_LEN_MAX + 1);
        assert!(l.try_take(&[(&long_a, 1)]).is_ok());
        assert!(l.try_take(&[(&long_b, 1)]).is_err());
        for i in 0..(KEYS_MAX + 10) {
            let _ = l.try_take(&[(&format!("k{i}"), 1)]);
        }
        assert!(l.keys() <= KEYS_MAX);
    }
}
