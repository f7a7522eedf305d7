//! Failed-login limiting, per account and per client IP, in fixed windows. In memory and per
//! node: it slows guessing; it is not a ledger. Bounded: past `KEYS_MAX` keys, expired windows
//! are dropped first and then the oldest.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const KEYS_MAX: usize = 100_000;

#[derive(Debug)]
pub struct LoginLimiter {
    window: Duration,
    per_account_max: u32,
    per_ip_max: u32,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    pub fn new(window: Duration, per_account_max: u32, per_ip_max: u32) -> Self {
        LoginLimiter {
            window,
            per_account_max,
            per_ip_max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(retry_after_s)` when either key is over its limit.
    pub fn blocked(&self, account: &str, ip: &str) -> Option<u64> {
        let map = self.failures.lock();
        let now = Instant::now();
        let check = |key: String, max: u32| -> Option<u64> {
            let (start, n) = map.get(&key)?;
            let age = now.duration_since(*start);
            (age < self.window && *n >= max).then(|| (self.window - age).as_secs().max(1))
        };
        check(format!("a:{account}"), self.per_account_max)
            .or_else(|| check(format!("i:{ip}"), self.per_ip_max))
    }

    pub fn record_failure(&self, account: &str, ip: &str) {
        let mut map = self.failures.lock();
        let now = Instant::now();
        if map.len() >= KEYS_MAX {
            let window = self.window;
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
            if map.len() >= KEYS_MAX {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        for key in [format!("a:{account}"), format!("i:{ip}")] {
            let slot = map.entry(key).or_insert((now, 0));
            if now.duration_since(slot.0) >= self.window {
                *slot = (now, 0);
            }
            slot.1 += 1;
        }
    }

    /// A successful login clears the account's count (not the IP's).
    pub fn record_success(&self, account: &str) {
        self.failures.lock().remove(&format!("a:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_blocked_after_its_limit_and_cleared_by_success() {
        let l = LoginLimiter::new(Duration::from_secs(60), 3, 100);
        for _ in 0..3 {
            assert!(l.blocked("a@x.io", "1.2.3.4").is_none());
            l.record_failure("a@x.io", "1.2.3.4");
        }
        assert!(l.blocked("a@x.io", "9.9.9.9").is_some());
        l.record_success("a@x.io");
        assert!(l.blocked("a@x.io", "9.9.9.9").is_none());
    }

    #[test]
    fn an_ip_is_blocked_across_accounts() {
        let l = LoginLimiter::new(Duration::from_secs(60), 100, 2);
        l.record_failure("a@x.io", "1.2.3.4");
        l.record_failure("b@x.io", "1.2.3.4");
        assert!(l.blocked("c@x.io", "1.2.3.4").is_some());
        assert!(l.blocked("c@x.io", "5.6.7.8").is_none());
    }
}
