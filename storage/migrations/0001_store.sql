-- CreativeFlow Core on PostgreSQL, schema version 1.
--
-- Every table of the storage interface is one table `cf_<name>` of (key, value): the key and the
-- versioned postcard record exactly as the embedded store keeps them, so both engines answer
-- the same reads and a store moves between them byte for byte. The money tables (accounts,
-- ledger, invoices, generation requests) also carry typed columns, filled by the writer from
-- the record in the same statement, so operators can read them with plain SQL (see the views at
-- the end) and the database itself refuses what would break a money invariant.

CREATE TABLE cf_meta (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_users (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_users_by_email (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_tokens (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_tokens_by_user (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_reset_tokens (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_accounts (
    k bytea PRIMARY KEY,
    v bytea NOT NULL,
    -- Readable and guarded by the database itself: filled by the writer from the record.
    user_id uuid NOT NULL UNIQUE,
    balance bigint NOT NULL CHECK (balance >= 0),
    next_seq bigint NOT NULL CHECK (next_seq >= 0),
    updated_at timestamptz NOT NULL
);

CREATE TABLE cf_ledger (
    k bytea PRIMARY KEY,
    v bytea NOT NULL,
    id uuid NOT NULL UNIQUE,
    user_id uuid NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 0),
    amount bigint NOT NULL,
    balance_after bigint NOT NULL CHECK (balance_after >= 0),
    kind text NOT NULL,
    description text NOT NULL,
    generation_request_id uuid,
    invoice_id uuid,
    created_at timestamptz NOT NULL,
    -- One entry per position in a user's chain.
    UNIQUE (user_id, seq)
);

CREATE TABLE cf_idempotency (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_workbenches (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_workbenches_by_user (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_projects (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_projects_by_workbench (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_projects_by_user (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_brand_kits (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_brand_kits_by_user (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_assets (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_assets_by_project (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_generations (
    k bytea PRIMARY KEY,
    v bytea NOT NULL,
    id uuid NOT NULL UNIQUE,
    user_id uuid NOT NULL,
    project_id uuid NOT NULL,
    status text NOT NULL,
    format text NOT NULL,
    variations smallint NOT NULL,
    cost bigint NOT NULL CHECK (cost >= 0),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE cf_generations_by_user (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_generations_live (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_outbox (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_outbox_order (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_processed_events (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_subscriptions (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_billing_refs (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_purchases (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_invoices (
    k bytea PRIMARY KEY,
    v bytea NOT NULL,
    id uuid NOT NULL UNIQUE,
    number text NOT NULL UNIQUE,
    user_id uuid NOT NULL,
    provider text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
    currency text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE cf_invoices_by_user (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_invoice_counters (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_deleting (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_usage (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_features (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_feature_history (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_templates (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_templates_by_user (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_tickets (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_tickets_by_user (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_open_tickets_by_user (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_tickets_awaiting_response (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_ticket_events (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_sequences (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_day_rollups (k bytea PRIMARY KEY, v bytea NOT NULL);

CREATE TABLE cf_profiles (k bytea PRIMARY KEY, v bytea NOT NULL);


-- Generation requests are often looked up by user and status by operators.
CREATE INDEX cf_generations_user_status ON cf_generations (user_id, status);
CREATE INDEX cf_ledger_user_created ON cf_ledger (user_id, created_at);

-- Keys of tables whose writes append (outbox order, ticket events, …): one sequence each,
-- taken inside the writer's transaction.
CREATE TABLE cf_append_sequences (table_name text PRIMARY KEY, next bigint NOT NULL CHECK (next >= 0));

-- Views for operators: plain SQL over the typed columns.
CREATE VIEW accounts AS
    SELECT user_id, balance, next_seq AS ledger_entries, updated_at FROM cf_accounts;
CREATE VIEW ledger_entries AS
    SELECT id, user_id, seq, amount, balance_after, kind, description,
           generation_request_id, invoice_id, created_at
    FROM cf_ledger;
CREATE VIEW invoices AS
    SELECT id, number, user_id, provider, amount_minor, currency, status, created_at
    FROM cf_invoices;
CREATE VIEW generation_requests AS
    SELECT id, user_id, project_id, status, format, variations, cost, created_at, updated_at
    FROM cf_generations;
