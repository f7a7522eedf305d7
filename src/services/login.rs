//! Checking a password and opening a session: shared by the API login and the back office, so
//! both apply the same failed-login limits and the same session bounds.

use std::sync::atomic::Ordering;

use storage::records::UserRecord;

use crate::domain::{Email, Password};
use crate::error::AppError;
use crate::services::users;
use crate::state::AppState;

/// The user behind `email` and `password`, or `InvalidCredentials`. Failed attempts count per
/// account and per client address (`ip`); a refused attempt is `RateLimited`.
pub async fn check_credentials(
    state: &AppState,
    ip: &str,
    email_raw: &str,
    password_raw: &str,
) -> Result<UserRecord, AppError> {
    // A malformed email cannot match an account: treat it as a failed login, not a 422, so the
    // answer does not tell which emails are well-formed accounts.
    let email = Email::parse(email_raw).ok();
    let account_key = email.as_ref().map_or_else(
        || email_raw.trim().to_lowercase(),
        |e| e.as_str().to_string(),
    );
    // Reserved before the hash: parallel guesses cannot all pass the check.
    if let Err(e) = state.login_limiter.reserve(&account_key, ip) {
        if matches!(e, AppError::RateLimited { .. }) {
            state
                .metrics
                .logins_rate_limited
                .fetch_add(1, Ordering::Relaxed);
        }
        return Err(e);
    }
    let user = match &email {
        Some(e) => users::find_by_email(&state.store, e)?,
        None => None,
    };
    let password = password_raw
        .chars()
        .take(Password::LEN_MAX)
        .collect::<String>();
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = match state.hashes.verify(stored, password).await {
        Ok(ok) => ok,
        Err(e) => {
            // Not checked (the hashing pool is full): the attempt does not count.
            state.login_limiter.not_checked(&account_key, ip);
            return Err(e);
        }
    };
    match (ok, user) {
        (true, Some(user)) => {
            state.login_limiter.succeeded(&account_key, ip);
            Ok(user)
        }
        _ => {
            state.metrics.logins_failed.fetch_add(1, Ordering::Relaxed);
            Err(AppError::InvalidCredentials)
        }
    }
}

/// How long a session lives, from the `[auth]` configuration.
pub fn session_ttl_us(state: &AppState) -> i64 {
    i64::try_from(
        state
            .config
            .file
            .auth
            .token_ttl_hours
            .saturating_mul(3_600_000_000),
    )
    .unwrap_or(i64::MAX)
}

/// A new session for `user`: the token (shown once) and when it expires.
pub async fn open_session(state: &AppState, user: &UserRecord) -> Result<(String, i64), AppError> {
    let ttl = session_ttl_us(state);
    let sessions_max = state.config.file.auth.sessions_per_user_max;
    let token = users::issue_token(&state.store, user, ttl, sessions_max).await?;
    Ok((token, storage::now_us().saturating_add(ttl)))
}
