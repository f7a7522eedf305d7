//! `creativeflow verify`: every invariant of the store, checked on one consistent snapshot, each
//! violation named. It decodes every record it reads, so an unreadable record is a violation too.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable};
use uuid::Uuid;

use crate::codec::{decode, Record};
use crate::keys;
use crate::ledger::check_chain;
use crate::records::*;
use crate::rollup::{self, DayRollup};
use crate::{StorageError, Table};

#[path = "verify_helpdesk.rs"]
mod helpdesk;

/// How often progress is reported, in records.
const PROGRESS_EVERY: u64 = 100_000;

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub violations: Vec<String>,
    pub records: BTreeMap<&'static str, u64>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Violations beyond this many are counted, not listed, to keep the report bounded.
pub const VIOLATIONS_LISTED_MAX: usize = 1000;

/// What the ledger says about one generation request.
#[derive(Debug, Default, Clone, Copy)]
struct GenLinks {
    /// The user of the first entry naming the request; `users_differ` once an entry of another
    /// user names it too (a user's requests are listed through their own chain).
    user: Option<Uuid>,
    users_differ: bool,
    charges: u32,
    charged: i64,
    refunds: u32,
    refunded: i64,
}

struct Collector<'p> {
    report: Report,
    /// (user, invoice, seq) of ledger entries that money from a payment produced.
    invoice_links: Vec<(Uuid, Uuid, u64)>,
    gen_links: std::collections::HashMap<Uuid, GenLinks>,
    hidden: u64,
    progress: &'p mut dyn FnMut(&str, u64),
}

impl Collector<'_> {
    fn violation(&mut self, v: String) {
        if self.report.violations.len() < VIOLATIONS_LISTED_MAX {
            self.report.violations.push(v);
        } else {
            self.hidden += 1;
        }
    }

    fn seen(&mut self, table: Table) {
        let n = self.report.records.entry(table.name()).or_insert(0);
        *n += 1;
        if (*n).is_multiple_of(PROGRESS_EVERY) {
            let n = *n;
            (self.progress)(table.name(), n);
        }
    }
}

type RawTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;
/// Reads the parent id out of a stored record.
type ParentOf = fn(&[u8]) -> Option<Uuid>;

fn open(txn: &ReadTransaction, t: Table) -> Result<RawTable, StorageError> {
    Ok(txn.open_table(t.def())?)
}

fn get<R: Record>(
    table: &RawTable,
    key: &[u8],
) -> Result<Option<Result<R, StorageError>>, StorageError> {
    Ok(table.get(key)?.map(|v| decode::<R>(v.value())))
}

/// Runs every check. `progress(table, records_done)` is called every 100,000 records.
pub fn verify(
    txn: &ReadTransaction,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<Report, StorageError> {
    let mut c = Collector {
        report: Report::default(),
        invoice_links: Vec::new(),
        gen_links: Default::default(),
        hidden: 0,
        progress,
    };
    check_meta(txn, &mut c)?;
    check_users(txn, &mut c)?;
    check_tokens(txn, &mut c)?;
    let mut days = check_ledger(txn, &mut c)?;
    add_invoice_days(txn, &mut days)?;
    check_rollups(txn, &days, &mut c)?;
    check_idempotency(txn, &mut c)?;
    check_workspace(txn, &mut c)?;
    check_usage(txn, &mut c)?;
    check_features(txn, &mut c)?;
    check_templates(txn, &mut c)?;
    check_profiles(txn, &mut c)?;
    helpdesk::check_helpdesk(txn, &mut c)?;
    check_generations(txn, &mut c)?;
    check_billing(txn, &mut c)?;
    if c.hidden > 0 {
        c.report
            .violations
            .push(format!("... and {} more violations", c.hidden));
    }
    Ok(c.report)
}

/// Feature toggles and their history decode; history keys are sequence keys.
fn check_features(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    for item in open(txn, Table::Features)?.iter()? {
        let (k, v) = item?;
        c.seen(Table::Features);
        if decode::<FeatureRecord>(v.value()).is_err() {
            c.violation(format!(
                "feature toggle {} unreadable",
                String::from_utf8_lossy(k.value())
            ));
        }
    }
    for item in open(txn, Table::FeatureHistory)?.iter()? {
        let (k, v) = item?;
        c.seen(Table::FeatureHistory);
        if keys::parse_sequence(k.value()).is_none() || decode::<FeatureChange>(v.value()).is_err()
        {
            c.violation(format!(
                "feature history entry {} unreadable",
                hex(k.value())
            ));
        }
    }
    Ok(())
}

/// Profile answers decode and belong to an existing user.
fn check_profiles(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let users = open(txn, Table::Users)?;
    for item in open(txn, Table::Profiles)?.iter()? {
        let (k, v) = item?;
        c.seen(Table::Profiles);
        if decode::<ProfileRecord>(v.value()).is_err() || users.get(k.value())?.is_none() {
            c.violation(format!(
                "profile {} is unreadable or has no user",
                hex(k.value())
            ));
        }
    }
    Ok(())
}

/// Saved templates: each decodes, belongs to an existing user and is indexed under them; each
/// index entry names a template of that user.
fn check_templates(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let users = open(txn, Table::Users)?;
    let templates = open(txn, Table::Templates)?;
    let index = open(txn, Table::TemplatesByUser)?;
    for item in templates.iter()? {
        let (_, v) = item?;
        c.seen(Table::Templates);
        match decode::<TemplateRecord>(v.value()) {
            Ok(t) => {
                if users.get(keys::user(t.user_id).as_slice())?.is_none()
                    || index.get(keys::pair(t.user_id, t.id).as_slice())?.is_none()
                {
                    c.violation(format!(
                        "template {} has no user or is not indexed under them",
                        t.id
                    ));
                }
            }
            Err(e) => c.violation(format!("template unreadable: {e}")),
        }
    }
    for item in index.iter()? {
        let (k, _) = item?;
        c.seen(Table::TemplatesByUser);
        let owner = k.value().get(..16).and_then(|b| Uuid::from_slice(b).ok());
        let ok = match (owner, keys::pair_child(k.value())) {
            (Some(owner), Some(id)) => get::<TemplateRecord>(&templates, &keys::id(id))?
                .and_then(Result::ok)
                .is_some_and(|t| t.user_id == owner),
            _ => false,
        };
        if !ok {
            c.violation(format!(
                "template index entry {} names no template of its user",
                hex(k.value())
            ));
        }
    }
    Ok(())
}

fn check_meta(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let meta = open(txn, Table::Meta)?;
    match get::<MetaRecord>(&meta, META_KEY)? {
        Some(Ok(m)) if m.schema_version == SCHEMA_VERSION => {}
        Some(Ok(m)) => c.violation(format!("unknown schema version {}", m.schema_version)),
        Some(Err(e)) => c.violation(format!("meta record unreadable: {e}")),
        None => c.violation("meta record missing".into()),
    }
    c.seen(Table::Meta);
    // Whole-store snapshots are taken settled ([`crate::Store::snapshot`]): a journal entry
    // here would be an account version `accounts` does not show.
    match crate::journal::entries(txn)? {
        0 => {}
        n => c.violation(format!(
            "the account journal holds {n} entries in a settled snapshot"
        )),
    }
    Ok(())
}

fn check_users(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let users = open(txn, Table::Users)?;
    let by_email = open(txn, Table::UsersByEmail)?;
    let accounts = open(txn, Table::Accounts)?;
    for item in users.iter()? {
        let (k, v) = item?;
        c.seen(Table::Users);
        let user = match decode::<UserRecord>(v.value()) {
            Ok(u) => u,
            Err(e) => {
                c.violation(format!("user record {} unreadable: {e}", hex(k.value())));
                continue;
            }
        };
        if k.value() != keys::user(user.id).as_slice() {
            c.violation(format!("user {} is stored under another key", user.id));
        }
        match get::<EmailIndex>(&by_email, &keys::email(&user.email))? {
            Some(Ok(ix)) if ix.user_id == user.id => {}
            Some(Ok(ix)) => c.violation(format!(
                "email of user {} is indexed to another user {}",
                user.id, ix.user_id
            )),
            Some(Err(e)) => c.violation(format!("email index of {} unreadable: {e}", user.id)),
            None => c.violation(format!("user {} has no email index entry", user.id)),
        }
        if accounts.get(keys::account(user.id).as_slice())?.is_none() {
            c.violation(format!("user {} has no credit account", user.id));
        }
    }
    for item in by_email.iter()? {
        let (k, v) = item?;
        c.seen(Table::UsersByEmail);
        match decode::<EmailIndex>(v.value()) {
            Ok(ix) => match get::<UserRecord>(&users, &keys::user(ix.user_id))? {
                Some(Ok(u)) if u.email.as_bytes() == k.value() => {}
                Some(Ok(u)) => c.violation(format!(
                    "email index entry points at user {} whose email differs",
                    u.id
                )),
                Some(Err(_)) => {} // reported with the user
                None => c.violation(format!(
                    "email index entry points at missing user {}",
                    ix.user_id
                )),
            },
            Err(e) => c.violation(format!("email index entry unreadable: {e}")),
        }
    }
    Ok(())
}

fn check_tokens(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let users = open(txn, Table::Users)?;
    let tokens = open(txn, Table::Tokens)?;
    let by_user = open(txn, Table::TokensByUser)?;
    for item in tokens.iter()? {
        let (k, v) = item?;
        c.seen(Table::Tokens);
        match decode::<TokenRecord>(v.value()) {
            Ok(t) => {
                if users.get(keys::user(t.user_id).as_slice())?.is_none() {
                    c.violation(format!("a token belongs to missing user {}", t.user_id));
                }
                let mut ix = keys::user(t.user_id);
                ix.extend_from_slice(k.value());
                if by_user.get(ix.as_slice())?.is_none() {
                    c.violation(format!(
                        "a token of user {} is not indexed by user",
                        t.user_id
                    ));
                }
            }
            Err(e) => c.violation(format!("token record unreadable: {e}")),
        }
    }
    for item in by_user.iter()? {
        let (k, v) = item?;
        c.seen(Table::TokensByUser);
        if let Err(e) = decode::<TokenOfUser>(v.value()) {
            c.violation(format!("token index entry unreadable: {e}"));
        }
        let hash = k.value().get(keys::USER_KEY_LEN..).unwrap_or_default();
        if tokens.get(hash)?.is_none() {
            c.violation("a token index entry points at a missing token".into());
        }
    }
    let resets = open(txn, Table::ResetTokens)?;
    for item in resets.iter()? {
        let (k, v) = item?;
        c.seen(Table::ResetTokens);
        match decode::<ResetRecord>(v.value()) {
            Ok(r) => {
                if k.value() != keys::user(r.user_id).as_slice() {
                    c.violation(format!(
                        "the reset code of {} is stored under another key",
                        r.user_id
                    ));
                }
                if users.get(keys::user(r.user_id).as_slice())?.is_none() {
                    c.violation(format!(
                        "a reset token belongs to missing user {}",
                        r.user_id
                    ));
                }
            }
            Err(e) => c.violation(format!("reset token unreadable: {e}")),
        }
    }
    Ok(())
}

/// Adds every invoice to the totals of the day its (time-ordered) key was made.
fn add_invoice_days(txn: &ReadTransaction, days: &mut LedgerDays) -> Result<(), StorageError> {
    for item in open(txn, Table::Invoices)?.iter()? {
        let (k, v) = item?;
        // An unreadable invoice is reported by the billing checks.
        if let (Some(day), Ok(invoice)) = (
            rollup::day_of_key(k.value()),
            decode::<InvoiceRecord>(v.value()),
        ) {
            days.entry(day)
                .or_insert_with(|| DayRollup::new(day))
                .add_invoice(&invoice);
        }
    }
    Ok(())
}

/// Each stored day rollup decodes, sits under its day, and its ledger and invoice totals are
/// what the records hold for that day.
fn check_rollups(
    txn: &ReadTransaction,
    ledger_days: &LedgerDays,
    c: &mut Collector,
) -> Result<(), StorageError> {
    for item in open(txn, Table::DayRollups)?.iter()? {
        let (k, v) = item?;
        c.seen(Table::DayRollups);
        let rollup = match decode::<DayRollup>(v.value()) {
            Ok(r) => r,
            Err(e) => {
                c.violation(format!("day rollup {} unreadable: {e}", hex(k.value())));
                continue;
            }
        };
        if rollup::parse_key(k.value()) != Some(rollup.day) {
            c.violation(format!(
                "day rollup {} is stored under another key",
                rollup.day
            ));
        }
        let expected = ledger_days
            .get(&rollup.day)
            .cloned()
            .unwrap_or_else(|| DayRollup::new(rollup.day));
        if !rollup.same_fixed_totals(&expected) {
            c.violation(format!(
                "day rollup {} says granted {} spent {} over {} entries, revenue {:?}; the \
                 records give {} {} {}, {:?}",
                rollup.day,
                rollup.granted,
                rollup.spent,
                rollup.ledger_entries,
                rollup.revenue,
                expected.granted,
                expected.spent,
                expected.ledger_entries,
                expected.revenue
            ));
        }
        if rollup.unsettled > 0 {
            c.violation(format!(
                "day rollup {} was written with {} requests not yet final",
                rollup.day, rollup.unsettled
            ));
        }
    }
    Ok(())
}

/// Ledger totals per day, as the ledger itself gives them.
type LedgerDays = BTreeMap<i64, DayRollup>;

fn check_ledger(txn: &ReadTransaction, c: &mut Collector) -> Result<LedgerDays, StorageError> {
    let accounts = open(txn, Table::Accounts)?;
    let ledger = open(txn, Table::Ledger)?;
    // One pass over every entry (in time order): decode it, count it per user, and collect the
    // payment and generation links the later checks need.
    let mut per_user: std::collections::HashMap<Uuid, u64> = std::collections::HashMap::new();
    let mut days = LedgerDays::new();
    for item in ledger.iter()? {
        let (k, v) = item?;
        c.seen(Table::Ledger);
        let entry = match decode::<LedgerEntry>(v.value()) {
            Ok(e) => e,
            Err(e) => {
                c.violation(format!("ledger entry {} unreadable: {e}", hex(k.value())));
                continue;
            }
        };
        if let Some(day) = rollup::day_of_key(k.value()) {
            days.entry(day)
                .or_insert_with(|| DayRollup::new(day))
                .add_ledger(&entry);
        }
        if k.value() != keys::ledger(entry.id).as_slice() {
            c.violation(format!(
                "ledger entry {} is stored under another key",
                entry.id
            ));
        }
        *per_user.entry(entry.user_id).or_default() += 1;
        let (user, seq) = (entry.user_id, entry.seq);
        if matches!(
            entry.kind,
            LedgerKind::Purchase | LedgerKind::PlanGrant | LedgerKind::PaymentReversal
        ) {
            match entry.invoice_id {
                Some(inv) => c.invoice_links.push((user, inv, seq)),
                None => c.violation(format!(
                    "{} entry {user}/{seq} is tied to no invoice",
                    entry.kind.as_str()
                )),
            }
        }
        if let Some(g) = entry.generation_request_id {
            let l = c.gen_links.entry(g).or_default();
            l.users_differ |= *l.user.get_or_insert(user) != user;
            match entry.kind {
                LedgerKind::GenerationCharge => {
                    l.charges += 1;
                    l.charged += entry.amount;
                }
                LedgerKind::GenerationRefund => {
                    l.refunds += 1;
                    l.refunded += entry.amount;
                }
                _ => {}
            }
        }
    }
    // Then each account walks its own chain from the head: every rule of the money, and the
    // count of its chain must be every entry of that user (nothing unreachable).
    for item in accounts.iter()? {
        let (k, v) = item?;
        c.seen(Table::Accounts);
        let account = match decode::<AccountRecord>(v.value()) {
            Ok(a) => a,
            Err(e) => {
                c.violation(format!("account {} unreadable: {e}", hex(k.value())));
                continue;
            }
        };
        let problems = check_chain(&account, |id| -> Result<Option<Vec<u8>>, StorageError> {
            Ok(ledger
                .get(keys::ledger(id).as_slice())?
                .map(|v| v.value().to_vec()))
        })?;
        for p in problems {
            c.violation(p);
        }
        let stored = per_user.remove(&account.user_id).unwrap_or(0);
        if stored != account.next_seq {
            c.violation(format!(
                "account {} counts {} ledger entries but {stored} are stored",
                account.user_id, account.next_seq
            ));
        }
    }
    for (user, n) in per_user {
        c.violation(format!(
            "ledger entries of {user} have no account record ({n} entries)"
        ));
    }
    Ok(days)
}

fn check_idempotency(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let idem = open(txn, Table::Idempotency)?;
    let ledger = open(txn, Table::Ledger)?;
    let accounts = open(txn, Table::Accounts)?;
    for item in idem.iter()? {
        let (k, v) = item?;
        c.seen(Table::Idempotency);
        let user = k
            .value()
            .get(..keys::USER_KEY_LEN)
            .and_then(|b| Uuid::from_slice(b).ok());
        let (Some(user), Ok(rec)) = (user, decode::<IdempotencyRecord>(v.value())) else {
            c.violation(format!("idempotency record {} unreadable", hex(k.value())));
            continue;
        };
        match get::<AccountRecord>(&accounts, &keys::account(user))? {
            Some(Ok(_))
                if ledger
                    .get(keys::ledger(rec.ledger_id).as_slice())?
                    .is_some() => {}
            _ => c.violation(format!(
                "idempotency record of {user} points at ledger entry {} that does not exist",
                rec.ledger_id
            )),
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Workspace invariants: no project without its workbench, no asset without its project, a
/// project's owner is its workbench's owner, references point at the owner's own kits, at most
/// one default kit per user, and every index entry matches its record both ways.
fn check_workspace(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let ws = Workspace {
        users: open(txn, Table::Users)?,
        workbenches: open(txn, Table::Workbenches)?,
        projects: open(txn, Table::Projects)?,
        kits: open(txn, Table::BrandKits)?,
        assets: open(txn, Table::Assets)?,
        workbenches_by_user: open(txn, Table::WorkbenchesByUser)?,
        projects_by_workbench: open(txn, Table::ProjectsByWorkbench)?,
        projects_by_user: open(txn, Table::ProjectsByUser)?,
        kits_by_user: open(txn, Table::BrandKitsByUser)?,
        assets_by_project: open(txn, Table::AssetsByProject)?,
        deleting: open(txn, Table::Deleting)?,
    };
    ws.check_deletions(c)?;
    ws.check_kits(c)?;
    ws.check_workbenches(c)?;
    ws.check_projects(c)?;
    ws.check_assets(c)?;
    ws.check_indexes(c)
}

/// The workspace tables of one snapshot.
struct Workspace {
    users: RawTable,
    workbenches: RawTable,
    projects: RawTable,
    kits: RawTable,
    assets: RawTable,
    workbenches_by_user: RawTable,
    projects_by_workbench: RawTable,
    projects_by_user: RawTable,
    kits_by_user: RawTable,
    assets_by_project: RawTable,
    deleting: RawTable,
}

fn has(table: &RawTable, key: Vec<u8>) -> Result<bool, StorageError> {
    Ok(table.get(key.as_slice())?.is_some())
}

impl Workspace {
    /// Whether the workbench is being deleted in batches: its records may then refer to a
    /// user or kits already gone (a user deletion), and are invisible.
    fn being_deleted(&self, owner: Uuid, workbench: Uuid) -> Result<bool, StorageError> {
        has(&self.deleting, keys::pair(owner, workbench))
    }

    /// Every deletion in progress names an existing workbench of that owner.
    fn check_deletions(&self, c: &mut Collector) -> Result<(), StorageError> {
        for item in self.deleting.iter()? {
            let (k, v) = item?;
            c.seen(Table::Deleting);
            let owner = k.value().get(..16).and_then(|b| Uuid::from_slice(b).ok());
            let wb = keys::pair_child(k.value());
            let ok = decode::<DeletingWorkbench>(v.value()).is_ok()
                && match (owner, wb) {
                    (Some(owner), Some(wb)) => {
                        get::<WorkbenchRecord>(&self.workbenches, &keys::id(wb))?
                            .and_then(Result::ok)
                            .is_some_and(|w| w.user_id == owner)
                    }
                    _ => false,
                };
            if !ok {
                c.violation(format!(
                    "deletion entry {} names no workbench of its owner",
                    hex(k.value())
                ));
            }
        }
        Ok(())
    }

    fn kit(&self, id: Uuid) -> Result<Option<BrandKitRecord>, StorageError> {
        Ok(get::<BrandKitRecord>(&self.kits, &keys::id(id))?.and_then(Result::ok))
    }

    /// Whether `kit` is missing or not `owner`'s (a reference to it is then broken).
    fn foreign_kit(&self, kit: Uuid, owner: Uuid) -> Result<bool, StorageError> {
        Ok(self.kit(kit)?.is_none_or(|k| k.user_id != owner))
    }

    fn check_kits(&self, c: &mut Collector) -> Result<(), StorageError> {
        let mut defaults: BTreeMap<Uuid, u32> = BTreeMap::new();
        for item in self.kits.iter()? {
            let (_, v) = item?;
            c.seen(Table::BrandKits);
            let k = match decode::<BrandKitRecord>(v.value()) {
                Ok(k) => k,
                Err(e) => {
                    c.violation(format!("brand kit unreadable: {e}"));
                    continue;
                }
            };
            if !has(&self.kits_by_user, keys::pair(k.user_id, k.id))? {
                c.violation(format!("brand kit {} is not indexed under its user", k.id));
            }
            if !has(&self.users, keys::user(k.user_id))? {
                c.violation(format!(
                    "brand kit {} belongs to missing user {}",
                    k.id, k.user_id
                ));
            }
            if k.is_default {
                *defaults.entry(k.user_id).or_default() += 1;
            }
        }
        for (user, n) in defaults.into_iter().filter(|(_, n)| *n > 1) {
            c.violation(format!("user {user} has {n} default brand kits"));
        }
        Ok(())
    }

    fn check_workbenches(&self, c: &mut Collector) -> Result<(), StorageError> {
        for item in self.workbenches.iter()? {
            let (_, v) = item?;
            c.seen(Table::Workbenches);
            let w = match decode::<WorkbenchRecord>(v.value()) {
                Ok(w) => w,
                Err(e) => {
                    c.violation(format!("workbench unreadable: {e}"));
                    continue;
                }
            };
            if !has(&self.workbenches_by_user, keys::pair(w.user_id, w.id))? {
                c.violation(format!("workbench {} is not indexed under its user", w.id));
            }
            if self.being_deleted(w.user_id, w.id)? {
                continue;
            }
            if !has(&self.users, keys::user(w.user_id))? {
                c.violation(format!(
                    "workbench {} belongs to missing user {}",
                    w.id, w.user_id
                ));
            }
            if let Some(k) = w.default_brand_kit_id {
                if self.foreign_kit(k, w.user_id)? {
                    c.violation(format!(
                        "workbench {} defaults to brand kit {k} that is missing or not its owner's",
                        w.id
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_projects(&self, c: &mut Collector) -> Result<(), StorageError> {
        for item in self.projects.iter()? {
            let (_, v) = item?;
            c.seen(Table::Projects);
            let p = match decode::<ProjectRecord>(v.value()) {
                Ok(p) => p,
                Err(e) => {
                    c.violation(format!("project unreadable: {e}"));
                    continue;
                }
            };
            match get::<WorkbenchRecord>(&self.workbenches, &keys::id(p.workbench_id))? {
                Some(Ok(w)) if w.user_id == p.user_id => {}
                Some(Ok(w)) => c.violation(format!(
                    "project {} has owner {} but its workbench belongs to {}",
                    p.id, p.user_id, w.user_id
                )),
                Some(Err(_)) => {}
                None => c.violation(format!(
                    "project {} has no workbench (orphan of {})",
                    p.id, p.workbench_id
                )),
            }
            if !has(
                &self.projects_by_workbench,
                keys::pair(p.workbench_id, p.id),
            )? || !has(&self.projects_by_user, keys::pair(p.user_id, p.id))?
            {
                c.violation(format!("project {} is missing from an index", p.id));
            }
            if let Some(k) = p.brand_kit_id.filter(|_| {
                !self
                    .being_deleted(p.user_id, p.workbench_id)
                    .unwrap_or(false)
            }) {
                if self.foreign_kit(k, p.user_id)? {
                    c.violation(format!(
                        "project {} uses brand kit {k} that is missing or not its owner's",
                        p.id
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_assets(&self, c: &mut Collector) -> Result<(), StorageError> {
        for item in self.assets.iter()? {
            let (_, v) = item?;
            c.seen(Table::Assets);
            let a = match decode::<AssetRecord>(v.value()) {
                Ok(a) => a,
                Err(e) => {
                    c.violation(format!("asset unreadable: {e}"));
                    continue;
                }
            };
            match get::<ProjectRecord>(&self.projects, &keys::id(a.project_id))? {
                Some(Ok(p)) if p.user_id == a.user_id => {}
                Some(Ok(_)) => {
                    c.violation(format!("asset {} has another owner than its project", a.id))
                }
                Some(Err(_)) => {}
                None => c.violation(format!(
                    "asset {} has no project (orphan of {})",
                    a.id, a.project_id
                )),
            }
            if !has(&self.assets_by_project, keys::pair(a.project_id, a.id))? {
                c.violation(format!("asset {} is not indexed under its project", a.id));
            }
        }
        Ok(())
    }

    /// Every index entry points at a record with the same parent.
    fn check_indexes(&self, c: &mut Collector) -> Result<(), StorageError> {
        let targets: [(Table, &RawTable, &RawTable, ParentOf); 5] = [
            (
                Table::WorkbenchesByUser,
                &self.workbenches_by_user,
                &self.workbenches,
                |v| decode::<WorkbenchRecord>(v).ok().map(|r| r.user_id),
            ),
            (
                Table::ProjectsByWorkbench,
                &self.projects_by_workbench,
                &self.projects,
                |v| decode::<ProjectRecord>(v).ok().map(|r| r.workbench_id),
            ),
            (
                Table::ProjectsByUser,
                &self.projects_by_user,
                &self.projects,
                |v| decode::<ProjectRecord>(v).ok().map(|r| r.user_id),
            ),
            (
                Table::BrandKitsByUser,
                &self.kits_by_user,
                &self.kits,
                |v| decode::<BrandKitRecord>(v).ok().map(|r| r.user_id),
            ),
            (
                Table::AssetsByProject,
                &self.assets_by_project,
                &self.assets,
                |v| decode::<AssetRecord>(v).ok().map(|r| r.project_id),
            ),
        ];
        for (table, index, records, parent_of) in targets {
            for item in index.iter()? {
                let (k, _) = item?;
                c.seen(table);
                let parent = k.value().get(..16).and_then(|b| Uuid::from_slice(b).ok());
                let child = keys::pair_child(k.value());
                let (Some(parent), Some(child)) = (parent, child) else {
                    c.violation(format!("{table} key {} is malformed", hex(k.value())));
                    continue;
                };
                let stored_parent = records
                    .get(keys::id(child).as_slice())?
                    .and_then(|v| parent_of(v.value()));
                if stored_parent != Some(parent) {
                    c.violation(format!("{table} entry ({parent}, {child}) points at a record that is missing or elsewhere"));
                }
            }
        }
        Ok(())
    }
}

/// A request was charged its cost exactly once, and refunded exactly when failed or cancelled.
fn check_generation_money(g: &GenerationRecord, l: GenLinks, c: &mut Collector) {
    let cost = i64::try_from(g.cost).unwrap_or(i64::MAX);
    if l.users_differ || l.user.is_some_and(|u| u != g.user_id) {
        c.violation(format!(
            "generation {} of user {} is named by another user's ledger entries",
            g.id, g.user_id
        ));
    }
    if l.charges != 1 || l.charged != -cost {
        c.violation(format!(
            "generation {} should be charged {} once; the ledger has {} charge(s) totalling {}",
            g.id, g.cost, l.charges, l.charged
        ));
    }
    let refunds_expected = u32::from(g.status.is_refunded());
    if l.refunds != refunds_expected || l.refunded != cost * i64::from(refunds_expected) {
        c.violation(format!(
            "generation {} is {} with {} refund(s) totalling {}",
            g.id,
            g.status.as_str(),
            l.refunds,
            l.refunded
        ));
    }
}

/// A pending request's job is in the outbox; the live index holds exactly the unfinished
/// requests. (A user's requests are listed through the charges of their ledger chain; that
/// each has exactly one, by an entry of its owner's chain, is [`check_generation_money`].)
fn check_generation_dispatch(
    g: &GenerationRecord,
    outbox: &RawTable,
    live: &RawTable,
    c: &mut Collector,
) -> Result<(), StorageError> {
    if g.status == GenStatus::Pending && outbox.get(keys::id(g.id).as_slice())?.is_none() {
        c.violation(format!(
            "pending generation {} is neither queued nor in the outbox",
            g.id
        ));
    }
    let in_live = live
        .get(keys::live_generation(g.deadline_at_us, g.id).as_slice())?
        .is_some();
    if in_live == g.status.is_terminal() {
        c.violation(format!(
            "generation {} ({}) is {} the live index",
            g.id,
            g.status.as_str(),
            if in_live { "still in" } else { "missing from" }
        ));
    }
    Ok(())
}

/// Each user's `usage` record equals what their workspace holds (records and asset bytes); a
/// user with no record holds nothing. Users already deleted (whose workbenches are still being
/// deleted in batches) are not checked.
fn check_usage(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    fn add<R: Record + Owned>(
        txn: &ReadTransaction,
        sums: &mut std::collections::HashMap<Uuid, UsageRecord>,
        bytes: impl Fn(&R) -> u64,
    ) -> Result<(), StorageError> {
        for item in open(txn, R::TABLE)?.iter()? {
            let (_, v) = item?;
            if let Ok(r) = decode::<R>(v.value()) {
                let u = sums.entry(r.owner()).or_default();
                u.records += 1;
                u.asset_bytes += bytes(&r);
            }
        }
        Ok(())
    }
    let mut sums = std::collections::HashMap::new();
    add::<WorkbenchRecord>(txn, &mut sums, |_| 0)?;
    add::<ProjectRecord>(txn, &mut sums, |_| 0)?;
    add::<BrandKitRecord>(txn, &mut sums, |_| 0)?;
    add::<AssetRecord>(txn, &mut sums, |a| a.size)?;
    let users = open(txn, Table::Users)?;
    let usage = open(txn, Table::Usage)?;
    for item in usage.iter()? {
        let (k, v) = item?;
        c.seen(Table::Usage);
        let Some(user) = Uuid::from_slice(k.value()).ok() else {
            c.violation(format!("usage key {} is not a user", hex(k.value())));
            continue;
        };
        let Ok(stored) = decode::<UsageRecord>(v.value()) else {
            c.violation(format!("usage of {user} unreadable"));
            continue;
        };
        let actual = sums.remove(&user).unwrap_or_default();
        if users.get(keys::user(user).as_slice())?.is_some() && stored != actual {
            c.violation(format!(
                "usage of {user} says {} records / {} bytes; the workspace holds {} / {}",
                stored.records, stored.asset_bytes, actual.records, actual.asset_bytes
            ));
        }
    }
    for (user, actual) in sums {
        if users.get(keys::user(user).as_slice())?.is_some() && actual.records > 0 {
            c.violation(format!(
                "user {user} holds {} workspace records but has no usage record",
                actual.records
            ));
        }
    }
    Ok(())
}

/// Every job in the outbox is named by exactly one `outbox_order` entry (else the publisher's
/// cursor would never reach it, or publish it twice); every order entry is a sequence key with a
/// readable value. An entry naming a job no longer in the outbox is allowed: the publisher
/// removes it when its cursor passes.
fn check_outbox_order(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let outbox = open(txn, Table::Outbox)?;
    let order = open(txn, Table::OutboxOrder)?;
    let mut named: std::collections::HashMap<Uuid, u32> = std::collections::HashMap::new();
    for item in order.iter()? {
        let (k, v) = item?;
        c.seen(Table::OutboxOrder);
        match (
            keys::parse_sequence(k.value()),
            decode::<OutboxOrder>(v.value()),
        ) {
            (Some(_), Ok(o)) => {
                if outbox.get(keys::id(o.generation_id).as_slice())?.is_some() {
                    *named.entry(o.generation_id).or_default() += 1;
                }
            }
            _ => c.violation(format!(
                "outbox order entry {} is unreadable or not a sequence key",
                hex(k.value())
            )),
        }
    }
    for item in outbox.iter()? {
        let (k, _) = item?;
        let Ok(id) = Uuid::from_slice(k.value()) else {
            continue; // reported by check_generations
        };
        match named.get(&id).copied().unwrap_or(0) {
            1 => {}
            n => c.violation(format!(
                "outbox entry {id} is named by {n} outbox order entries (should be 1)"
            )),
        }
    }
    Ok(())
}

/// Money and dispatch invariants of generation requests: each request was charged exactly once
/// (its cost), refunded at most once and exactly when failed or cancelled; a pending request's
/// job is in the outbox; a request is in the live index exactly while not terminal.
fn check_generations(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let gens = open(txn, Table::Generations)?;
    let outbox = open(txn, Table::Outbox)?;
    let live = open(txn, Table::GenerationsLive)?;
    let by_user = open(txn, Table::GenerationsByUser)?;
    let mut links = std::mem::take(&mut c.gen_links);
    for item in gens.iter()? {
        let (_, v) = item?;
        c.seen(Table::Generations);
        let g = match decode::<GenerationRecord>(v.value()) {
            Ok(g) => g,
            Err(e) => {
                c.violation(format!("generation unreadable: {e}"));
                continue;
            }
        };
        check_generation_money(&g, links.remove(&g.id).unwrap_or_default(), c);
        check_generation_dispatch(&g, &outbox, &live, c)?;
    }
    for (id, _) in links {
        c.violation(format!(
            "ledger entries name generation {id}, which does not exist"
        ));
    }
    for item in outbox.iter()? {
        let (k, v) = item?;
        c.seen(Table::Outbox);
        let pending = Uuid::from_slice(k.value())
            .ok()
            .map(|id| get::<GenerationRecord>(&gens, &keys::id(id)))
            .transpose()?
            .flatten()
            .and_then(Result::ok)
            .is_some_and(|g| g.status == GenStatus::Pending);
        if decode::<OutboxRecord>(v.value()).is_err() || !pending {
            c.violation(format!(
                "outbox entry {} is unreadable or its request is not pending",
                hex(k.value())
            ));
        }
    }
    check_outbox_order(txn, c)?;
    for item in live.iter()? {
        let (k, _) = item?;
        c.seen(Table::GenerationsLive);
        let ok = keys::parse_live_generation(k.value())
            .and_then(|(deadline, id)| {
                Some((
                    deadline,
                    get::<GenerationRecord>(&gens, &keys::id(id)).ok()??.ok()?,
                ))
            })
            .is_some_and(|(deadline, g)| {
                g.deadline_at_us.max(0) == deadline && !g.status.is_terminal()
            });
        if !ok {
            c.violation(format!(
                "live index entry {} names a missing, finished or re-timed request",
                hex(k.value())
            ));
        }
    }
    // Retired index (schema 7): no longer written or read, its entries from earlier versions
    // are left for a rolling upgrade's older nodes, and must still name real requests.
    for item in by_user.iter()? {
        let (k, _) = item?;
        c.seen(Table::GenerationsByUser);
        let ok = keys::pair_child(k.value())
            .is_some_and(|id| gens.get(keys::id(id).as_slice()).ok().flatten().is_some());
        if !ok {
            c.violation(format!(
                "generations_by_user entry {} names a missing request",
                hex(k.value())
            ));
        }
    }
    Ok(())
}

/// Payment invariants: every purchase, plan grant and reversal is tied to an existing invoice of
/// the same user; invoice numbers are unique and gapless per year (1 ..= the year's counter);
/// a purchase never reverses more than it credited.
fn check_billing(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let invoices = open(txn, Table::Invoices)?;
    let counters = open(txn, Table::InvoiceCounters)?;
    let purchases = open(txn, Table::Purchases)?;
    for (user, inv, seq) in std::mem::take(&mut c.invoice_links) {
        match get::<InvoiceRecord>(&invoices, &keys::id(inv))? {
            Some(Ok(i)) if i.user_id == user => {}
            _ => c.violation(format!(
                "ledger entry {user}/{seq} names invoice {inv}, which is missing or another user's"
            )),
        }
    }
    let mut by_year: BTreeMap<u16, Vec<u64>> = BTreeMap::new();
    for item in invoices.iter()? {
        let (_, v) = item?;
        c.seen(Table::Invoices);
        match decode::<InvoiceRecord>(v.value()) {
            Ok(i) => {
                if i.number != format!("CF/{}/{:06}", i.year, i.seq) {
                    c.violation(format!(
                        "invoice {} has number {} for year {} seq {}",
                        i.id, i.number, i.year, i.seq
                    ));
                }
                by_year.entry(i.year).or_default().push(i.seq);
            }
            Err(e) => c.violation(format!("invoice unreadable: {e}")),
        }
    }
    for (year, mut seqs) in by_year {
        seqs.sort_unstable();
        let next = get::<InvoiceCounter>(&counters, &year.to_be_bytes())?
            .and_then(Result::ok)
            .map_or(1, |k| k.next);
        if seqs != (1..next).collect::<Vec<_>>() {
            c.violation(format!(
                "invoice numbers of {year} are not gapless 1..={} ({} invoices)",
                next - 1,
                seqs.len()
            ));
        }
    }
    let subscriptions = open(txn, Table::Subscriptions)?;
    for item in subscriptions.iter()? {
        let (k, v) = item?;
        c.seen(Table::Subscriptions);
        match decode::<SubscriptionRecord>(v.value()) {
            Ok(s) => {
                let key = keys::subscription(s.user_id, s.provider.as_str(), &s.subscription_id);
                if k.value() != key.as_slice() {
                    c.violation(format!(
                        "subscription {} of {} is stored under another key",
                        s.subscription_id, s.user_id
                    ));
                }
            }
            Err(e) => c.violation(format!("subscription unreadable: {e}")),
        }
    }
    for item in purchases.iter()? {
        let (k, v) = item?;
        c.seen(Table::Purchases);
        match decode::<PurchaseRecord>(v.value()) {
            Ok(p) => {
                if p.reversed_credits + p.owed_credits > p.credits
                    || invoices.get(keys::id(p.invoice_id).as_slice())?.is_none()
                {
                    c.violation(format!(
                        "purchase {} reverses more than it credited or lost its invoice",
                        String::from_utf8_lossy(k.value())
                    ));
                }
            }
            Err(e) => c.violation(format!("purchase unreadable: {e}")),
        }
    }
    Ok(())
}
