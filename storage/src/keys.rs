//! Key layouts. Ids are UUID v7 (time-ordered) in big-endian bytes and sequences are big-endian,
//! so new keys append at the end of the tree instead of scattering writes.

use uuid::Uuid;

pub const USER_KEY_LEN: usize = 16;
pub const HASH_LEN: usize = 32;

pub fn user(id: Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

pub fn email(normalized: &str) -> Vec<u8> {
    normalized.as_bytes().to_vec()
}

pub fn token(hash: &[u8; HASH_LEN]) -> Vec<u8> {
    hash.to_vec()
}

pub fn token_by_user(user: Uuid, hash: &[u8; HASH_LEN]) -> Vec<u8> {
    let mut k = Vec::with_capacity(USER_KEY_LEN + HASH_LEN);
    k.extend_from_slice(user.as_bytes());
    k.extend_from_slice(hash);
    k
}

pub fn account(user: Uuid) -> Vec<u8> {
    user.as_bytes().to_vec()
}

/// A ledger entry's key: its id (time-ordered, so writes append).
pub fn ledger(entry_id: Uuid) -> Vec<u8> {
    entry_id.as_bytes().to_vec()
}

pub fn idempotency(user: Uuid, key_hash: &[u8; HASH_LEN]) -> Vec<u8> {
    token_by_user(user, key_hash)
}

/// An id as a key (workbenches, projects, brand kits, assets).
pub fn id(id: Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// An index key: (parent, child), both ids; scanning the parent's prefix lists its children.
pub fn pair(parent: Uuid, child: Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(32);
    k.extend_from_slice(parent.as_bytes());
    k.extend_from_slice(child.as_bytes());
    k
}

/// The child id of an index key made by [`pair`].
pub fn pair_child(key: &[u8]) -> Option<Uuid> {
    key.get(16..32).and_then(|b| Uuid::from_slice(b).ok())
}

/// `generations_live` key: deadline (big-endian, so the scan meets the earliest first), then id.
pub fn live_generation(deadline_at_us: i64, id: Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&(deadline_at_us.max(0) as u64).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// (deadline, id) of a `generations_live` key.
pub fn parse_live_generation(key: &[u8]) -> Option<(i64, Uuid)> {
    let deadline = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    Some((
        i64::try_from(deadline).ok()?,
        Uuid::from_slice(key.get(8..24)?).ok()?,
    ))
}

/// A subscription: (user, provider tag, the provider's subscription id). Scanning
/// [`user`]'s prefix lists a user's subscriptions.
pub fn subscription(user: Uuid, provider: &str, subscription_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(USER_KEY_LEN + provider.len() + 1 + subscription_id.len());
    k.extend_from_slice(user.as_bytes());
    k.extend_from_slice(provider.as_bytes());
    k.push(b':');
    k.extend_from_slice(subscription_id.as_bytes());
    k
}

/// `ticket_events` key: ticket id, then the event number (big-endian: a ticket's events in order).
pub fn ticket_event(ticket: Uuid, seq: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(ticket.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// (ticket, event number) of a [`ticket_event`] key.
pub fn parse_ticket_event(key: &[u8]) -> Option<(Uuid, u32)> {
    Some((
        Uuid::from_slice(key.get(..16)?).ok()?,
        u32::from_be_bytes(key.get(16..20)?.try_into().ok()?),
    ))
}

/// `tickets_awaiting_response` key: the same layout as [`live_generation`] (earliest first).
pub fn awaiting_response(due_at_us: i64, ticket: Uuid) -> Vec<u8> {
    live_generation(due_at_us, ticket)
}

/// A key the writer assigned from its per-table commit sequence (big-endian, so scans follow
/// commit order).
pub fn sequence(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// The sequence number of a key made by [`sequence`].
pub fn parse_sequence(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The smallest key strictly greater than every key that starts with `prefix`, for range ends.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_keys_follow_time() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(ledger(a) < ledger(b));
    }

    #[test]
    fn prefix_end_carries_over_max_bytes() {
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
    }
}
