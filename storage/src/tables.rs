use redb::TableDefinition;

/// Every table of the store. Keys and values are bytes: keys are built by [`crate::keys`] so that
/// big-endian ids and sequences sort in time order, values by [`crate::codec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Meta,
    Users,
    UsersByEmail,
    Tokens,
    TokensByUser,
    ResetTokens,
    Accounts,
    Ledger,
    Idempotency,
    Workbenches,
    WorkbenchesByUser,
    Projects,
    ProjectsByWorkbench,
    ProjectsByUser,
    BrandKits,
    BrandKitsByUser,
    Assets,
    AssetsByProject,
    Generations,
    GenerationsByUser,
    GenerationsLive,
    Outbox,
    OutboxOrder,
    ProcessedEvents,
    Subscriptions,
    BillingRefs,
    Purchases,
    Invoices,
    InvoicesByUser,
    InvoiceCounters,
    Deleting,
    Usage,
    Features,
    FeatureHistory,
    Templates,
    TemplatesByUser,
    Profiles,
}

impl Table {
    pub const ALL: [Table; 37] = [
        Table::Meta,
        Table::Users,
        Table::UsersByEmail,
        Table::Tokens,
        Table::TokensByUser,
        Table::ResetTokens,
        Table::Accounts,
        Table::Ledger,
        Table::Idempotency,
        Table::Workbenches,
        Table::WorkbenchesByUser,
        Table::Projects,
        Table::ProjectsByWorkbench,
        Table::ProjectsByUser,
        Table::BrandKits,
        Table::BrandKitsByUser,
        Table::Assets,
        Table::AssetsByProject,
        Table::Generations,
        Table::GenerationsByUser,
        Table::GenerationsLive,
        Table::Outbox,
        Table::OutboxOrder,
        Table::ProcessedEvents,
        Table::Subscriptions,
        Table::BillingRefs,
        Table::Purchases,
        Table::Invoices,
        Table::InvoicesByUser,
        Table::InvoiceCounters,
        Table::Deleting,
        Table::Usage,
        Table::Features,
        Table::FeatureHistory,
        Table::Templates,
        Table::TemplatesByUser,
        Table::Profiles,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Users => "users",
            Table::UsersByEmail => "users_by_email",
            Table::Tokens => "tokens",
            Table::TokensByUser => "tokens_by_user",
            Table::ResetTokens => "reset_tokens",
            Table::Accounts => "accounts",
            Table::Ledger => "ledger",
            Table::Idempotency => "idempotency",
            Table::Workbenches => "workbenches",
            Table::WorkbenchesByUser => "workbenches_by_user",
            Table::Projects => "projects",
            Table::ProjectsByWorkbench => "projects_by_workbench",
            Table::ProjectsByUser => "projects_by_user",
            Table::BrandKits => "brand_kits",
            Table::BrandKitsByUser => "brand_kits_by_user",
            Table::Assets => "assets",
            Table::AssetsByProject => "assets_by_project",
            Table::Generations => "generations",
            Table::GenerationsByUser => "generations_by_user",
            Table::GenerationsLive => "generations_live",
            Table::Outbox => "outbox",
            Table::OutboxOrder => "outbox_order",
            Table::ProcessedEvents => "processed_events",
            Table::Subscriptions => "subscriptions",
            Table::BillingRefs => "billing_refs",
            Table::Purchases => "purchases",
            Table::Invoices => "invoices",
            Table::InvoicesByUser => "invoices_by_user",
            Table::InvoiceCounters => "invoice_counters",
            Table::Deleting => "deleting",
            Table::Usage => "usage",
            Table::Features => "features",
            Table::FeatureHistory => "feature_history",
            Table::Templates => "templates",
            Table::TemplatesByUser => "templates_by_user",
            Table::Profiles => "profiles",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
