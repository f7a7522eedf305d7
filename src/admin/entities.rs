//! Workbenches, projects (list and kanban by workbench), brand kits, generation requests, the
//! credit ledger and invoices: list and form views. Owner filters use the per-user indexes;
//! text, status, kind and provider filters examine a bounded number of records per page.

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest};
use maud::{html, Markup};
use storage::records::*;
use storage::{keys, Reader, Record, Table};
use uuid::Uuid;

use super::layout::{self, Menu};
use super::listing::{self, ListQuery, Window};
use super::users::{ledger_table, money};
use super::{see_other, PageResult, Staff};
use crate::error::AppError;
use crate::services::chain;
use crate::services::generation as gen;
use crate::services::workspace::{self as ws, Access};
use crate::state::AppState;

/// Workbenches on one kanban page, and projects shown in each column.
const KANBAN_WORKBENCHES_MAX: usize = 12;
const KANBAN_PROJECTS_MAX: usize = 30;
const GEN_STATUSES: [&str; 6] = [
    "pending",
    "queued",
    "processing",
    "completed",
    "failed",
    "cancelled",
];
const LEDGER_KINDS: [&str; 7] = [
    "signup_grant",
    "plan_grant",
    "purchase",
    "generation_charge",
    "generation_refund",
    "admin_adjustment",
    "payment_reversal",
];

/// A list of owned records: one owner's through their index, else everyone's, filtered.
fn owned_window<I: Record, R: Record + Owned>(
    reads: &impl Reader,
    query: &ListQuery,
    keep: impl FnMut(&R) -> bool,
) -> Result<Window<R>, AppError> {
    let w = match query.uuid("user_id")? {
        Some(owner) => listing::window_by_index::<I, R>(reads, owner, query, keep)?,
        None => listing::window(reads, &[], query, keep)?,
    };
    Ok(Window {
        rows: ws::only_visible(reads, w.rows)?,
        ..w
    })
}

fn name_matches(name: &str, q: &Option<String>) -> bool {
    q.as_ref().is_none_or(|q| name.to_lowercase().contains(q))
}

fn list_page(
    state: &AppState,
    staff: &Staff,
    menu: Menu,
    path: &str,
    (query, extra): (&ListQuery, Markup),
    (table, headers): (Table, &[&str]),
    window: &Window<Markup>,
) -> PageResult {
    let total = state.store.count(table)?;
    let body = html! {
        (listing::filter_form(path, query, html! {
            label { "Owner id" input name="user_id" value=[query.filter("user_id")] size="36"; }
            (extra)
        }))
        (listing::pager(path, query, window, Some(total)))
        (layout::table(headers, &window.rows))
    };
    Ok(layout::page(staff, menu, menu.label(), body))
}

fn rows<R>(
    w: Window<R>,
    row: impl Fn(&R) -> Result<Markup, AppError>,
) -> Result<Window<Markup>, AppError> {
    Ok(Window {
        rows: w.rows.iter().map(row).collect::<Result<_, _>>()?,
        next: w.next,
        cut: w.cut,
    })
}

/// `GET /admin/workbenches`.
pub async fn workbenches(req: HttpRequest, state: web::Data<AppState>, staff: Staff) -> PageResult {
    let query = ListQuery::parse(&req, &["user_id"])?;
    let q = query.needle();
    let reads = &*staff.reads;
    let w = owned_window::<WorkbenchOfUser, WorkbenchRecord>(reads, &query, |w| {
        name_matches(&w.name, &q)
    })?;
    let w = rows(w, |w| {
        Ok(html! { tr {
        td { (layout::link("/admin/workbenches", w.id, &w.name)) } td { (layout::user_link(reads, w.user_id)?) }
        td { (layout::when(w.created_at_us)) } } })
    })?;
    list_page(
        &state,
        &staff,
        Menu::Workbenches,
        "/admin/workbenches",
        (&query, html! {}),
        (Table::Workbenches, &["Name", "Owner", "Created"]),
        &w,
    )
}

/// `GET /admin/workbenches/{id}`.
pub async fn workbench(staff: Staff, id: web::Path<String>) -> PageResult {
    let reads = &*staff.reads;
    let w = ws::load::<WorkbenchRecord>(reads, &staff.user, &id, Access::Read)?;
    let projects = listing::window_by_index::<ProjectOfWorkbench, ProjectRecord>(
        reads,
        w.id,
        &ListQuery::first_page(),
        |_| true,
    )?;
    let body = html! {
        (layout::fields(&[
            ("Name", html! { (w.name) }), ("Owner", layout::user_link(reads, w.user_id)?),
            ("Default brand kit", html! { @if let Some(k) = w.default_brand_kit_id { (layout::link("/admin/brand-kits", k, &layout::short(k))) } @else { "none" } }),
            ("Created", html! { (layout::when(w.created_at_us)) }), ("Id", html! { code { (w.id) } }),
        ]))
        section.panel { h2 { "Projects" } (layout::table(&["Name", "Created"], &projects.rows.iter().map(|p| html! { tr {
            td { (layout::link("/admin/projects", p.id, &p.name)) } td { (layout::when(p.created_at_us)) } } }).collect::<Vec<_>>())) }
    };
    Ok(layout::page(&staff, Menu::Workbenches, &w.name, body))
}

/// `GET /admin/projects`.
pub async fn projects(req: HttpRequest, state: web::Data<AppState>, staff: Staff) -> PageResult {
    let query = ListQuery::parse(&req, &["user_id"])?;
    let q = query.needle();
    let reads = &*staff.reads;
    let w =
        owned_window::<ProjectOfUser, ProjectRecord>(reads, &query, |p| name_matches(&p.name, &q))?;
    let w = rows(w, |p| {
        Ok(html! { tr {
        td { (layout::link("/admin/projects", p.id, &p.name)) }
        td { (layout::link("/admin/workbenches", p.workbench_id, &layout::short(p.workbench_id))) }
        td { (layout::user_link(reads, p.user_id)?) } td { (layout::when(p.created_at_us)) } } })
    })?;
    let extra = html! { a href="/admin/projects/kanban" { "Kanban view" } };
    list_page(
        &state,
        &staff,
        Menu::Projects,
        "/admin/projects",
        (&query, extra),
        (Table::Projects, &["Name", "Workbench", "Owner", "Created"]),
        &w,
    )
}

/// `GET /admin/projects/kanban`: projects grouped by workbench, a page of workbenches at a time.
pub async fn projects_kanban(req: HttpRequest, staff: Staff) -> PageResult {
    let query = ListQuery::parse(&req, &["user_id"])?.with_rows_max(KANBAN_WORKBENCHES_MAX);
    let reads = &*staff.reads;
    let benches = owned_window::<WorkbenchOfUser, WorkbenchRecord>(reads, &query, |_| true)?;
    let first = ListQuery::first_page().with_rows_max(KANBAN_PROJECTS_MAX);
    let mut columns = Vec::new();
    for w in &benches.rows {
        let p = listing::window_by_index::<ProjectOfWorkbench, ProjectRecord>(
            reads,
            w.id,
            &first,
            |_| true,
        )?;
        columns.push((w, p.rows, p.next.is_some()));
    }
    let body = html! {
        p { a href="/admin/projects" { "List view" } }
        (listing::pager("/admin/projects/kanban", &query, &benches, None))
        div.kanban {
            @for (w, projects, more) in &columns {
                section.column aria-label=(w.name) {
                    h2 { (layout::link("/admin/workbenches", w.id, &w.name)) }
                    @for p in projects { div.card { (layout::link("/admin/projects", p.id, &p.name)) } }
                    @if projects.is_empty() { p { "No projects." } }
                    @if *more { p { a href={ "/admin/workbenches/" (w.id) } { "All projects of this workbench" } } }
                }
            }
        }
    };
    Ok(layout::page(
        &staff,
        Menu::Projects,
        "Projects by workbench",
        body,
    ))
}

/// `GET /admin/projects/{id}`.
pub async fn project(staff: Staff, id: web::Path<String>) -> PageResult {
    let reads = &*staff.reads;
    let p = ws::load::<ProjectRecord>(reads, &staff.user, &id, Access::Read)?;
    let body = layout::fields(&[
        ("Name", html! { (p.name) }),
        ("Owner", layout::user_link(reads, p.user_id)?),
        (
            "Workbench",
            layout::link(
                "/admin/workbenches",
                p.workbench_id,
                &layout::short(p.workbench_id),
            ),
        ),
        (
            "Brand kit",
            html! { @if let Some(k) = p.brand_kit_id { (layout::link("/admin/brand-kits", k, &layout::short(k))) } @else { "workbench default" } },
        ),
        ("Created", html! { (layout::when(p.created_at_us)) }),
        ("Id", html! { code { (p.id) } }),
    ]);
    Ok(layout::page(&staff, Menu::Projects, &p.name, body))
}

/// `GET /admin/brand-kits`.
pub async fn brand_kits(req: HttpRequest, state: web::Data<AppState>, staff: Staff) -> PageResult {
    let query = ListQuery::parse(&req, &["user_id"])?;
    let q = query.needle();
    let reads = &*staff.reads;
    let w = owned_window::<BrandKitOfUser, BrandKitRecord>(reads, &query, |k| {
        name_matches(&k.name, &q)
    })?;
    let w = rows(w, |k| {
        Ok(html! { tr {
        td { (layout::link("/admin/brand-kits", k.id, &k.name)) } td { (layout::user_link(reads, k.user_id)?) }
        td { (if k.is_default { "yes" } else { "" }) } td { (layout::when(k.created_at_us)) } } })
    })?;
    list_page(
        &state,
        &staff,
        Menu::BrandKits,
        "/admin/brand-kits",
        (&query, html! {}),
        (Table::BrandKits, &["Name", "Owner", "Default", "Created"]),
        &w,
    )
}

/// `GET /admin/brand-kits/{id}`.
pub async fn brand_kit(staff: Staff, id: web::Path<String>) -> PageResult {
    let reads = &*staff.reads;
    let k = ws::load::<BrandKitRecord>(reads, &staff.user, &id, Access::Read)?;
    let body = layout::fields(&[
        ("Name", html! { (k.name) }),
        ("Owner", layout::user_link(reads, k.user_id)?),
        (
            "Colors",
            html! { @for c in &k.colors { span.badge { (c.hex) @if let Some(n) = &c.name { " " (n) } } " " } },
        ),
        (
            "Fonts",
            html! { @for f in &k.fonts { span.badge { (f.family) } " " } },
        ),
        ("Logos", html! { @for l in &k.logos { div { (l) } } }),
        ("Default", html! { (k.is_default) }),
        ("Id", html! { code { (k.id) } }),
    ]);
    Ok(layout::page(&staff, Menu::BrandKits, &k.name, body))
}

/// `GET /admin/generations`.
pub async fn generations(req: HttpRequest, state: web::Data<AppState>, staff: Staff) -> PageResult {
    let query = ListQuery::parse(&req, &["user_id", "status"])?;
    let status = query.pick("status", GenStatus::parse)?;
    let q = query.needle();
    let reads = &*staff.reads;
    let keep =
        |g: &GenerationRecord| status.is_none_or(|s| s == g.status) && name_matches(&g.prompt, &q);
    let w = match query.uuid("user_id")? {
        Some(owner) => user_generations(reads, owner, &query, keep)?,
        None => listing::window(reads, &[], &query, keep)?,
    };
    let w = rows(w, |g| {
        Ok(html! { tr {
        td { (layout::link("/admin/generations", g.id, &layout::short(g.id))) } td { (g.status.as_str()) }
        td { (g.format) " ×" (g.variations) } td { (g.cost) } td { (layout::user_link(reads, g.user_id)?) }
        td { (layout::when(g.created_at_us)) } } })
    })?;
    let extra = listing::select("status", "Status", &GEN_STATUSES, &query);
    list_page(
        &state,
        &staff,
        Menu::Generations,
        "/admin/generations",
        (&query, extra),
        (
            Table::Generations,
            &["Request", "Status", "Format", "Cost", "Owner", "Created"],
        ),
        &w,
    )
}

/// `GET /admin/generations/{id}`: the request, its ledger entries and its tickets.
pub async fn generation(staff: Staff, id: web::Path<String>) -> PageResult {
    let reads = &*staff.reads;
    let g = ws::load::<GenerationRecord>(reads, &staff.user, &id, Access::Read)?;
    let entries = entries_of_generation(reads, &g)?;
    let tickets = listing::window_by_index::<TicketOfUser, TicketRecord>(
        reads,
        g.user_id,
        &ListQuery::first_page(),
        |t| t.generation_request_id == Some(g.id),
    )?;
    let cancellable = matches!(g.status, GenStatus::Pending | GenStatus::Queued);
    let body = html! {
        (layout::fields(&[
            ("Status", html! { (g.status.as_str()) }), ("Owner", layout::user_link(reads, g.user_id)?),
            ("Project", layout::link("/admin/projects", g.project_id, &layout::short(g.project_id))),
            ("Prompt", html! { (g.prompt) }), ("Format", html! { (g.format) " ×" (g.variations) }),
            ("Cost", html! { (g.cost) }), ("Error", html! { (g.error.as_deref().unwrap_or("")) }),
            ("Refunded", html! { (g.status.is_refunded()) }),
            ("Created", html! { (layout::when(g.created_at_us)) }), ("Id", html! { code { (g.id) } }),
        ]))
        @if cancellable && staff.is_admin() {
            form method="post" action={ "/admin/generations/" (g.id) "/cancel" } {
                (layout::csrf(&staff))
                button type="submit" { "Cancel and refund" }
            }
        }
        section.panel { h2 { "Ledger entries" } (ledger_table(&entries)) }
        section.panel { h2 { "Tickets" } (layout::table(&["Number", "Subject", "Stage"], &tickets.rows.iter().map(|t| html! { tr {
            td { (layout::link("/admin/tickets", t.id, &t.display_number())) } td { (t.subject) } td { (t.stage.as_str()) } } }).collect::<Vec<_>>())) }
    };
    Ok(layout::page(
        &staff,
        Menu::Generations,
        "Generation request",
        body,
    ))
}

/// Entries of the owner's ledger that name `g`, found walking the chain back to the charge
/// (the charge is never older than the request).
fn entries_of_generation(
    reads: &impl Reader,
    g: &GenerationRecord,
) -> Result<Vec<LedgerEntry>, AppError> {
    const WALK_MAX: usize = 2_000;
    let mut out = Vec::new();
    for e in chain::from(reads, chain::head(reads, g.user_id)?).take(WALK_MAX) {
        let e = e?;
        if e.created_at_us < g.created_at_us {
            break;
        }
        if e.generation_request_id == Some(g.id) {
            out.push(e);
        }
    }
    Ok(out)
}

/// `POST /admin/generations/{id}/cancel`: the API's cancel, with its refund rules.
pub async fn cancel_generation(
    state: web::Data<AppState>,
    staff: Staff,
    id: web::Path<String>,
    body: Bytes,
) -> PageResult {
    staff.form(&body)?;
    staff.require_admin()?;
    let g = ws::load::<GenerationRecord>(&*staff.reads, &staff.user, &id, Access::Write)?;
    gen::cancel(&state, &staff.user, g.id).await?;
    Ok(see_other(&format!("/admin/generations/{}", g.id)))
}

/// `GET /admin/credits`: the ledger, newest first; one user's through their chain.
pub async fn ledger(req: HttpRequest, state: web::Data<AppState>, staff: Staff) -> PageResult {
    let query = ListQuery::parse(&req, &["kind", "user_id"])?;
    let kind = query.filter("kind").map(str::to_string);
    if kind.as_deref().is_some_and(|k| !LEDGER_KINDS.contains(&k)) {
        return Err(AppError::validation("kind", "unknown value").into());
    }
    let q = query.needle();
    let keep = |e: &LedgerEntry| {
        kind.as_deref().is_none_or(|k| k == e.kind.as_str()) && name_matches(&e.description, &q)
    };
    let w = match query.uuid("user_id")? {
        Some(user) => user_ledger(&*staff.reads, user, &query, keep)?,
        None => listing::window(&*staff.reads, &[], &query, keep)?,
    };
    let w = rows(w, |e| {
        Ok(html! { tr {
        td { (layout::when(e.created_at_us)) } td { (layout::user_link(&*staff.reads, e.user_id)?) }
        td { (e.kind.as_str()) } td { (e.amount) } td { (e.balance_after) } td { (e.description) } } })
    })?;
    let extra = listing::select("kind", "Kind", &LEDGER_KINDS, &query);
    list_page(
        &state,
        &staff,
        Menu::Credits,
        "/admin/credits",
        (&query, extra),
        (
            Table::Ledger,
            &[
                "When",
                "User",
                "Kind",
                "Amount",
                "Balance after",
                "Description",
            ],
        ),
        &w,
    )
}

/// One user's entries newest first, walking their chain from the head (or from the cursor's
/// entry): no scan of other users' entries.
fn user_ledger(
    reads: &impl Reader,
    user: Uuid,
    query: &ListQuery,
    keep: impl Fn(&LedgerEntry) -> bool,
) -> Result<Window<LedgerEntry>, AppError> {
    chain_window(reads, user, query, |e| Ok(keep(e).then(|| e.clone())))
}

/// One user's generation requests newest first, through the charges of their ledger chain.
fn user_generations(
    reads: &impl Reader,
    user: Uuid,
    query: &ListQuery,
    keep: impl Fn(&GenerationRecord) -> bool,
) -> Result<Window<GenerationRecord>, AppError> {
    chain_window(reads, user, query, |e| {
        Ok(gen::charged_request(reads, e)?.filter(|g| keep(g)))
    })
}

/// A list page over one user's ledger chain (always newest first: the chain has one order).
fn chain_window<T>(
    reads: &impl Reader,
    user: Uuid,
    query: &ListQuery,
    take: impl FnMut(&LedgerEntry) -> Result<Option<T>, AppError>,
) -> Result<Window<T>, AppError> {
    let bounds = chain::PageBounds {
        rows_max: query.rows_max(),
        examined_max: listing::EXAMINED_PER_PAGE_MAX,
    };
    let page = chain::page(reads, user, query.cursor.as_deref(), bounds, take)?;
    Ok(Window {
        cut: page.cut,
        next: page.next,
        rows: page.rows,
    })
}

/// `GET /admin/invoices`.
pub async fn invoices(req: HttpRequest, state: web::Data<AppState>, staff: Staff) -> PageResult {
    let query = ListQuery::parse(&req, &["user_id", "provider"])?;
    let provider = query.filter("provider").map(str::to_string);
    let q = query.needle();
    let reads = &*staff.reads;
    let keep = |i: &InvoiceRecord| {
        provider.as_deref().is_none_or(|p| p == i.provider.as_str()) && name_matches(&i.number, &q)
    };
    let w = match query.uuid("user_id")? {
        Some(owner) => {
            listing::window_by_index::<InvoiceOfUser, InvoiceRecord>(reads, owner, &query, keep)?
        }
        None => listing::window(reads, &[], &query, keep)?,
    };
    let w = rows(w, |i| {
        Ok(html! { tr {
        td { (layout::link("/admin/invoices", i.id, &i.number)) } td { (layout::user_link(reads, i.user_id)?) }
        td { (i.provider.as_str()) } td { (money(i.amount_minor, &i.currency)) } td { (i.status) }
        td { (layout::when(i.created_at_us)) } } })
    })?;
    let extra = listing::select("provider", "Provider", &["stripe", "paypal"], &query);
    list_page(
        &state,
        &staff,
        Menu::Invoices,
        "/admin/invoices",
        (&query, extra),
        (
            Table::Invoices,
            &["Number", "User", "Provider", "Amount", "Status", "Created"],
        ),
        &w,
    )
}

/// `GET /admin/invoices/{id}`.
pub async fn invoice(staff: Staff, id: web::Path<String>) -> PageResult {
    let reads = &*staff.reads;
    let id = Uuid::parse_str(&id).map_err(|_| AppError::NotFound)?;
    let i = reads
        .get::<InvoiceRecord>(&keys::id(id))?
        .ok_or(AppError::NotFound)?;
    let body = html! {
        (layout::fields(&[
            ("Number", html! { (i.number) }), ("User", layout::user_link(reads, i.user_id)?),
            ("Provider", html! { (i.provider.as_str()) " " (i.provider_ref) }),
            ("Amount", html! { (money(i.amount_minor, &i.currency)) }), ("Status", html! { (i.status) }),
            ("Created", html! { (layout::when(i.created_at_us)) }),
        ]))
        section.panel { h2 { "Lines" } (layout::table(&["Description", "Amount"], &i.lines.iter().map(|l| html! { tr {
            td { (l.description) } td { (money(l.amount_minor, &i.currency)) } } }).collect::<Vec<_>>())) }
    };
    Ok(layout::page(&staff, Menu::Invoices, &i.number, body))
}
