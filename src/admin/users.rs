//! Users: list (email prefix through the email index; names, role and tier by bounded
//! examination), the user's form with their balance and linked records, the admin's edits and
//! credit adjustments.

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest};
use maud::{html, Markup};
use storage::records::*;
use storage::{keys, Reader};
use uuid::Uuid;

use super::layout::{self, Menu};
use super::listing::{self, ListQuery, Order, Window};
use super::{see_other, PageError, PageResult, Staff};
use crate::domain::{CreditDelta, Description, IdempotencyKeyValue, Name};
use crate::error::AppError;
use crate::services::chain;
use crate::services::{credits, users};
use crate::state::AppState;

/// Ledger entries shown on a user's form.
const RECENT_ENTRIES_MAX: usize = 20;
const ROLES: [&str; 3] = ["user", "agent", "admin"];
const TIERS: [&str; 4] = ["free", "pro", "team", "enterprise"];

/// `GET /admin/users`.
pub async fn list(req: HttpRequest, state: web::Data<AppState>, staff: Staff) -> PageResult {
    let query = ListQuery::parse(&req, &["role", "tier", "order=email"])?;
    let role = query.pick("role", Role::parse)?;
    let tier = query.pick("tier", Tier::parse)?;
    let keep =
        |u: &UserRecord| role.is_none_or(|r| r == u.role) && tier.is_none_or(|t| t == u.tier);
    let window = match query.needle() {
        // An email (or its start) is served by the email index, in email order.
        Some(q) if q.contains('@') => by_email_prefix(&*staff.reads, &q, &query, keep)?,
        None if query.order == Order::Email => by_email_prefix(&*staff.reads, "", &query, keep)?,
        Some(q) => listing::window(&*staff.reads, &[], &query, |u: &UserRecord| {
            keep(u) && (u.name.to_lowercase().contains(&q) || u.email.contains(&q))
        })?,
        None => listing::window(&*staff.reads, &[], &query, keep)?,
    };
    let total = state.store.count(storage::Table::Users)?;
    let rows: Vec<Markup> = window
        .rows
        .iter()
        .map(|u| {
            Ok(html! { tr {
                td { (layout::link("/admin/users", u.id, &u.email)) }
                td { (u.name) } td { (u.role.as_str()) } td { (u.tier.as_str()) }
                td { (users::balance_of(&*staff.reads, u.id)?) } td { (layout::when(u.created_at_us)) }
            } })
        })
        .collect::<Result<_, AppError>>()?;
    let filters = html! {
        (listing::select("role", "Role", &ROLES, &query))
        (listing::select("tier", "Tier", &TIERS, &query))
    };
    let body = html! {
        (listing::filter_form("/admin/users", &query, filters))
        (listing::pager("/admin/users", &query, &window, Some(total)))
        (layout::table(&["Email", "Name", "Role", "Tier", "Credits", "Created"], &rows))
    };
    Ok(layout::page(&staff, Menu::Users, "Users", body))
}

fn by_email_prefix(
    reads: &impl Reader,
    prefix: &str,
    query: &ListQuery,
    keep: impl Fn(&UserRecord) -> bool,
) -> Result<Window<UserRecord>, AppError> {
    listing::window_by_key(
        reads,
        prefix.as_bytes(),
        query,
        |reads, _, e: EmailIndex| {
            Ok(reads
                .get::<UserRecord>(&keys::user(e.user_id))?
                .filter(|u| keep(u)))
        },
    )
}

/// `GET /admin/users/{id}`: the user, their balance and recent ledger, workbenches, tickets and
/// invoices; for admins the edit and credit forms.
pub async fn show(req: HttpRequest, staff: Staff, id: web::Path<String>) -> PageResult {
    let reads = &*staff.reads;
    let u = load(reads, &id)?;
    let balance = users::balance_of(reads, u.id)?;
    let notice = req.query_string().contains("done=1").then_some("Saved.");
    let first = ListQuery::first_page();
    let benches =
        listing::window_by_index::<WorkbenchOfUser, WorkbenchRecord>(reads, u.id, &first, |_| {
            true
        })?;
    let tickets =
        listing::window_by_index::<TicketOfUser, TicketRecord>(reads, u.id, &first, |_| true)?;
    let invoices =
        listing::window_by_index::<InvoiceOfUser, InvoiceRecord>(reads, u.id, &first, |_| true)?;
    let body = html! {
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        (layout::fields(&[
            ("Email", html! { (u.email) }), ("Name", html! { (u.name) }),
            ("Role", html! { (u.role.as_str()) }), ("Tier", html! { (u.tier.as_str()) }),
            ("Credit balance", html! { span #balance { (balance) } }),
            ("Created", html! { (layout::when(u.created_at_us)) }),
            ("Id", html! { code { (u.id) } }),
        ]))
        @if staff.is_admin() { (edit_forms(&staff, &u)) }
        section.panel { h2 { "Recent ledger entries" } (ledger_table(&recent_entries(reads, u.id)?)) }
        section.panel { h2 { "Workbenches" }
            (layout::table(&["Name", "Created"], &benches.rows.iter().map(|w| html! { tr {
                td { (layout::link("/admin/workbenches", w.id, &w.name)) } td { (layout::when(w.created_at_us)) } } }).collect::<Vec<_>>())) }
        section.panel { h2 { "Tickets" }
            (layout::table(&["Number", "Subject", "Stage"], &tickets.rows.iter().map(|t| html! { tr {
                td { (layout::link("/admin/tickets", t.id, &t.display_number())) } td { (t.subject) } td { (t.stage.as_str()) } } }).collect::<Vec<_>>())) }
        section.panel { h2 { "Invoices" }
            (layout::table(&["Number", "Provider", "Amount", "Status"], &invoices.rows.iter().map(|i| html! { tr {
                td { (layout::link("/admin/invoices", i.id, &i.number)) } td { (i.provider.as_str()) }
                td { (money(i.amount_minor, &i.currency)) } td { (i.status) } } }).collect::<Vec<_>>())) }
    };
    Ok(layout::page(&staff, Menu::Users, &u.email, body))
}

fn edit_forms(staff: &Staff, u: &UserRecord) -> Markup {
    // A fresh key per rendered form: submitting the same form twice adjusts once.
    let form_id = Uuid::new_v4();
    html! {
        section.panel { h2 { "Edit" }
            form method="post" action={ "/admin/users/" (u.id) } {
                (layout::csrf(staff))
                // What the form showed: only fields changed here are sent on, so a form left
                // open does not undo a change made meanwhile (a tier from billing, say).
                input type="hidden" name="name_was" value=(u.name);
                input type="hidden" name="role_was" value=(u.role.as_str());
                input type="hidden" name="tier_was" value=(u.tier.as_str());
                label { "Name" input name="name" value=(u.name) required maxlength="200"; }
                label { "Role" select name="role" { @for r in ROLES { option value=(r) selected[u.role.as_str() == r] { (r) } } } }
                label { "Tier" select name="tier" { @for t in TIERS { option value=(t) selected[u.tier.as_str() == t] { (t) } } } }
                button type="submit" { "Save" }
            }
        }
        section.panel { h2 { "Adjust credits" }
            form method="post" action={ "/admin/users/" (u.id) "/credits" } {
                (layout::csrf(staff))
                input type="hidden" name="form_id" value=(form_id);
                label { "Amount (negative to deduct)" input type="number" name="amount" required step="1"; }
                label { "Reason" input name="reason" required maxlength="500"; }
                button type="submit" { "Adjust" }
            }
        }
    }
}

/// The user's newest ledger entries, following the chain back from its head.
fn recent_entries(reads: &impl Reader, user: Uuid) -> Result<Vec<LedgerEntry>, AppError> {
    chain::from(reads, chain::head(reads, user)?)
        .take(RECENT_ENTRIES_MAX)
        .collect()
}

pub fn ledger_table(entries: &[LedgerEntry]) -> Markup {
    let rows: Vec<Markup> = entries
        .iter()
        .map(|e| html! { tr {
            td { (layout::when(e.created_at_us)) } td { (e.kind.as_str()) } td { (e.amount) }
            td { (e.balance_after) } td { (e.description) }
            td { @if let Some(g) = e.generation_request_id { (layout::link("/admin/generations", g, &layout::short(g))) } }
        } })
        .collect();
    layout::table(
        &[
            "When",
            "Kind",
            "Amount",
            "Balance after",
            "Description",
            "Generation",
        ],
        &rows,
    )
}

pub fn money(minor: impl Into<i128>, currency: &str) -> String {
    let minor: i128 = minor.into();
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!(
        "{sign}{}.{:02} {}",
        abs / 100,
        abs % 100,
        currency.to_uppercase()
    )
}

fn load(reads: &impl Reader, id: &str) -> Result<UserRecord, AppError> {
    let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
    users::get_user(reads, id)
}

/// `POST /admin/users/{id}`: name, role and tier (admins), through the API's rules.
pub async fn update(
    state: web::Data<AppState>,
    staff: Staff,
    id: web::Path<String>,
    body: Bytes,
) -> PageResult {
    let form = staff.form(&body)?;
    staff.require_admin()?;
    let u = load(&*staff.reads, &id)?;
    let patch = users::UserPatch {
        name: form
            .changed("name")
            .map(|n| Name::parse(n, "name"))
            .transpose()?,
        role: form
            .changed("role")
            .map(|r| {
                Role::parse(r)
                    .ok_or_else(|| AppError::validation("role", "must be user, agent or admin"))
            })
            .transpose()?,
        tier: form
            .changed("tier")
            .map(|t| {
                Tier::parse(t).ok_or_else(|| {
                    AppError::validation("tier", "must be free, pro, team or enterprise")
                })
            })
            .transpose()?,
    };
    users::update_user(&state.store, &staff.user, u.id, patch).await?;
    Ok(see_other(&format!("/admin/users/{}?done=1", u.id)))
}

/// `POST /admin/users/{id}/credits`: an adjustment with a reason (admins). The form's id is
/// the idempotency key, so a form submitted twice adjusts once.
pub async fn adjust_credits(
    state: web::Data<AppState>,
    staff: Staff,
    id: web::Path<String>,
    body: Bytes,
) -> PageResult {
    let form = staff.form(&body)?;
    staff.require_admin()?;
    let u = load(&*staff.reads, &id)?;
    let amount = form
        .require("amount")?
        .trim()
        .parse::<i64>()
        .map_err(|_| AppError::validation("amount", "must be a whole number"))?;
    let delta = CreditDelta::parse(amount)?;
    let reason = Description::parse(form.require("reason")?)
        .map_err(|_| AppError::validation("reason", "must be 1 to 500 characters"))?;
    let key = IdempotencyKeyValue::parse(form.require("form_id")?)
        .map_err(|_| PageError::App(AppError::validation("form_id", "missing or malformed")))?;
    credits::admin_adjust(
        &state.accounts,
        &state.metrics,
        staff.user.id,
        u.id,
        delta,
        reason,
        Some(key),
    )
    .await?;
    Ok(see_other(&format!("/admin/users/{}?done=1", u.id)))
}
