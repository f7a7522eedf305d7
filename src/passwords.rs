//! Passwords: Argon2id hashing and checking, always through one bounded [`HashPool`].

use std::sync::OnceLock;

use actix_web::web;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

use crate::domain::Password;
use crate::error::AppError;

/// Where every password hash and check runs: Argon2id takes tens of milliseconds and ~19 MiB
/// by design, so at most one per core runs at a time and a bounded number wait; past that the
/// caller gets 503 `overloaded` (with `Retry-After`) at once. Unauthenticated requests can
/// therefore never exhaust memory or the blocking pool, nor starve the money path.
#[derive(Debug)]
pub struct HashPool {
    /// Hashes running or waiting.
    admitted: tokio::sync::Semaphore,
    /// Hashes running.
    running: tokio::sync::Semaphore,
    /// Hashes and checks run since start (tests and `/metrics`).
    pub ran_total: std::sync::atomic::AtomicU64,
    /// Refused because the pool was full.
    pub refused_total: std::sync::atomic::AtomicU64,
}

impl HashPool {
    /// `running_max` hashes at a time (0: one per core), `admitted_max` running or waiting.
    pub fn new(running_max: usize, admitted_max: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let running_max = if running_max == 0 { cores } else { running_max };
        HashPool {
            admitted: tokio::sync::Semaphore::new(admitted_max.max(running_max)),
            running: tokio::sync::Semaphore::new(running_max),
            ran_total: Default::default(),
            refused_total: Default::default(),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        use std::sync::atomic::Ordering::Relaxed;
        let _admitted = self.admitted.try_acquire().map_err(|_| {
            self.refused_total.fetch_add(1, Relaxed);
            AppError::Overloaded
        })?;
        let _running = self
            .running
            .acquire()
            .await
            .map_err(|_| AppError::Overloaded)?;
        self.ran_total.fetch_add(1, Relaxed);
        Ok(web::block(work).await?)
    }

    pub async fn hash(&self, password: Password) -> Result<String, AppError> {
        self.run(move || hash_password_now(password.expose()))
            .await?
    }

    /// With no stored hash it verifies against a fixed one anyway, so an unknown email takes as
    /// long as a wrong password (no account enumeration by timing).
    pub async fn verify(&self, stored: Option<String>, password: String) -> Result<bool, AppError> {
        self.run(move || {
            let hash = match &stored {
                Some(h) => h.as_str(),
                None => dummy_hash(),
            };
            verify_password_now(&password, hash) && stored.is_some()
        })
        .await
    }
}

pub fn hash_password_now(password: &str) -> Result<String, AppError> {
    // The salt comes from the operating system's generator (getrandom).
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(format!("argon2: {e}")))
}

/// Whether `password` matches a stored Argon2 hash (on the calling thread).
pub fn verify_password_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password_now("not a real password at all").unwrap_or_default())
}
