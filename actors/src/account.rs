use actix::prelude::*;
use storage::codec::encode;
use storage::keys;
use storage::ledger::{entry_hash, Posting, PostingError};
use storage::records::{AccountRecord, IdempotencyRecord, LedgerEntry, IDEMPOTENCY_TTL_US};
use storage::{now_us, StorageError, Store, WriteOutcome, WriteSet};
use uuid::Uuid;

use crate::registry::{Keyed, Registry, MAILBOX_CAPACITY};

/// The registry of credit accounts.
pub type AccountRegistry = Registry<CreditAccount>;

impl Registry<CreditAccount> {
    /// Sends one money movement to the user's account and waits for the durable answer.
    pub async fn apply(&self, user_id: Uuid, msg: Apply) -> Result<Outcome, AccountError> {
        self.send(user_id, msg)
            .await
            .unwrap_or(Err(AccountError::Unavailable))
    }
}

/// Writes retried on a fresh read of the account after another writer changed it first. One node
/// rarely needs one; several nodes on one database (no sticky routing) contend for hot accounts.
const STALE_RETRIES_MAX: usize = 8;

/// A remembered idempotency key: the hash of (scope, key) and the hash of what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key_hash: [u8; 32],
    pub request_hash: [u8; 32],
}

/// What became of a money movement. A replay is a result, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Durable: the entry and the new balance are on disk.
    Applied { entry: LedgerEntry },
    /// The balance does not cover the deduction; nothing was written.
    InsufficientCredits { balance: u64 },
    /// This idempotency key was applied before with the same request: the original entry.
    AlreadyApplied { entry: LedgerEntry },
    /// This idempotency key was used before for a different request; nothing was written.
    IdempotencyKeyReused,
    /// A condition the caller added to the write did not hold; nothing was written.
    ExtraConditionFailed { index: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no credit account for user {0}")]
    NoSuchAccount(Uuid),
    #[error("amount out of range")]
    AmountOutOfRange,
    #[error("stored account {0} fails its invariants: {1}")]
    Corrupt(Uuid, String),
    #[error("the account was busy with concurrent writers; try again")]
    Contended,
    #[error("the account actor is unavailable")]
    Unavailable,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The credit account of one user: the only writer of that user's balance and ledger.
pub struct CreditAccount {
    user_id: Uuid,
    store: Store,
    /// The durable state as last written or read; `None` means "read it from the store first".
    state: Option<AccountRecord>,
    /// Another writer (another node on a shared database) changed this account under us at
    /// least once: from then on read it afresh before each change instead of holding it.
    shared: bool,
}

impl CreditAccount {
    pub fn new(user_id: Uuid, store: Store) -> Self {
        CreditAccount {
            user_id,
            store,
            state: None,
            shared: false,
        }
    }
}

impl Actor for CreditAccount {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Keyed for CreditAccount {
    type Env = ();

    fn for_key(user_id: Uuid, store: Store, _env: ()) -> Self {
        CreditAccount::new(user_id, store)
    }
}

impl Supervised for CreditAccount {
    /// After a failure the account forgets what it held and reads the store again: a caller may
    /// get an error, never a balance that is not the durable one.
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(user_id = %self.user_id, "credit account restarting from the store");
        self.state = None;
    }
}

// ---------------------------------------------------------------------------------------------

/// Posts one credit movement to this account (plus the caller's extra records, in the same
/// atomic write) and answers once it is durable.
#[derive(Message, Clone)]
#[rtype(result = "Result<Outcome, AccountError>")]
pub struct Apply {
    pub posting: Posting,
    pub idempotency: Option<IdempotencyKey>,
    /// Records that must be written atomically with the entry (e.g. a generation request).
    pub extra: WriteSet,
}

impl Handler<Apply> for CreditAccount {
    // Atomic: no other message of this account runs while the write is in flight, so the
    // balance checked is the balance written.
    type Result = AtomicResponse<Self, Result<Outcome, AccountError>>;

    fn handle(&mut self, msg: Apply, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let user_id = self.user_id;
        let state = if self.shared { None } else { self.state };
        AtomicResponse::new(Box::pin(
            async move { apply(&store, user_id, state, msg).await }
                .into_actor(self)
                .map(|(state, result, saw_stale), act, ctx| {
                    act.state = state;
                    act.shared |= saw_stale;
                    if let Err(AccountError::Storage(_) | AccountError::Corrupt(..)) = &result {
                        // Restart from the store (Supervisor keeps the mailbox).
                        ctx.stop();
                    }
                    result
                }),
        ))
    }
}

/// Returns the state to keep (None: unknown, reload), the answer, and whether the stored
/// account had moved under the state we held.
async fn apply(
    store: &Store,
    user_id: Uuid,
    mut state: Option<AccountRecord>,
    msg: Apply,
) -> (Option<AccountRecord>, Result<Outcome, AccountError>, bool) {
    let mut saw_stale = false;
    for _ in 0..=STALE_RETRIES_MAX {
        let fresh = state.is_none();
        let current = match state {
            Some(s) => s,
            None => match load_off_thread(store, user_id).await {
                Ok(s) => s,
                Err(e) => return (None, Err(e), saw_stale),
            },
        };
        match attempt(store, &current, &msg).await {
            // A refusal writes nothing, so no condition tells us the balance we hold is stale:
            // another node (PostgreSQL store) may have added credits. Refuse only on a balance
            // read from the store.
            Ok(Attempt::Done(_, Outcome::InsufficientCredits { .. })) if !fresh => state = None,
            Ok(Attempt::Done(next, outcome)) => return (Some(next), Ok(outcome), saw_stale),
            Ok(Attempt::Stale) => {
                saw_stale = true;
                state = None;
            }
            Err(e) => return (None, Err(e), saw_stale),
        }
    }
    (None, Err(AccountError::Contended), saw_stale)
}

#[allow(clippy::large_enum_variant)] // short-lived, never stored
enum Attempt {
    Done(AccountRecord, Outcome),
    /// The stored account is not the one we hold: read it again.
    Stale,
}

async fn attempt(
    store: &Store,
    current: &AccountRecord,
    msg: &Apply,
) -> Result<Attempt, AccountError> {
    let user_id = current.user_id;
    let now = now_us();
    // An expired record is treated as absent and overwritten (the write is conditioned on it).
    let mut expired: Option<IdempotencyRecord> = None;
    if let Some(idem) = msg.idempotency {
        let key = keys::idempotency(user_id, &idem.key_hash);
        match store.get::<IdempotencyRecord>(&key)? {
            Some(seen) if now - seen.created_at_us >= IDEMPOTENCY_TTL_US => expired = Some(seen),
            Some(seen) if seen.request_hash != idem.request_hash => {
                return Ok(Attempt::Done(*current, Outcome::IdempotencyKeyReused));
            }
            Some(seen) => {
                let entry = store
                    .get::<LedgerEntry>(&keys::ledger(seen.ledger_id))?
                    .ok_or_else(|| {
                        AccountError::Corrupt(
                            user_id,
                            "idempotency record without its entry".into(),
                        )
                    })?;
                return Ok(Attempt::Done(*current, Outcome::AlreadyApplied { entry }));
            }
            None => {}
        }
    }
    let (next, entry) = match current.post(msg.posting.clone(), now) {
        Ok(v) => v,
        Err(PostingError::InsufficientCredits { balance, .. }) => {
            return Ok(Attempt::Done(
                *current,
                Outcome::InsufficientCredits { balance },
            ))
        }
        Err(PostingError::AmountOutOfRange) => return Err(AccountError::AmountOutOfRange),
    };
    let mut set = WriteSet::new();
    // Condition 0: the account on disk is exactly the one this actor believes in.
    set.require_equal(keys::account(user_id), current);
    set.put(keys::account(user_id), &next);
    set.put(keys::ledger(entry.id), &entry);
    let own_conditions = if let Some(idem) = msg.idempotency {
        let key = keys::idempotency(user_id, &idem.key_hash);
        match &expired {
            Some(old) => set.require_equal(key.clone(), old),
            None => set.require_absent::<IdempotencyRecord>(key.clone()),
        };
        set.put(
            key,
            &IdempotencyRecord {
                request_hash: idem.request_hash,
                ledger_id: entry.id,
                created_at_us: now,
            },
        );
        2
    } else {
        1
    };
    set.extend(msg.extra.clone());
    match store.write(set).await? {
        WriteOutcome::Committed => Ok(Attempt::Done(next, Outcome::Applied { entry })),
        WriteOutcome::ConditionFailed(i) if i < own_conditions => Ok(Attempt::Stale),
        WriteOutcome::ConditionFailed(i) => Ok(Attempt::Done(
            *current,
            Outcome::ExtraConditionFailed {
                index: i - own_conditions,
            },
        )),
    }
}

/// [`load`], on a thread of its own when the store is PostgreSQL: its reads wait for the
/// database, and this actor's thread serves other accounts (and HTTP requests) meanwhile. The
/// embedded store answers from memory-mapped pages, faster than a thread hop.
async fn load_off_thread(store: &Store, user_id: Uuid) -> Result<AccountRecord, AccountError> {
    if store.postgres().is_none() {
        return load(store, user_id);
    }
    // A thread of its own rather than tokio's blocking pool: the pool keeps idle threads for
    // 10 s, and an actix System waits for them when it stops.
    let store = store.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("account-load".into())
        .spawn(move || {
            let _ = tx.send(load(&store, user_id));
        })
        .map_err(|e| AccountError::Storage(StorageError::Engine(format!("load thread: {e}"))))?;
    rx.await
        .map_err(|_| AccountError::Storage(StorageError::Engine("load thread ended".into())))?
}

/// Reads the account back from disk and checks it against the head of its ledger.
fn load(store: &Store, user_id: Uuid) -> Result<AccountRecord, AccountError> {
    let account = store
        .get::<AccountRecord>(&keys::account(user_id))?
        .ok_or(AccountError::NoSuchAccount(user_id))?;
    let corrupt = |why: &str| Err(AccountError::Corrupt(user_id, why.to_string()));
    if account.user_id != user_id {
        return corrupt("account stored under another user's key");
    }
    if account.next_seq == 0 {
        if account.balance != 0 || account.chain_hash != [0; 32] || account.head_id.is_some() {
            return corrupt("empty ledger but non-empty account");
        }
        return Ok(account);
    }
    let Some(head) = account.head_id else {
        return corrupt("entries counted but no head entry");
    };
    let Some(last) = store.get::<LedgerEntry>(&keys::ledger(head))? else {
        return corrupt("the last ledger entry is missing");
    };
    if last.balance_after != account.balance
        || last.seq + 1 != account.next_seq
        || last.user_id != user_id
        || entry_hash(&encode(&last)) != account.chain_hash
    {
        return corrupt("the account does not match the head of its ledger");
    }
    Ok(account)
}
