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
    /// The progressive profile's answers (`GET /api/v1/me` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<std::collections::BTreeMap<String, String>>,
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
            profile: None,
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

// --- Workspace ----------------------------------------------------------------------------------

use storage::records::{AssetRecord, BrandKitRecord, ProjectRecord, WorkbenchRecord};

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkbenchView {
    pub id: Uuid,
    pub name: String,
    pub user_id: Uuid,
    pub default_brand_kit_id: Option<Uuid>,
    /// The first projects (oldest first), at most 100: the rest are paged through
    /// `GET /api/v1/projects?workbench_id=`.
    pub project_ids: Vec<Uuid>,
    /// False when the workbench has more projects than `project_ids` shows.
    pub project_ids_complete: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl WorkbenchView {
    pub fn new(
        w: &WorkbenchRecord,
        (project_ids, project_ids_complete): (Vec<Uuid>, bool),
    ) -> Self {
        WorkbenchView {
            id: w.id,
            name: w.name.clone(),
            user_id: w.user_id,
            default_brand_kit_id: w.default_brand_kit_id,
            project_ids,
            project_ids_complete,
            created_at: rfc3339(w.created_at_us),
            updated_at: rfc3339(w.updated_at_us),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    pub id: Uuid,
    pub name: String,
    pub workbench_id: Uuid,
    pub user_id: Uuid,
    pub brand_kit_id: Option<Uuid>,
    /// The kit a generation here uses: the project's, else the workbench default, else the
    /// user's default kit.
    pub effective_brand_kit_id: Option<Uuid>,
    /// The first assets (oldest first), at most 100: the rest are paged through
    /// `GET /api/v1/projects/{id}/assets`.
    pub asset_ids: Vec<Uuid>,
    /// False when the project has more assets than `asset_ids` shows.
    pub asset_ids_complete: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl ProjectView {
    pub fn new(
        p: &ProjectRecord,
        effective_brand_kit_id: Option<Uuid>,
        (asset_ids, asset_ids_complete): (Vec<Uuid>, bool),
    ) -> Self {
        ProjectView {
            id: p.id,
            name: p.name.clone(),
            workbench_id: p.workbench_id,
            user_id: p.user_id,
            brand_kit_id: p.brand_kit_id,
            effective_brand_kit_id,
            asset_ids,
            asset_ids_complete,
            created_at: rfc3339(p.created_at_us),
            updated_at: rfc3339(p.updated_at_us),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ColorView {
    #[schema(example = "#1A2B3C")]
    pub hex: String,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FontView {
    pub family: String,
    pub weight: Option<u16>,
    pub usage: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrandKitView {
    pub id: Uuid,
    pub name: String,
    pub user_id: Uuid,
    pub colors: Vec<ColorView>,
    pub fonts: Vec<FontView>,
    pub logos: Vec<String>,
    pub is_default: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&BrandKitRecord> for BrandKitView {
    fn from(k: &BrandKitRecord) -> Self {
        BrandKitView {
            id: k.id,
            name: k.name.clone(),
            user_id: k.user_id,
            colors: k
                .colors
                .iter()
                .map(|c| ColorView {
                    hex: c.hex.clone(),
                    name: c.name.clone(),
                })
                .collect(),
            fonts: k
                .fonts
                .iter()
                .map(|f| FontView {
                    family: f.family.clone(),
                    weight: f.weight,
                    usage: f.usage.clone(),
                })
                .collect(),
            logos: k.logos.clone(),
            is_default: k.is_default,
            created_at: rfc3339(k.created_at_us),
            updated_at: rfc3339(k.updated_at_us),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub kind: String,
    pub path: String,
    pub mime: String,
    pub size: u64,
    pub generation_request_id: Option<Uuid>,
    pub created_at: String,
}

impl From<&AssetRecord> for AssetView {
    fn from(a: &AssetRecord) -> Self {
        AssetView {
            id: a.id,
            project_id: a.project_id,
            kind: a.kind.clone(),
            path: a.path.clone(),
            mime: a.mime.clone(),
            size: a.size,
            generation_request_id: a.generation_request_id,
            created_at: rfc3339(a.created_at_us),
        }
    }
}

/// A page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Listing<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
