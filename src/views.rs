//! JSON shapes of the API (SPEC field names), built from stored records.

use serde::Serialize;
use storage::records::{LedgerEntry, UserRecord};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// RFC 3339 UTC from stored microseconds.
pub fn rfc3339(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    #[schema(example = "user")]
    pub role: String,
    #[schema(example = "free")]
    pub subscription_tier: String,
    pub credit_balance: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl UserView {
    pub fn new(u: &UserRecord, credit_balance: u64) -> Self {
        UserView {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.as_str().into(),
            subscription_tier: u.tier.as_str().into(),
            credit_balance,
            created_at: rfc3339(u.created_at_us),
            updated_at: rfc3339(u.updated_at_us),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryView {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Positive adds, negative deducts.
    pub amount: i64,
    pub balance_after: u64,
    #[schema(example = "admin_adjustment")]
    pub kind: String,
    pub description: String,
    pub generation_request_id: Option<Uuid>,
    pub invoice_id: Option<Uuid>,
    pub created_at: String,
}

impl From<&LedgerEntry> for LedgerEntryView {
    fn from(e: &LedgerEntry) -> Self {
        LedgerEntryView {
            id: e.id,
            user_id: e.user_id,
            amount: e.amount,
            balance_after: e.balance_after,
            kind: e.kind.as_str().into(),
            description: e.description.clone(),
            generation_request_id: e.generation_request_id,
            invoice_id: e.invoice_id,
            created_at: rfc3339(e.created_at_us),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    #[schema(example = "insufficient_credits")]
    pub code: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}
