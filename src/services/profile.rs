//! Progressive profiling (SPEC §10): one short question at a time, never one already answered.

use storage::keys;
use storage::records::ProfileRecord;
use storage::{now_us, Reader, Store, WriteOutcome, WriteSet};
use uuid::Uuid;

use crate::config::{ProfileQuestion, ProfilingConfig};
use crate::error::AppError;

/// A free-text answer at most this many characters.
pub const FREE_TEXT_CHARS_MAX: usize = 100;
/// Attempts of an answer that lost a race with another answer of the same user.
const ANSWER_ATTEMPTS_MAX: usize = 3;

pub fn answers(reads: &impl Reader, user: Uuid) -> Result<ProfileRecord, AppError> {
    Ok(reads
        .get::<ProfileRecord>(&keys::user(user))?
        .unwrap_or_default())
}

/// The first question not answered yet, in configured order.
pub fn next_question<'a>(
    config: &'a ProfilingConfig,
    profile: &ProfileRecord,
) -> Option<&'a ProfileQuestion> {
    config
        .questions
        .iter()
        .find(|q| !profile.answers.contains_key(&q.key))
}

/// Records (or replaces) one answer: one of the question's choices, or short text where the
/// question allows it.
pub async fn answer(
    store: &Store,
    config: &ProfilingConfig,
    user: Uuid,
    key: &str,
    value: &str,
) -> Result<ProfileRecord, AppError> {
    let question = config
        .questions
        .iter()
        .find(|q| q.key == key)
        .ok_or_else(|| AppError::validation("key", "not one of the profile questions"))?;
    let value = accepted(question, value)?;
    for _ in 0..ANSWER_ATTEMPTS_MAX {
        let old = store.get::<ProfileRecord>(&keys::user(user))?;
        let mut next = old.clone().unwrap_or_default();
        next.answers.insert(key.to_string(), value.clone());
        next.updated_at_us = now_us();
        let mut set = WriteSet::new();
        match &old {
            Some(o) => set.require_equal(keys::user(user), o),
            None => set.require_absent::<ProfileRecord>(keys::user(user)),
        };
        // The user must still exist: no profile outlives its user.
        set.require_present::<storage::records::UserRecord>(keys::user(user));
        set.put(keys::user(user), &next);
        if store.write(set).await? == WriteOutcome::Committed {
            return Ok(next);
        }
    }
    Err(AppError::ConcurrentUpdate)
}

fn accepted(q: &ProfileQuestion, raw: &str) -> Result<String, AppError> {
    if q.choices.iter().any(|c| c == raw) {
        return Ok(raw.to_string());
    }
    if !q.free_text {
        return Err(AppError::validation(
            "value",
            format!("one of: {}", q.choices.join(", ")),
        ));
    }
    let text = crate::domain::clean_text(raw, "value", false)?;
    let n = text.chars().count();
    if n == 0 || n > FREE_TEXT_CHARS_MAX {
        return Err(AppError::validation(
            "value",
            format!("1 to {FREE_TEXT_CHARS_MAX} characters, or one of the choices"),
        ));
    }
    Ok(text)
}
