//! Runtime feature toggles (SPEC §10). They live in the store, so an admin's change survives a
//! restart and the very next request on any worker sees it (each request reads them; there is
//! no per-worker copy to lag). A toggle no admin has set yet has the value of its
//! `CREATIVEFLOW_ENABLE_*` variable.

use storage::keys;
use storage::records::{FeatureChange, FeatureRecord, UserRecord};
use storage::{now_us, Direction, Reader, Store, WriteOutcome, WriteSet};

use crate::config::Features;
use crate::error::AppError;
use crate::extract::Page;

pub const PAYPAL: &str = "enable_paypal_payments";
pub const LIVE_CHAT: &str = "enable_live_chat_support";
pub const TEMPLATES: &str = "enable_user_template_saving";
pub const PROFILING: &str = "enable_progressive_profiling";

/// Attempts of a toggle change that lost a race with another admin's.
const CHANGE_ATTEMPTS_MAX: usize = 3;

fn key(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}

/// The toggles now: each stored value, else the environment's.
pub fn current(reads: &impl Reader, defaults: Features) -> Result<Features, AppError> {
    let get = |name: &str, default: bool| -> Result<bool, AppError> {
        Ok(reads
            .get::<FeatureRecord>(&key(name))?
            .map_or(default, |r| r.enabled))
    };
    Ok(Features {
        enable_paypal_payments: get(PAYPAL, defaults.enable_paypal_payments)?,
        enable_live_chat_support: get(LIVE_CHAT, defaults.enable_live_chat_support)?,
        enable_user_template_saving: get(TEMPLATES, defaults.enable_user_template_saving)?,
        enable_progressive_profiling: get(PROFILING, defaults.enable_progressive_profiling)?,
    })
}

/// 403 `feature_disabled` unless the toggle `pick` chooses is on now (read per request).
pub fn require(
    reads: &impl Reader,
    defaults: Features,
    pick: fn(&Features) -> bool,
) -> Result<(), AppError> {
    if pick(&current(reads, defaults)?) {
        Ok(())
    } else {
        Err(AppError::FeatureDisabled { status_404: false })
    }
}

/// Toggles to set; `None` leaves one as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct FeaturePatch {
    pub enable_paypal_payments: Option<bool>,
    pub enable_live_chat_support: Option<bool>,
    pub enable_user_template_saving: Option<bool>,
    pub enable_progressive_profiling: Option<bool>,
}

/// Sets the given toggles and records each change (who, when, old, new) in the same write;
/// setting a toggle to its current value records nothing.
pub async fn update(
    store: &Store,
    admin: &UserRecord,
    defaults: Features,
    patch: FeaturePatch,
) -> Result<Features, AppError> {
    let wanted = [
        (
            PAYPAL,
            patch.enable_paypal_payments,
            defaults.enable_paypal_payments,
        ),
        (
            LIVE_CHAT,
            patch.enable_live_chat_support,
            defaults.enable_live_chat_support,
        ),
        (
            TEMPLATES,
            patch.enable_user_template_saving,
            defaults.enable_user_template_saving,
        ),
        (
            PROFILING,
            patch.enable_progressive_profiling,
            defaults.enable_progressive_profiling,
        ),
    ];
    for _ in 0..CHANGE_ATTEMPTS_MAX {
        let now = now_us();
        let mut set = WriteSet::new();
        for (name, value, default) in wanted {
            let Some(new) = value else { continue };
            let stored = store.get::<FeatureRecord>(&key(name))?;
            let old = stored.map_or(default, |r| r.enabled);
            match stored {
                Some(r) => set.require_equal(key(name), &r),
                None => set.require_absent::<FeatureRecord>(key(name)),
            };
            set.put(
                key(name),
                &FeatureRecord {
                    enabled: new,
                    changed_by: admin.id,
                    changed_at_us: now,
                },
            );
            if old != new {
                set.append(&FeatureChange {
                    name: name.to_string(),
                    old,
                    new,
                    changed_by: admin.id,
                    changed_at_us: now,
                });
                tracing::info!(admin = %admin.id, toggle = name, old, new, "feature toggle changed");
            }
        }
        if set.is_empty() || store.write(set).await? == WriteOutcome::Committed {
            return current(store, defaults);
        }
    }
    Err(AppError::ConcurrentUpdate)
}

/// Changes, newest first.
pub fn history(
    reads: &impl Reader,
    page: &Page,
) -> Result<(Vec<FeatureChange>, Option<String>), AppError> {
    if page
        .after
        .as_ref()
        .is_some_and(|a| keys::parse_sequence(a).is_none())
    {
        return Err(AppError::validation(
            "cursor",
            "the cursor is not one we issued",
        ));
    }
    let rows =
        reads.scan::<FeatureChange>(&[], page.after.as_deref(), Direction::Backward, page.limit)?;
    let next = page.next_cursor(rows.len(), rows.last().map(|(k, _)| k.as_slice()));
    Ok((rows.into_iter().map(|(_, c)| c).collect(), next))
}
