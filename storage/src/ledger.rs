//! The money rules, as pure functions over records: posting an entry to an account and checking
//! an account against its ledger. The account actor and `verify` both use them, so the rule that
//! writes is the rule that checks.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::codec::encode;
use crate::records::{AccountRecord, LedgerEntry, LedgerKind};

/// The largest single movement accepted, far above any real pack, to keep sums far from overflow.
pub const AMOUNT_ABS_MAX: i64 = 1_000_000_000_000;

/// What a caller asks to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub amount: i64,
    pub kind: LedgerKind,
    pub description: String,
    pub generation_request_id: Option<Uuid>,
    pub invoice_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PostingError {
    #[error("the balance {balance} does not cover {amount}")]
    InsufficientCredits { balance: u64, amount: i64 },
    #[error("amount must be non-zero and at most {AMOUNT_ABS_MAX} in absolute value")]
    AmountOutOfRange,
}

pub fn entry_hash(entry_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(entry_bytes).into()
}

impl AccountRecord {
    pub fn empty(user_id: Uuid, now_us: i64) -> Self {
        AccountRecord {
            user_id,
            balance: 0,
            next_seq: 0,
            chain_hash: [0; 32],
            head_id: None,
            updated_at_us: now_us,
        }
    }

    /// Applies a posting: the new account state and the entry to store with it, in one write.
    pub fn post(
        &self,
        posting: Posting,
        now_us: i64,
    ) -> Result<(AccountRecord, LedgerEntry), PostingError> {
        if posting.amount == 0 || posting.amount.unsigned_abs() > AMOUNT_ABS_MAX.unsigned_abs() {
            return Err(PostingError::AmountOutOfRange);
        }
        let balance_after = if posting.amount < 0 {
            self.balance
                .checked_sub(posting.amount.unsigned_abs())
                .ok_or(PostingError::InsufficientCredits {
                    balance: self.balance,
                    amount: posting.amount,
                })?
        } else {
            self.balance
                .checked_add(posting.amount.unsigned_abs())
                .ok_or(PostingError::AmountOutOfRange)?
        };
        let entry = LedgerEntry {
            id: Uuid::now_v7(),
            user_id: self.user_id,
            seq: self.next_seq,
            amount: posting.amount,
            balance_after,
            kind: posting.kind,
            description: posting.description,
            generation_request_id: posting.generation_request_id,
            invoice_id: posting.invoice_id,
            created_at_us: now_us,
            prev_hash: self.chain_hash,
            prev_id: self.head_id,
        };
        let next = AccountRecord {
            user_id: self.user_id,
            balance: balance_after,
            next_seq: self.next_seq + 1,
            chain_hash: entry_hash(&encode(&entry)),
            head_id: Some(entry.id),
            updated_at_us: now_us,
        };
        next.assert_follows(self, &entry);
        Ok((next, entry))
    }

    /// TIGER_STYLE: the invariants of one mutation, checked right after it is computed.
    fn assert_follows(&self, before: &AccountRecord, entry: &LedgerEntry) {
        assert_eq!(
            self.user_id, before.user_id,
            "posting changed the account owner"
        );
        assert_eq!(
            self.next_seq,
            before.next_seq + 1,
            "ledger sequence must advance by one"
        );
        assert_eq!(
            i128::from(self.balance),
            i128::from(before.balance) + i128::from(entry.amount),
            "balance must move by exactly the entry amount"
        );
        assert_eq!(
            self.balance, entry.balance_after,
            "entry must record the new balance"
        );
        assert_eq!(
            entry.prev_hash, before.chain_hash,
            "entry must chain to the previous head"
        );
    }
}

/// Walks one account's ledger from its head back to its first entry, checking every rule on the
/// way (hash chain, sequence, owner, `balance_after`, never below zero, sums to the balance) in
/// constant memory. `fetch(id)` reads an entry's stored bytes. Returns each broken rule.
pub fn check_chain<E>(
    account: &AccountRecord,
    mut fetch: impl FnMut(Uuid) -> Result<Option<Vec<u8>>, E>,
) -> Result<Vec<String>, E> {
    let user = account.user_id;
    let mut problems = Vec::new();
    let mut expected_hash = account.chain_hash;
    let mut expected_balance = i128::from(account.balance);
    let mut next = account.head_id;
    let mut seq = account.next_seq;
    while let Some(id) = next {
        if seq == 0 {
            problems.push(format!(
                "ledger of {user} holds more entries than its account counts ({})",
                account.next_seq
            ));
            break;
        }
        seq -= 1;
        let Some(bytes) = fetch(id)? else {
            problems.push(format!(
                "ledger chain of {user} is broken at seq {seq}: entry {id} is missing"
            ));
            return Ok(problems);
        };
        let entry = match crate::codec::decode::<LedgerEntry>(&bytes) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("ledger entry {id} of {user} is unreadable: {e}"));
                return Ok(problems);
            }
        };
        if entry_hash(&bytes) != expected_hash {
            problems.push(format!(
                "ledger chain of {user} is broken at seq {seq}: an entry was rewritten or removed"
            ));
        }
        if entry.user_id != user || entry.seq != seq || entry.id != id {
            problems.push(format!(
                "ledger entry {id} is out of place (user {}, seq {}; expected {user}, {seq})",
                entry.user_id, entry.seq
            ));
        }
        if i128::from(entry.balance_after) != expected_balance {
            problems.push(format!(
                "ledger entry {seq} of {user} says balance_after {} but the chain expects {expected_balance}",
                entry.balance_after
            ));
        }
        expected_balance -= i128::from(entry.amount);
        if expected_balance < 0 {
            problems.push(format!(
                "balance of {user} goes below zero before seq {seq}"
            ));
        }
        expected_hash = entry.prev_hash;
        next = entry.prev_id;
    }
    if seq != 0 {
        problems.push(format!(
            "account {user} counts {} ledger entries but its chain ends after {}",
            account.next_seq,
            account.next_seq - seq
        ));
    }
    if expected_balance != 0 {
        problems.push(format!(
            "balance of {user} is {} but its ledger sums to {}",
            account.balance,
            i128::from(account.balance) - expected_balance
        ));
    }
    if expected_hash != [0; 32] && problems.is_empty() {
        problems.push(format!(
            "ledger chain of {user} does not start at the beginning"
        ));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posting(amount: i64) -> Posting {
        Posting {
            amount,
            kind: LedgerKind::AdminAdjustment,
            description: "t".into(),
            generation_request_id: None,
            invoice_id: None,
        }
    }

    #[test]
    fn deduct_beyond_balance_is_refused() {
        let a = AccountRecord::empty(Uuid::now_v7(), 0);
        let (a, _) = a.post(posting(5), 1).unwrap();
        assert_eq!(
            a.post(posting(-6), 2),
            Err(PostingError::InsufficientCredits {
                balance: 5,
                amount: -6
            })
        );
    }

    #[test]
    fn a_posted_chain_checks_clean_and_a_rewrite_is_caught() {
        let mut a = AccountRecord::empty(Uuid::now_v7(), 0);
        let mut stored: std::collections::HashMap<Uuid, (Vec<u8>, LedgerEntry)> =
            Default::default();
        let mut ids = Vec::new();
        for amount in [10, -3, 7, -14] {
            let (next, e) = a.post(posting(amount), 1).unwrap();
            ids.push(e.id);
            stored.insert(e.id, (encode(&e), e));
            a = next;
        }
        let check = |s: &std::collections::HashMap<Uuid, (Vec<u8>, LedgerEntry)>| {
            check_chain::<()>(&a, |id| Ok(s.get(&id).map(|(b, _)| b.clone()))).unwrap()
        };
        assert!(check(&stored).is_empty(), "{:?}", check(&stored));
        let (_, e) = stored.get_mut(&ids[1]).unwrap();
        e.description = "rewritten".into();
        let rewritten = encode(&*e);
        stored.get_mut(&ids[1]).unwrap().0 = rewritten;
        assert!(!check(&stored).is_empty());
        stored.remove(&ids[2]);
        assert!(check(&stored).iter().any(|p| p.contains("is missing")));
    }

    #[test]
    fn zero_and_huge_amounts_are_refused() {
        let a = AccountRecord::empty(Uuid::now_v7(), 0);
        assert_eq!(a.post(posting(0), 1), Err(PostingError::AmountOutOfRange));
        assert_eq!(
            a.post(posting(AMOUNT_ABS_MAX + 1), 1),
            Err(PostingError::AmountOutOfRange)
        );
    }
}
