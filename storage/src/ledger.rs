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
        };
        let next = AccountRecord {
            user_id: self.user_id,
            balance: balance_after,
            next_seq: self.next_seq + 1,
            chain_hash: entry_hash(&encode(&entry)),
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

/// Checks one account against its ledger, fed entry by entry in key order, so a ledger of any
/// length is checked in constant memory.
pub struct ChainCheck {
    user_id: Uuid,
    expected_seq: u64,
    running: i128,
    head: [u8; 32],
    problems: Vec<String>,
}

impl ChainCheck {
    pub fn new(user_id: Uuid) -> Self {
        ChainCheck {
            user_id,
            expected_seq: 0,
            running: 0,
            head: [0; 32],
            problems: Vec::new(),
        }
    }

    pub fn step(&mut self, key_seq: u64, bytes: &[u8], entry: &LedgerEntry) {
        let user = self.user_id;
        if key_seq != self.expected_seq {
            self.problems.push(format!(
                "ledger of {user} is not contiguous: expected seq {}, found {key_seq}",
                self.expected_seq
            ));
        }
        if entry.seq != key_seq || entry.user_id != user {
            self.problems.push(format!(
                "ledger entry {} is stored under the wrong key ({user}, seq {key_seq})",
                entry.id
            ));
        }
        if entry.prev_hash != self.head {
            self.problems.push(format!(
                "ledger chain of {user} is broken at seq {key_seq}: an entry was rewritten or removed"
            ));
        }
        self.running += i128::from(entry.amount);
        if self.running < 0 {
            self.problems.push(format!(
                "balance of {user} goes below zero at seq {key_seq}"
            ));
        }
        if i128::from(entry.balance_after) != self.running {
            self.problems.push(format!(
                "ledger entry {key_seq} of {user} says balance_after {} but the running sum is {}",
                entry.balance_after, self.running
            ));
        }
        self.head = entry_hash(bytes);
        self.expected_seq = key_seq + 1;
    }

    /// The problems found, checked against the account record (None: the account is missing).
    pub fn finish(mut self, account: Option<&AccountRecord>) -> Vec<String> {
        let user = self.user_id;
        let Some(account) = account else {
            self.problems
                .push(format!("ledger entries of {user} have no account record"));
            return self.problems;
        };
        if self.expected_seq != account.next_seq {
            self.problems.push(format!(
                "account {user} expects {} ledger entries but {} are stored",
                account.next_seq, self.expected_seq
            ));
        }
        if self.running != i128::from(account.balance) {
            self.problems.push(format!(
                "balance of {user} is {} but its ledger sums to {}",
                account.balance, self.running
            ));
        }
        if self.head != account.chain_hash {
            self.problems.push(format!(
                "account {user} does not point at the head of its ledger chain"
            ));
        }
        self.problems
    }
}

/// Checks one account against its full ledger, in order. Returns each broken rule as a sentence.
pub fn check_chain<'a>(
    account: &AccountRecord,
    entries: impl IntoIterator<Item = (u64, &'a [u8], LedgerEntry)>,
) -> Vec<String> {
    let mut check = ChainCheck::new(account.user_id);
    for (seq, bytes, entry) in entries {
        check.step(seq, bytes, &entry);
    }
    check.finish(Some(account))
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
        let mut stored = Vec::new();
        for amount in [10, -3, 7, -14] {
            let (next, e) = a.post(posting(amount), 1).unwrap();
            stored.push((e.seq, encode(&e), e));
            a = next;
        }
        fn view(s: &[(u64, Vec<u8>, LedgerEntry)]) -> Vec<(u64, &[u8], LedgerEntry)> {
            s.iter()
                .map(|(k, b, e)| (*k, b.as_slice(), e.clone()))
                .collect()
        }
        assert!(check_chain(&a, view(&stored)).is_empty());
        stored[1].2.description = "rewritten".into();
        stored[1].1 = encode(&stored[1].2);
        assert!(!check_chain(&a, view(&stored)).is_empty());
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
