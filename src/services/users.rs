use storage::keys;
use storage::ledger::Posting;
use storage::records::*;
use storage::{now_us, Direction, Reader, Store, WriteOutcome, WriteSet};
use uuid::Uuid;

use crate::auth::{hash_token, new_token};
use crate::domain::{Email, Name};
use crate::error::AppError;
use crate::extract::Page;
use crate::mailer::{Mail, Mailer};
use std::sync::Arc;

/// Tokens of one user revoked per write, bounding the write set.
const TOKENS_REVOKED_PER_WRITE_MAX: usize = 1000;
/// Sessions beyond the bound revoked by one login at most (sessions from before the bound).
const SESSIONS_TRIMMED_PER_LOGIN_MAX: usize = 64;

pub struct NewUser {
    pub email: Email,
    pub name: Name,
    pub password_hash: String,
    pub role: Role,
    pub signup_grant: u64,
}

/// Creates the user, the email index entry, the credit account and the signup grant entry in
/// one atomic write: a crash leaves either all of them or none.
pub async fn create_user(store: &Store, new: NewUser) -> Result<UserRecord, AppError> {
    let (set, user) = create_user_set(new)?;
    match store.write(set).await? {
        WriteOutcome::Committed => Ok(user),
        WriteOutcome::ConditionFailed(_) => Err(AppError::EmailTaken),
    }
}

/// The same for the CLI, outside any async runtime.
pub fn create_user_blocking(store: &Store, new: NewUser) -> Result<UserRecord, AppError> {
    let (set, user) = create_user_set(new)?;
    match store.write_blocking(set)? {
        WriteOutcome::Committed => Ok(user),
        WriteOutcome::ConditionFailed(_) => Err(AppError::EmailTaken),
    }
}

fn create_user_set(new: NewUser) -> Result<(WriteSet, UserRecord), AppError> {
    let now = now_us();
    let id = Uuid::now_v7();
    let user = UserRecord {
        id,
        email: new.email.as_str().to_string(),
        name: new.name.into_inner(),
        role: new.role,
        tier: Tier::Free,
        password_hash: new.password_hash,
        credentials_version: 0,
        created_at_us: now,
        updated_at_us: now,
    };
    let mut set = WriteSet::new();
    set.require_absent::<EmailIndex>(keys::email(&user.email));
    set.put(keys::user(id), &user);
    set.put(keys::email(&user.email), &EmailIndex { user_id: id });
    let empty = AccountRecord::empty(id, now);
    if new.signup_grant > 0 {
        let amount = i64::try_from(new.signup_grant)
            .map_err(|_| AppError::internal("signup grant out of range"))?;
        let (account, entry) = empty
            .post(
                Posting {
                    amount,
                    kind: LedgerKind::SignupGrant,
                    description: "Signup grant".into(),
                    generation_request_id: None,
                    invoice_id: None,
                },
                now,
            )
            .map_err(AppError::internal)?;
        set.put(keys::account(id), &account);
        set.put(keys::ledger(entry.id), &entry);
    } else {
        set.put(keys::account(id), &empty);
    }
    Ok((set, user))
}

pub fn find_by_email(store: &impl Reader, email: &Email) -> Result<Option<UserRecord>, AppError> {
    let Some(ix) = store.get::<EmailIndex>(&keys::email(email.as_str()))? else {
        return Ok(None);
    };
    Ok(store.get::<UserRecord>(&keys::user(ix.user_id))?)
}

pub fn get_user(store: &impl Reader, id: Uuid) -> Result<UserRecord, AppError> {
    store
        .get::<UserRecord>(&keys::user(id))?
        .ok_or(AppError::NotFound)
}

pub fn balance_of(store: &impl Reader, id: Uuid) -> Result<u64, AppError> {
    Ok(store
        .get::<AccountRecord>(&keys::account(id))?
        .map_or(0, |a| a.balance))
}

/// Issues a bearer token valid for `ttl_us`, bound to the user's credentials version (a later
/// password change ends it); returns the token (shown once). At most `sessions_max` sessions
/// live: the ones expiring first are revoked in the same write.
pub async fn issue_token(
    store: &Store,
    user: &UserRecord,
    ttl_us: i64,
    sessions_max: usize,
) -> Result<String, AppError> {
    let (token, hash) = new_token()?;
    let now = now_us();
    let expires_at_us = now.saturating_add(ttl_us);
    let mut set = WriteSet::new();
    set.put(
        keys::token(&hash),
        &TokenRecord {
            user_id: user.id,
            credentials_version: user.credentials_version,
            created_at_us: now,
            expires_at_us,
        },
    );
    set.put(
        keys::token_by_user(user.id, &hash),
        &TokenOfUser { expires_at_us },
    );
    revoke_oldest_sessions(store, user.id, sessions_max.saturating_sub(1), &mut set)?;
    store.write(set).await?;
    Ok(token)
}

/// Adds to `set` the revocation of the user's sessions beyond `keep`, those expiring first.
/// Reads a bounded number of them: a user with more (from before the bound) loses a batch per
/// login until within it.
fn revoke_oldest_sessions(
    store: &Store,
    user_id: Uuid,
    keep: usize,
    set: &mut WriteSet,
) -> Result<(), AppError> {
    let scan_max = keep.saturating_add(SESSIONS_TRIMMED_PER_LOGIN_MAX);
    let mut sessions =
        store.scan::<TokenOfUser>(&keys::user(user_id), None, Direction::Forward, scan_max)?;
    if sessions.len() <= keep {
        return Ok(());
    }
    sessions.sort_by_key(|(_, t)| t.expires_at_us);
    let excess = sessions.len() - keep;
    for (k, _) in sessions.into_iter().take(excess) {
        if let Some(hash) = k
            .get(keys::USER_KEY_LEN..)
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
        {
            set.delete::<TokenRecord>(keys::token(&hash));
            set.delete::<TokenOfUser>(k);
        }
    }
    Ok(())
}

pub async fn revoke_token(store: &Store, user_id: Uuid, hash: &[u8; 32]) -> Result<(), AppError> {
    let mut set = WriteSet::new();
    set.delete::<TokenRecord>(keys::token(hash));
    set.delete::<TokenOfUser>(keys::token_by_user(user_id, hash));
    store.write(set).await?;
    Ok(())
}

/// Adds the deletion of (up to a bound of) the user's sessions to `set`.
fn revoke_all_tokens(store: &Store, user_id: Uuid, set: &mut WriteSet) -> Result<(), AppError> {
    let tokens = store.scan::<TokenOfUser>(
        &keys::user(user_id),
        None,
        Direction::Forward,
        TOKENS_REVOKED_PER_WRITE_MAX,
    )?;
    for (k, _) in tokens {
        if let Some(hash) = k
            .get(keys::USER_KEY_LEN..)
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
        {
            set.delete::<TokenRecord>(keys::token(&hash));
            set.delete::<TokenOfUser>(k);
        }
    }
    Ok(())
}

/// Creates the user's reset code (replacing any earlier one) and mails it. Known and unknown
/// emails take the same path up to the answer: one read, then the write and the mail happen
/// after the caller was answered, so neither timing nor the answer tells whether the account
/// exists.
pub fn request_password_reset(
    store: &Store,
    mailer: Arc<dyn Mailer>,
    email: &Email,
    ttl_us: i64,
) -> Result<(), AppError> {
    let Some(user) = find_by_email(store, email)? else {
        tracing::info!("password reset asked for an unknown email");
        return Ok(());
    };
    let store = store.clone();
    actix_web::rt::spawn(async move {
        if let Err(e) = write_and_mail_reset(&store, mailer.as_ref(), &user, ttl_us).await {
            tracing::warn!(user = %user.id, error = %e, "password reset code not issued");
        }
    });
    Ok(())
}

async fn write_and_mail_reset(
    store: &Store,
    mailer: &dyn Mailer,
    user: &UserRecord,
    ttl_us: i64,
) -> Result<(), AppError> {
    let (secret, _) = new_token()?;
    let code = format!("{}.{secret}", user.id);
    let now = now_us();
    let mut set = WriteSet::new();
    // Keyed by user: this replaces any earlier code, so at most one is live.
    set.put(
        keys::user(user.id),
        &ResetRecord {
            user_id: user.id,
            code_hash: hash_token(&code),
            credentials_version: user.credentials_version,
            created_at_us: now,
            expires_at_us: now.saturating_add(ttl_us),
        },
    );
    store.write(set).await?;
    mailer.send(Mail {
        to: user.email.clone(),
        subject: "Reset your CreativeFlow password".into(),
        body: format!(
            "Use this code to choose a new password within {} minutes: {code}",
            ttl_us / 60_000_000
        ),
    });
    Ok(())
}

/// A reset code that may be spent now, with its user; checked before any password is hashed,
/// so a bogus code costs a read, not an Argon2 run.
pub fn check_reset_code(
    store: &impl Reader,
    code: &str,
) -> Result<(ResetRecord, UserRecord), AppError> {
    let invalid = || AppError::validation("token", "the reset token is invalid, used or expired");
    let user_id = code
        .split_once('.')
        .and_then(|(id, _)| Uuid::parse_str(id).ok())
        .ok_or_else(invalid)?;
    let reset = store
        .get::<ResetRecord>(&keys::user(user_id))?
        .filter(|r| r.code_hash == hash_token(code))
        .ok_or_else(invalid)?;
    let user = get_user(store, reset.user_id).map_err(|_| invalid())?;
    if reset.expires_at_us <= now_us() || reset.credentials_version != user.credentials_version {
        return Err(invalid());
    }
    Ok((reset, user))
}

/// Spends a checked reset code: new password and credentials version (which ends every
/// session at once), the code gone, the session records removed as cleanup, in one write. A
/// second use, or a code overtaken by a later password change, is refused.
pub async fn confirm_password_reset(
    store: &Store,
    (reset, user): (ResetRecord, UserRecord),
    new_password_hash: String,
) -> Result<(), AppError> {
    let mut updated = user.clone();
    updated.password_hash = new_password_hash;
    updated.credentials_version = user.credentials_version.wrapping_add(1);
    updated.updated_at_us = now_us();
    let mut set = WriteSet::new();
    set.require_equal(keys::user(user.id), &reset);
    set.require_equal(keys::user(user.id), &user);
    set.delete::<ResetRecord>(keys::user(user.id));
    set.put(keys::user(user.id), &updated);
    revoke_all_tokens(store, user.id, &mut set)?;
    match store.write(set).await? {
        WriteOutcome::Committed => Ok(()),
        WriteOutcome::ConditionFailed(_) => Err(AppError::validation(
            "token",
            "the reset token is invalid, used or expired",
        )),
    }
}

#[derive(Debug, Default)]
pub struct UserPatch {
    pub tier: Option<Tier>,
    pub role: Option<Role>,
    pub name: Option<Name>,
}

/// Admin change of tier, role or name. Conditioned on the record being unchanged since read,
/// retried a bounded number of times when another change slipped in between.
pub async fn update_user(
    store: &Store,
    actor: &UserRecord,
    id: Uuid,
    patch: UserPatch,
) -> Result<UserRecord, AppError> {
    if actor.id == id && patch.role.is_some_and(|r| r != actor.role) {
        // An admin demoting themselves could leave nobody able to undo it.
        return Err(AppError::CannotChangeOwnRole);
    }
    for _ in 0..3 {
        let current = get_user(store, id)?;
        let mut next = current.clone();
        if let Some(t) = patch.tier {
            next.tier = t;
        }
        if let Some(r) = patch.role {
            next.role = r;
        }
        if let Some(n) = &patch.name {
            next.name = n.clone().into_inner();
        }
        if next == current {
            return Ok(current);
        }
        next.updated_at_us = now_us();
        let mut set = WriteSet::new();
        set.require_equal(keys::user(id), &current);
        set.put(keys::user(id), &next);
        if store.write(set).await? == WriteOutcome::Committed {
            tracing::info!(admin = %actor.id, user = %id, tier = next.tier.as_str(), role = next.role.as_str(), "user updated by admin");
            return Ok(next);
        }
    }
    Err(AppError::ConcurrentUpdate)
}

pub fn list_users(
    store: &impl Reader,
    page: &Page,
) -> Result<(Vec<UserRecord>, Option<String>), AppError> {
    let rows =
        store.scan::<UserRecord>(&[], page.after.as_deref(), Direction::Forward, page.limit)?;
    let next = page.next_cursor(rows.len(), rows.last().map(|(k, _)| k.as_slice()));
    Ok((rows.into_iter().map(|(_, u)| u).collect(), next))
}

/// Deletes expired bearer tokens (with their index entries) and expired reset codes, at most
/// `limit` of each per call, so the tables do not grow with every login ever made.
pub async fn purge_expired_tokens(store: &Store, limit: usize) -> Result<usize, AppError> {
    let now = now_us();
    let mut set = WriteSet::new();
    let mut tokens = 0;
    store.visit::<TokenRecord>(&[], |k, t| {
        if t.expires_at_us <= now {
            if let Ok(hash) = <[u8; 32]>::try_from(k.as_slice()) {
                set.delete::<TokenOfUser>(keys::token_by_user(t.user_id, &hash));
            }
            set.delete::<TokenRecord>(k);
            tokens += 1;
        }
        tokens < limit
    })?;
    let mut resets = 0;
    store.visit::<ResetRecord>(&[], |k, r| {
        if r.expires_at_us <= now {
            set.delete::<ResetRecord>(k);
            resets += 1;
        }
        resets < limit
    })?;
    if !set.is_empty() {
        store.write(set).await?;
    }
    Ok(tokens + resets)
}

/// Deletes a user with their whole workspace (workbenches, projects, assets, brand kits), their
/// sessions and reset codes, in one atomic write. Their credit account and ledger stay:
/// financial records are never deleted.
pub async fn delete_user(
    store: &Store,
    workspaces: &actors::workspace::WorkspaceRegistry,
    actor: &UserRecord,
    id: Uuid,
) -> Result<(), AppError> {
    if actor.id == id {
        return Err(AppError::CannotDeleteSelf);
    }
    let user = get_user(store, id)?;
    let mut extra = WriteSet::new();
    extra.require_equal(keys::user(id), &user);
    extra.delete::<UserRecord>(keys::user(id));
    extra.delete::<EmailIndex>(keys::email(&user.email));
    revoke_all_tokens(store, id, &mut extra)?;
    extra.delete::<ResetRecord>(keys::user(id));
    extra.delete::<ProfileRecord>(keys::user(id));
    workspaces
        .change(id, actors::workspace::DeleteEverything { extra })
        .await?;
    tracing::info!(admin = %actor.id, user = %id, "user deleted (ledger kept)");
    Ok(())
}
