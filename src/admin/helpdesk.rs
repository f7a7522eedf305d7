//! Helpdesk pages: the ticket list with SLA status, the kanban by stage (a card's stage menu,
//! or drag and drop, moves it), and the ticket form with the conversation, public replies,
//! internal notes (visibly marked), assignment, stage and priority. Every change goes through
//! the same service as the API, so the same rules apply.

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest};
use maud::{html, Markup};
use storage::now_us;
use storage::records::*;
use storage::Reader;

use super::layout::{self, Menu};
use super::listing::{self, ListQuery};
use super::{see_other, PageResult, Staff};
use crate::domain::{Email, LongText};
use crate::error::AppError;
use crate::services::helpdesk as desk;
use crate::services::users;
use crate::services::workspace::{self as ws, Access};
use crate::state::AppState;
use actors::helpdesk::UpdateTicket;

/// Cards per kanban column.
const KANBAN_CARDS_MAX: usize = 40;
/// Events shown on a ticket's form: every event a ticket may hold (1,000 messages and 1,000
/// stage changes).
const EVENTS_SHOWN_MAX: usize = 2_000;
const STAGES: [&str; 5] = [
    "new",
    "in_progress",
    "waiting_customer",
    "resolved",
    "closed",
];
const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

fn sla_badge(t: &TicketRecord, now: i64) -> Markup {
    let s = t.sla_status(now).as_str();
    html! { span class={ "badge " (s) } { (s) } }
}

/// `GET /admin/tickets`.
pub async fn list(req: HttpRequest, state: web::Data<AppState>, staff: Staff) -> PageResult {
    let query = ListQuery::parse(
        &req,
        &["stage", "priority", "channel", "sla_status", "user_id"],
    )?;
    let filter = desk::TicketFilter {
        stage: query.pick("stage", TicketStage::parse)?,
        priority: query.pick("priority", TicketPriority::parse)?,
        channel: query.pick("channel", TicketChannel::parse)?,
        assignee: None,
        sla: query.pick("sla_status", SlaStatus::parse)?,
    };
    let q = query.needle();
    let now = now_us();
    let keep = |t: &TicketRecord| {
        filter.keeps(t, now)
            && q.as_ref().is_none_or(|q| {
                t.subject.to_lowercase().contains(q) || t.display_number().to_lowercase() == *q
            })
    };
    let reads = &*staff.reads;
    let w = match query.uuid("user_id")? {
        Some(u) => listing::window_by_index::<TicketOfUser, TicketRecord>(reads, u, &query, keep)?,
        None => listing::window(reads, &[], &query, keep)?,
    };
    let rows: Vec<Markup> = w
        .rows
        .iter()
        .map(|t| {
            Ok(html! { tr {
            td { (layout::link("/admin/tickets", t.id, &t.display_number())) } td { (t.subject) }
            td { (t.stage.as_str()) } td { (t.priority.as_str()) } td { (t.channel.as_str()) }
            td { (sla_badge(t, now)) } td { (layout::user_email(reads, t.user_id)?) }
            td { @if let Some(a) = t.assignee_id { (layout::user_email(reads, a)?) } }
            td { (layout::when(t.created_at_us)) } } })
        })
        .collect::<Result<_, AppError>>()?;
    let filters = html! {
        (listing::select("stage", "Stage", &STAGES, &query))
        (listing::select("priority", "Priority", &PRIORITIES, &query))
        (listing::select("channel", "Channel", &["web", "chat"], &query))
        (listing::select("sla_status", "SLA", &["pending", "met", "breached"], &query))
    };
    let total = state.store.count(storage::Table::Tickets)?;
    let body = html! {
        p { a href="/admin/tickets/kanban" { "Kanban view" } }
        (listing::filter_form("/admin/tickets", &query, filters))
        (listing::pager("/admin/tickets", &query, &w, Some(total)))
        (layout::table(&["Number", "Subject", "Stage", "Priority", "Channel", "SLA", "Customer", "Assignee", "Created"], &rows))
    };
    Ok(layout::page(&staff, Menu::Helpdesk, "Helpdesk", body))
}

/// `GET /admin/tickets/kanban`: a column per stage, newest tickets first; a full column links
/// to the list filtered by its stage.
pub async fn kanban(staff: Staff) -> PageResult {
    let reads = &*staff.reads;
    let now = now_us();
    let first = ListQuery::first_page().with_rows_max(KANBAN_CARDS_MAX);
    let mut columns = Vec::new();
    for stage in TicketStage::ALL {
        let w = listing::window(reads, &[], &first, |t: &TicketRecord| t.stage == stage)?;
        let more = w.next.is_some();
        columns.push((stage, w.rows, more));
    }
    let body = html! {
        p { a href="/admin/tickets" { "List view" } }
        div.kanban {
            @for (stage, tickets, more) in &columns {
                section.column data-stage=(stage.as_str()) aria-label=(stage.as_str()) {
                    h2 { (stage.as_str()) " (" (tickets.len()) @if *more { "+" } ")" }
                    @for t in tickets { (card(&staff, t, now)) }
                    @if *more { p { a href={ "/admin/tickets?stage=" (stage.as_str()) } { "More in the list" } } }
                }
            }
        }
    };
    Ok(layout::page(
        &staff,
        Menu::Helpdesk,
        "Tickets by stage",
        body,
    ))
}

fn card(staff: &Staff, t: &TicketRecord, now: i64) -> Markup {
    html! {
        div.card id={ "ticket-" (t.id) } draggable="true" data-ticket=(t.id) {
            (layout::link("/admin/tickets", t.id, &t.display_number())) " " (t.subject)
            div { span.badge { (t.priority.as_str()) } " " (sla_badge(t, now)) }
            @if t.stage != TicketStage::Closed {
                form.move method="post" action={ "/admin/tickets/" (t.id) } {
                    (layout::csrf(staff))
                    input type="hidden" name="back" value="kanban";
                    select name="stage" aria-label="Stage" {
                        @for s in STAGES { option value=(s) selected[t.stage.as_str() == s] { (s) } }
                    }
                    button type="submit" { "Move" }
                }
            }
        }
    }
}

/// `GET /admin/tickets/{id}`.
pub async fn show(staff: Staff, id: web::Path<String>) -> PageResult {
    let reads = &*staff.reads;
    let t = ws::load::<TicketRecord>(reads, &staff.user, &id, Access::Read)?;
    let events = desk::events_after(reads, t.id, 0, EVENTS_SHOWN_MAX)?;
    let conversation = events
        .iter()
        .map(|e| event(reads, e))
        .collect::<Result<Vec<_>, _>>()?;
    let body = html! {
        (layout::fields(&[
            ("Subject", html! { (t.subject) }), ("Customer", layout::user_link(reads, t.user_id)?),
            ("Stage", html! { (t.stage.as_str()) }), ("Priority", html! { (t.priority.as_str()) }),
            ("Channel", html! { (t.channel.as_str()) }),
            ("Assignee", html! { @if let Some(a) = t.assignee_id { (layout::user_email(reads, a)?) } @else { "nobody" } }),
            ("SLA", html! { (sla_badge(&t, now_us())) " first response due " (layout::when(t.first_response_due_at_us))
                @if let Some(at) = t.first_responded_at_us { ", answered " (layout::when(at)) } }),
            ("Generation", html! { @if let Some(g) = t.generation_request_id { (layout::link("/admin/generations", g, &layout::short(g))) } }),
            ("Project", html! { @if let Some(p) = t.project_id { (layout::link("/admin/projects", p, &layout::short(p))) } }),
            ("Description", html! { (t.description) }),
        ]))
        @if t.stage != TicketStage::Closed { (ticket_forms(&staff, &t)) }
        section.panel { h2 { "Conversation" } @for m in conversation { (m) } }
    };
    Ok(layout::page(
        &staff,
        Menu::Helpdesk,
        &format!("{} {}", t.display_number(), t.subject),
        body,
    ))
}

fn event(reads: &impl Reader, e: &TicketEventRecord) -> Result<Markup, AppError> {
    Ok(match &e.kind {
        TicketEventKind::Message {
            author_id,
            body,
            internal,
            ..
        } => html! {
            article class={ "message" @if *internal { " internal" } } {
                header { strong { (layout::user_email(reads, *author_id)?) } " · " (layout::when(e.at_us))
                    @if *internal { " · " strong { "Internal note (never shown to the customer)" } } }
                p { (body) }
            }
        },
        TicketEventKind::Stage { from, to, by } => html! {
            p.stage { (layout::when(e.at_us)) ": " (layout::user_email(reads, *by)?) " moved it from " (from.as_str()) " to " (to.as_str()) }
        },
    })
}

fn ticket_forms(staff: &Staff, t: &TicketRecord) -> Markup {
    html! {
        section.panel { h2 { "Reply" }
            form method="post" action={ "/admin/tickets/" (t.id) "/messages" } {
                (layout::csrf(staff))
                label { "Message" textarea name="body" rows="5" required maxlength="10000" {} }
                button type="submit" name="kind" value="reply" { "Send public reply" }
                " "
                button.secondary type="submit" name="kind" value="note" { "Add internal note" }
            }
        }
        section.panel { h2 { "Work on it" }
            form method="post" action={ "/admin/tickets/" (t.id) } {
                (layout::csrf(staff))
                // Only what is changed here is sent on: a customer's reply that reopened the
                // ticket meanwhile is not undone by saving a new priority.
                input type="hidden" name="stage_was" value=(t.stage.as_str());
                input type="hidden" name="priority_was" value=(t.priority.as_str());
                label { "Stage" select name="stage" { @for s in STAGES { option value=(s) selected[t.stage.as_str() == s] { (s) } } } }
                label { "Priority" select name="priority" { @for p in PRIORITIES { option value=(p) selected[t.priority.as_str() == p] { (p) } } } }
                label { "Assign to (agent or admin email; \"none\" to unassign)" input type="text" name="assignee"; }
                button type="submit" { "Save" }
            }
        }
    }
}

/// `POST /admin/tickets/{id}/messages`: a public reply or an internal note.
pub async fn post_message(
    state: web::Data<AppState>,
    staff: Staff,
    id: web::Path<String>,
    body: Bytes,
) -> PageResult {
    let form = staff.form(&body)?;
    let t = ws::load::<TicketRecord>(&*staff.reads, &staff.user, &id, Access::Read)?;
    let text = LongText::parse(form.require("body")?, "body")?.into_inner();
    let internal = match form.get("kind") {
        Some("note") => true,
        Some("reply") | None => false,
        Some(_) => return Err(AppError::validation("kind", "must be reply or note").into()),
    };
    desk::post(&state, &staff.user, &t, text, internal).await?;
    Ok(see_other(&format!("/admin/tickets/{}", t.id)))
}

/// `POST /admin/tickets/{id}`: stage, priority, assignee (from the form or a kanban card).
pub async fn update(
    state: web::Data<AppState>,
    staff: Staff,
    id: web::Path<String>,
    body: Bytes,
) -> PageResult {
    let form = staff.form(&body)?;
    let reads = &*staff.reads;
    let t = ws::load::<TicketRecord>(reads, &staff.user, &id, Access::Read)?;
    let assignee_id = match form.non_blank("assignee") {
        None => None,
        Some("none") => Some(None),
        Some(raw) => {
            let email = Email::parse(raw)
                .map_err(|_| AppError::validation("assignee_id", "not an email"))?;
            let user = users::find_by_email(reads, &email)?
                .ok_or_else(|| AppError::validation("assignee_id", "no such agent or admin"))?;
            Some(Some(user.id))
        }
    };
    let change = UpdateTicket {
        stage: form
            .changed("stage")
            .map(|s| {
                TicketStage::parse(s).ok_or_else(|| AppError::validation("stage", "unknown stage"))
            })
            .transpose()?,
        priority: form
            .changed("priority")
            .map(|p| {
                TicketPriority::parse(p)
                    .ok_or_else(|| AppError::validation("priority", "unknown priority"))
            })
            .transpose()?,
        assignee_id,
        ..UpdateTicket::default()
    };
    desk::update(&state, &staff.user, &t, change).await?;
    let back = match form.get("back") {
        Some("kanban") => "/admin/tickets/kanban".to_string(),
        _ => format!("/admin/tickets/{}", t.id),
    };
    Ok(see_other(&back))
}
