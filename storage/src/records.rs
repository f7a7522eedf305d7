//! The stored records. Every field change bumps the record's `VERSION` (see [`crate::codec`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{codec::Record, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    User,
    Agent,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Declared from least to most: the derived order is the order of what a tier grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    Free,
    Pro,
    Team,
    Enterprise,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Team => "team",
            Tier::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "free" => Some(Tier::Free),
            "pro" => Some(Tier::Pro),
            "team" => Some(Tier::Team),
            "enterprise" => Some(Tier::Enterprise),
            _ => None,
        }
    }
}

/// A user. The password hash is an Argon2id PHC string; it is never printed by `Debug`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub id: Uuid,
    /// Lower-cased, trimmed: the unique key of `users_by_email`.
    pub email: String,
    pub name: String,
    pub role: Role,
    pub tier: Tier,
    pub password_hash: String,
    /// Bumped on every password change: reset tokens issued before it stop working.
    pub credentials_version: u32,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("tier", &self.tier)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

impl Record for UserRecord {
    const TABLE: Table = Table::Users;
    const VERSION: u8 = 1;
}

/// `users_by_email`: normalized email → user id.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmailIndex {
    pub user_id: Uuid,
}

impl Record for EmailIndex {
    const TABLE: Table = Table::UsersByEmail;
    const VERSION: u8 = 1;
}

/// A bearer token, keyed by the SHA-256 of the token: the token itself is never stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub user_id: Uuid,
    /// The user's `credentials_version` when issued: a token older than the user's last
    /// password change never authenticates again, however many there are (revocation is one
    /// write to the user, not one delete per token).
    pub credentials_version: u32,
    pub created_at_us: i64,
    pub expires_at_us: i64,
}

impl Record for TokenRecord {
    const TABLE: Table = Table::Tokens;
    const VERSION: u8 = 2;
}

/// Version 1 of [`TokenRecord`] (no credentials version), read only by the schema upgrade.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecordV1 {
    pub user_id: Uuid,
    pub created_at_us: i64,
    pub expires_at_us: i64,
}

impl Record for TokenRecordV1 {
    const TABLE: Table = Table::Tokens;
    const VERSION: u8 = 1;
}

/// `tokens_by_user`: (user, token hash) → marker, so every session of a user can be revoked.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenOfUser {
    pub expires_at_us: i64,
}

impl Record for TokenOfUser {
    const TABLE: Table = Table::TokensByUser;
    const VERSION: u8 = 1;
}

/// The live password reset code of a user, keyed by the user id: a new request replaces the
/// previous code, so a user has at most one. Only the code's SHA-256 is stored; the code mailed
/// is `<user id>.<secret>`, so confirming finds this record without an index.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResetRecord {
    pub user_id: Uuid,
    pub code_hash: [u8; 32],
    /// The user's `credentials_version` when issued.
    pub credentials_version: u32,
    pub created_at_us: i64,
    pub expires_at_us: i64,
}

impl Record for ResetRecord {
    const TABLE: Table = Table::ResetTokens;
    const VERSION: u8 = 2;
}

/// A record that belongs to one user: the record rules (who may see or change it) key on this.
pub trait Owned: Record {
    fn owner(&self) -> Uuid;

    /// The workbench the record lives in, if any: while that workbench is being deleted the
    /// record is invisible.
    fn workbench(&self) -> Option<Uuid> {
        None
    }
}

/// `features`: toggle name → its value as an admin last set it. A toggle without a record has
/// the value the environment gives at start.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeatureRecord {
    pub enabled: bool,
    pub changed_by: Uuid,
    pub changed_at_us: i64,
}

impl Record for FeatureRecord {
    const TABLE: Table = Table::Features;
    const VERSION: u8 = 1;
}

/// `feature_history`: commit sequence → one change of a toggle (who, when, old, new).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeatureChange {
    pub name: String,
    pub old: bool,
    pub new: bool,
    pub changed_by: Uuid,
    pub changed_at_us: i64,
}

impl Record for FeatureChange {
    const TABLE: Table = Table::FeatureHistory;
    const VERSION: u8 = 1;
}

/// `usage`: user → what their workspace holds (workbenches, projects, brand kits and assets,
/// and the assets' bytes), kept in the same write as every change of it, so a per-user bound
/// is one read, not a scan.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageRecord {
    pub records: u64,
    pub asset_bytes: u64,
}

impl Record for UsageRecord {
    const TABLE: Table = Table::Usage;
    const VERSION: u8 = 1;
}

/// `deleting`: (owner, workbench) → a workbench whose cascade is too large for one write,
/// being deleted in bounded batches by its owner's workspace actor. While it exists the
/// workbench and everything in it are invisible; after a crash the deletion resumes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeletingWorkbench {
    pub started_at_us: i64,
}

impl Record for DeletingWorkbench {
    const TABLE: Table = Table::Deleting;
    const VERSION: u8 = 1;
}

/// The kinds of ledger entries (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerKind {
    SignupGrant,
    PlanGrant,
    Purchase,
    GenerationCharge,
    GenerationRefund,
    AdminAdjustment,
    PaymentReversal,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::SignupGrant => "signup_grant",
            LedgerKind::PlanGrant => "plan_grant",
            LedgerKind::Purchase => "purchase",
            LedgerKind::GenerationCharge => "generation_charge",
            LedgerKind::GenerationRefund => "generation_refund",
            LedgerKind::AdminAdjustment => "admin_adjustment",
            LedgerKind::PaymentReversal => "payment_reversal",
        }
    }
}

/// The balance of one user and the head of their ledger chain.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountRecord {
    pub user_id: Uuid,
    pub balance: u64,
    /// Sequence number the next ledger entry will get; entries are `0..next_seq`.
    pub next_seq: u64,
    /// SHA-256 of the stored bytes of the last ledger entry (all zeros before the first).
    pub chain_hash: [u8; 32],
    /// Id (= ledger key) of the last ledger entry; each entry names its predecessor.
    pub head_id: Option<Uuid>,
    pub updated_at_us: i64,
}

impl Record for AccountRecord {
    const TABLE: Table = Table::Accounts;
    const VERSION: u8 = 2;
}

/// One append-only ledger entry, keyed by its id (UUID v7, time-ordered): new entries of every
/// user append at the end of one table instead of landing in a random leaf per user. A user's
/// entries form a list through `prev_id`, newest first from the account's `head_id`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub user_id: Uuid,
    pub seq: u64,
    pub amount: i64,
    pub balance_after: u64,
    pub kind: LedgerKind,
    pub description: String,
    pub generation_request_id: Option<Uuid>,
    pub invoice_id: Option<Uuid>,
    pub created_at_us: i64,
    /// SHA-256 of the previous entry's stored bytes: rewriting any entry breaks the chain.
    pub prev_hash: [u8; 32],
    /// The same user's previous entry (None for the first).
    pub prev_id: Option<Uuid>,
}

impl Record for LedgerEntry {
    const TABLE: Table = Table::Ledger;
    const VERSION: u8 = 2;
}

/// How long an idempotency key is remembered (SPEC §7: 24 h); older records are ignored and
/// purged.
pub const IDEMPOTENCY_TTL_US: i64 = 24 * 3600 * 1_000_000;

/// A remembered idempotency key of a money operation: (user, SHA-256 of scope and key).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// SHA-256 of what was asked, so the same key with another request is told apart.
    pub request_hash: [u8; 32],
    /// The ledger entry the first request wrote.
    pub ledger_id: Uuid,
    pub created_at_us: i64,
}

impl Record for IdempotencyRecord {
    const TABLE: Table = Table::Idempotency;
    const VERSION: u8 = 2;
}

/// `meta`: the store's own facts (schema version).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetaRecord {
    pub schema_version: u32,
    pub created_at_us: i64,
}

impl Record for MetaRecord {
    const TABLE: Table = Table::Meta;
    const VERSION: u8 = 1;
}

pub const META_KEY: &[u8] = b"store";
/// 3: `outbox_order` (commit-ordered keys for the publisher's cursor). A version-2 store is
/// upgraded at open: each outbox entry gets its order entry.
/// 4: tokens carry the user's credentials version; reset codes are keyed by user (one live
/// code each). A version-3 store is upgraded at open: tokens get their user's version, and
/// outstanding reset codes (an hour's worth at most) are dropped.
///
/// 5: subscriptions keyed by (user, provider, subscription id) instead of by user.
/// 6: per-user workspace usage (`usage`), computed at upgrade.
/// 7: a user's generation requests are listed through the charges of their ledger chain, and
/// `generations_by_user` is no longer written (its entries stay). Nothing to convert; the
/// version only keeps an older build, which would list just the requests it indexed, from
/// opening a store this one wrote.
/// 8: an existing account's new versions go to the embedded store's `account_journal` and
/// reach `accounts` when the journal is folded ([`crate::journal`]): a build before 8 would
/// read older balances from a store that stopped with a journal, so it must not open one.
/// Nothing changes on PostgreSQL but the number.
pub const SCHEMA_VERSION: u32 = 8;
/// The oldest record schema a PostgreSQL database may be at for this build to move it to
/// [`SCHEMA_VERSION`] (the embedded store upgrades from 2).
pub const PG_SCHEMA_UPGRADABLE_FROM: u32 = 6;

// --- Creative workspace -------------------------------------------------------------------------

/// A workbench, keyed by its id. Owned by `user_id`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkbenchRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub default_brand_kit_id: Option<Uuid>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl Record for WorkbenchRecord {
    const TABLE: Table = Table::Workbenches;
    const VERSION: u8 = 1;
}

/// A project, keyed by its id; `user_id` is always its workbench's owner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProjectRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub workbench_id: Uuid,
    pub name: String,
    /// Overrides the workbench default.
    pub brand_kit_id: Option<Uuid>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl Record for ProjectRecord {
    const TABLE: Table = Table::Projects;
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BrandColor {
    /// `#RRGGBB`, upper-cased.
    pub hex: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BrandFont {
    pub family: String,
    pub weight: Option<u16>,
    pub usage: Option<String>,
}

/// A brand kit, keyed by its id. At most one per user has `is_default`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BrandKitRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub colors: Vec<BrandColor>,
    pub fonts: Vec<BrandFont>,
    /// Object-store paths.
    pub logos: Vec<String>,
    pub is_default: bool,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl Record for BrandKitRecord {
    const TABLE: Table = Table::BrandKits;
    const VERSION: u8 = 1;
}

/// An asset of a project (an upload, or an output of a generation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssetRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub project_id: Uuid,
    pub kind: String,
    pub path: String,
    pub mime: String,
    pub size: u64,
    pub generation_request_id: Option<Uuid>,
    pub created_at_us: i64,
}

impl Record for AssetRecord {
    const TABLE: Table = Table::Assets;
    const VERSION: u8 = 1;
}

macro_rules! index_record {
    ($(#[$doc:meta] $name:ident => $table:expr),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
        pub struct $name;

        impl Record for $name {
            const TABLE: Table = $table;
            const VERSION: u8 = 1;
        }
    )*};
}

index_record! {
    /// `workbenches_by_user`: (user, workbench) → marker.
    WorkbenchOfUser => Table::WorkbenchesByUser,
    /// `projects_by_workbench`: (workbench, project) → marker.
    ProjectOfWorkbench => Table::ProjectsByWorkbench,
    /// `projects_by_user`: (user, project) → marker.
    ProjectOfUser => Table::ProjectsByUser,
    /// `brand_kits_by_user`: (user, kit) → marker.
    BrandKitOfUser => Table::BrandKitsByUser,
    /// `assets_by_project`: (project, asset) → marker.
    AssetOfProject => Table::AssetsByProject,
}

// --- Generation requests ------------------------------------------------------------------------

/// SPEC §7 statuses. The order of the variants is the order a request moves in; the last three
/// are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GenStatus {
    Pending,
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl GenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GenStatus::Pending => "pending",
            GenStatus::Queued => "queued",
            GenStatus::Processing => "processing",
            GenStatus::Completed => "completed",
            GenStatus::Failed => "failed",
            GenStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<GenStatus> {
        [
            GenStatus::Pending,
            GenStatus::Queued,
            GenStatus::Processing,
            GenStatus::Completed,
            GenStatus::Failed,
            GenStatus::Cancelled,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }

    /// How far along: a status never moves to a lower rank.
    pub fn rank(self) -> u8 {
        match self {
            GenStatus::Pending => 0,
            GenStatus::Queued => 1,
            GenStatus::Processing => 2,
            GenStatus::Completed | GenStatus::Failed | GenStatus::Cancelled => 3,
        }
    }

    pub fn is_terminal(self) -> bool {
        self.rank() == 3
    }

    /// Terminal states whose cost goes back to the user.
    pub fn is_refunded(self) -> bool {
        matches!(self, GenStatus::Failed | GenStatus::Cancelled)
    }
}

/// A generation request, keyed by its id (UUID v7).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenerationRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub project_id: Uuid,
    pub prompt: String,
    pub format: String,
    pub variations: u8,
    /// The client's `params` object, as JSON text.
    pub params_json: String,
    pub cost: u64,
    pub status: GenStatus,
    pub error: Option<String>,
    /// Assets the worker produced (created in the project on completion).
    pub asset_ids: Vec<Uuid>,
    /// Past this, a request that has not completed fails with `generation_timeout`.
    pub deadline_at_us: i64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl Record for GenerationRecord {
    const TABLE: Table = Table::Generations;
    const VERSION: u8 = 1;
}

/// `outbox`: generation id → the job message, until the broker confirms it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutboxRecord {
    pub generation_id: Uuid,
    /// The JSON job message, exactly as published.
    pub payload: Vec<u8>,
    pub created_at_us: i64,
}

impl Record for OutboxRecord {
    const TABLE: Table = Table::Outbox;
    const VERSION: u8 = 1;
}

/// `outbox_order`: commit sequence → the generation whose job entered the outbox. The writer
/// assigns the key when it applies the set ([`crate::WriteSet::append`]), so keys grow in commit
/// order and a cursor over this table can never be passed by an entry that commits later. An
/// entry whose outbox record is gone (cancelled or failed before publishing) is removed by the
/// publisher when its cursor reaches it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutboxOrder {
    pub generation_id: Uuid,
}

impl Record for OutboxOrder {
    const TABLE: Table = Table::OutboxOrder;
    const VERSION: u8 = 1;
}

index_record! {
    /// `generations_by_user`: (user, generation) → marker. Retired in schema 7: `verify` only.
    GenerationOfUser => Table::GenerationsByUser,
    /// `generations_live`: (deadline, generation) → marker, for every request not yet terminal.
    LiveGeneration => Table::GenerationsLive,
}

// --- Billing ------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Provider {
    Stripe,
    Paypal,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Paypal => "paypal",
        }
    }
}

/// `processed_events`: "provider:event id" → when and what. Written in the same atomic write as
/// the event's effect, so an event applies at most once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessedEvent {
    pub event_type: String,
    /// What was done: "applied", "ignored: …", "mismatch: …".
    pub outcome: String,
    pub received_at_us: i64,
}

impl Record for ProcessedEvent {
    const TABLE: Table = Table::ProcessedEvents;
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubStatus {
    Active,
    PastDue,
    Cancelled,
    /// Started but not paid (Stripe `incomplete`, `unpaid`), or paused: no tier, no credits.
    /// Appended last, so records written before it decode unchanged.
    Inactive,
}

impl SubStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubStatus::Active => "active",
            SubStatus::PastDue => "past_due",
            SubStatus::Cancelled => "cancelled",
            SubStatus::Inactive => "inactive",
        }
    }

    /// Whether a subscription in this status gives its tier. Past due keeps it while the
    /// provider retries the payment; the provider cancels if it never comes.
    pub fn grants_tier(self) -> bool {
        matches!(self, SubStatus::Active | SubStatus::PastDue)
    }
}

/// `subscriptions`: (user, provider, provider's subscription id) → that subscription. A user
/// may have several (a second checkout does not overwrite the first); their tier is the
/// highest among those that grant one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub user_id: Uuid,
    pub provider: Provider,
    pub customer_id: Option<String>,
    pub subscription_id: String,
    pub tier: Tier,
    pub status: SubStatus,
    pub current_period_end_us: Option<i64>,
    /// The provider's `created` time of the last event applied: older events do not roll back.
    pub last_event_at_us: i64,
    pub updated_at_us: i64,
}

impl Record for SubscriptionRecord {
    const TABLE: Table = Table::Subscriptions;
    const VERSION: u8 = 1;
}

/// `billing_refs`: a provider's id ("stripe:cus:…", "stripe:sub:…", "paypal:sub:…", and natural
/// keys of effects such as "stripe:invoice:…") → the user, and the invoice it produced if any.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct BillingRef {
    pub user_id: Uuid,
    pub invoice_id: Option<Uuid>,
}

impl Record for BillingRef {
    const TABLE: Table = Table::BillingRefs;
    const VERSION: u8 = 1;
}

/// `purchases`: "stripe:pi:…" / "paypal:capture:…" → a credit pack purchase, for refunds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PurchaseRecord {
    pub user_id: Uuid,
    pub pack: String,
    pub credits: u64,
    pub amount_minor: u64,
    pub currency: String,
    pub invoice_id: Uuid,
    /// Cumulative refunded money, and the credits reversed for it so far.
    pub refunded_minor: u64,
    pub reversed_credits: u64,
    /// Credits that should have been reversed but the balance could not cover.
    pub owed_credits: u64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl Record for PurchaseRecord {
    const TABLE: Table = Table::Purchases;
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InvoiceLine {
    pub description: String,
    pub quantity: u64,
    pub amount_minor: i64,
}

/// An invoice, keyed by id, numbered gaplessly per year (`CF/2026/000001`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InvoiceRecord {
    pub id: Uuid,
    pub number: String,
    pub year: u16,
    pub seq: u64,
    pub user_id: Uuid,
    pub provider: Provider,
    pub provider_ref: String,
    pub amount_minor: u64,
    pub currency: String,
    /// "paid", "refunded", "partially_refunded".
    pub status: String,
    pub lines: Vec<InvoiceLine>,
    pub created_at_us: i64,
}

impl Record for InvoiceRecord {
    const TABLE: Table = Table::Invoices;
    const VERSION: u8 = 1;
}

/// `invoice_counters`: year → the next number to assign.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct InvoiceCounter {
    pub next: u64,
}

impl Record for InvoiceCounter {
    const TABLE: Table = Table::InvoiceCounters;
    const VERSION: u8 = 1;
}

index_record! {
    /// `invoices_by_user`: (user, invoice) → marker.
    InvoiceOfUser => Table::InvoicesByUser,
}

macro_rules! owned_by_user_id {
    ($($t:ty),*) => {$(
        impl Owned for $t {
            fn owner(&self) -> Uuid {
                self.user_id
            }
        }
    )*};
}

owned_by_user_id!(
    BrandKitRecord,
    AssetRecord,
    GenerationRecord,
    InvoiceRecord,
    TemplateRecord
);

impl Owned for WorkbenchRecord {
    fn owner(&self) -> Uuid {
        self.user_id
    }

    fn workbench(&self) -> Option<Uuid> {
        Some(self.id)
    }
}

impl Owned for ProjectRecord {
    fn owner(&self) -> Uuid {
        self.user_id
    }

    fn workbench(&self) -> Option<Uuid> {
        Some(self.workbench_id)
    }
}

// --- Templates ----------------------------------------------------------------------------------

/// A saved generation template of a user (SPEC §10), keyed by its id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TemplateRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub prompt: String,
    pub format: String,
    pub variations: u8,
    /// A JSON object, as text.
    pub params_json: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl Record for TemplateRecord {
    const TABLE: Table = Table::Templates;
    const VERSION: u8 = 1;
}

index_record! {
    /// `templates_by_user`: (user, template) → marker.
    TemplateOfUser => Table::TemplatesByUser,
}

// --- Progressive profiling ------------------------------------------------------------------------

/// `profiles`: user → their answers to the profile questions (key → value).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileRecord {
    pub answers: std::collections::BTreeMap<String, String>,
    pub updated_at_us: i64,
}

impl Record for ProfileRecord {
    const TABLE: Table = Table::Profiles;
    const VERSION: u8 = 1;
}

// --- Helpdesk -------------------------------------------------------------------------------------

/// Where a ticket stands (SPEC §9). `closed` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketStage {
    New,
    InProgress,
    WaitingCustomer,
    Resolved,
    Closed,
}

impl TicketStage {
    pub const ALL: [TicketStage; 5] = [
        TicketStage::New,
        TicketStage::InProgress,
        TicketStage::WaitingCustomer,
        TicketStage::Resolved,
        TicketStage::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketStage::New => "new",
            TicketStage::InProgress => "in_progress",
            TicketStage::WaitingCustomer => "waiting_customer",
            TicketStage::Resolved => "resolved",
            TicketStage::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<TicketStage> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Open tickets count against a customer's limit; resolved ones may still reopen.
    pub fn is_open(self) -> bool {
        !matches!(self, TicketStage::Resolved | TicketStage::Closed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketPriority {
    Low,
    Normal,
    High,
    Urgent,
}

impl TicketPriority {
    pub const ALL: [TicketPriority; 4] = [
        TicketPriority::Low,
        TicketPriority::Normal,
        TicketPriority::High,
        TicketPriority::Urgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketPriority::Low => "low",
            TicketPriority::Normal => "normal",
            TicketPriority::High => "high",
            TicketPriority::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<TicketPriority> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketChannel {
    Web,
    Chat,
}

impl TicketChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketChannel::Web => "web",
            TicketChannel::Chat => "chat",
        }
    }

    pub fn parse(s: &str) -> Option<TicketChannel> {
        [TicketChannel::Web, TicketChannel::Chat]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// The first-response promise of a ticket, as shown: derived from the stored fields and the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaStatus {
    Pending,
    Met,
    Breached,
}

impl SlaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaStatus::Pending => "pending",
            SlaStatus::Met => "met",
            SlaStatus::Breached => "breached",
        }
    }

    pub fn parse(s: &str) -> Option<SlaStatus> {
        [SlaStatus::Pending, SlaStatus::Met, SlaStatus::Breached]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// A support ticket (the seed's `helpdesk.ticket`), keyed by its id. It belongs to the customer
/// who opened it; every change of it goes through that customer's workspace actor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TicketRecord {
    pub id: Uuid,
    /// Gapless from 1 across all tickets (`HD-000001`).
    pub number: u64,
    pub user_id: Uuid,
    pub subject: String,
    pub description: String,
    pub channel: TicketChannel,
    pub stage: TicketStage,
    pub priority: TicketPriority,
    pub assignee_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub generation_request_id: Option<Uuid>,
    pub first_response_due_at_us: i64,
    /// The first public reply by an agent or admin.
    pub first_responded_at_us: Option<i64>,
    /// Set once the deadline passed without a first response (by the sweep, or by a late reply).
    pub sla_breached: bool,
    /// Messages posted, internal notes included (bounded per ticket).
    pub messages_count: u32,
    /// Entries of this ticket's event log (messages and stage changes): the last event's number.
    pub events_count: u32,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl TicketRecord {
    pub fn sla_status(&self, now_us: i64) -> SlaStatus {
        match self.first_responded_at_us {
            Some(at) if at <= self.first_response_due_at_us => SlaStatus::Met,
            Some(_) => SlaStatus::Breached,
            None if self.sla_breached || now_us > self.first_response_due_at_us => {
                SlaStatus::Breached
            }
            None => SlaStatus::Pending,
        }
    }

    /// Whether the ticket belongs in `tickets_awaiting_response` (the SLA sweep's index).
    pub fn awaits_response(&self) -> bool {
        self.first_responded_at_us.is_none() && !self.sla_breached
    }

    /// `HD-000123`.
    pub fn display_number(&self) -> String {
        format!("HD-{:06}", self.number)
    }
}

impl Record for TicketRecord {
    const TABLE: Table = Table::Tickets;
    const VERSION: u8 = 1;
}

/// What happened on a ticket: the entries of its event log, which the message list and the
/// event stream both read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum TicketEventKind {
    Message {
        id: Uuid,
        author_id: Uuid,
        author_role: Role,
        body: String,
        /// An internal note: staff only, never shown to the customer.
        internal: bool,
    },
    Stage {
        from: TicketStage,
        to: TicketStage,
        by: Uuid,
    },
}

/// `ticket_events`: (ticket, event number) → the event. Numbers start at 1, without gaps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TicketEventRecord {
    pub ticket_id: Uuid,
    pub seq: u32,
    pub kind: TicketEventKind,
    pub at_us: i64,
}

impl Record for TicketEventRecord {
    const TABLE: Table = Table::TicketEvents;
    const VERSION: u8 = 1;
}

/// `sequences`: name → the next number of a gapless sequence (ticket numbers).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SequenceRecord {
    pub next: u64,
}

impl Record for SequenceRecord {
    const TABLE: Table = Table::Sequences;
    const VERSION: u8 = 1;
}

/// The `sequences` key of ticket numbers.
pub const TICKET_SEQUENCE: &[u8] = b"tickets";

index_record! {
    /// `tickets_by_user`: (customer, ticket) → marker.
    TicketOfUser => Table::TicketsByUser,
    /// `open_tickets_by_user`: (customer, ticket) → marker, while the ticket is open.
    OpenTicketOfUser => Table::OpenTicketsByUser,
    /// `tickets_awaiting_response`: (deadline, ticket) → marker, until answered or breached.
    TicketAwaitingResponse => Table::TicketsAwaitingResponse,
}

owned_by_user_id!(TicketRecord);
