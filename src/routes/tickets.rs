//! Helpdesk tickets and their messages (SPEC §9).

use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use actors::helpdesk::UpdateTicket;
use serde::{Deserialize, Serialize};
use storage::keys;
use storage::records::*;
use storage::{now_us, Reader};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::{LongText, Name};
use crate::error::AppError;
use crate::extract::{decode_cursor, ApiJson, Page};
use crate::services::helpdesk::{self as desk, NewTicket};
use crate::services::workspace::{self as ws, Access};
use crate::state::AppState;
use crate::views::{rfc3339, Listing};

/// A linked generation request as the ticket shows it.
#[derive(Serialize, ToSchema)]
pub struct TicketGenerationView {
    status: &'static str,
    error: Option<String>,
    refunded: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SlaView {
    first_response_due_at: String,
    first_responded_at: Option<String>,
    #[schema(example = "pending")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct TicketView {
    id: Uuid,
    #[schema(example = "HD-000001")]
    number: String,
    subject: String,
    description: String,
    #[schema(example = "web")]
    channel: &'static str,
    #[schema(example = "new")]
    stage: &'static str,
    #[schema(example = "normal")]
    priority: &'static str,
    user_id: Uuid,
    assignee_id: Option<Uuid>,
    project_id: Option<Uuid>,
    generation_request_id: Option<Uuid>,
    /// The linked request's state; absent without a link or once the request is gone.
    generation: Option<TicketGenerationView>,
    sla: SlaView,
    /// Links whose records were deleted since (`project_id`, `generation_request_id`).
    gone_links: Vec<&'static str>,
    created_at: String,
    updated_at: String,
}

/// The ticket as `reads` shows it now (its links read from the same snapshot).
pub fn ticket_view(reads: &impl Reader, t: &TicketRecord) -> Result<TicketView, AppError> {
    let mut gone_links = Vec::new();
    if let Some(p) = t.project_id {
        // A project inside a workbench being deleted is already gone for every caller.
        let project = reads.get::<ProjectRecord>(&keys::id(p))?;
        let visible =
            crate::services::workspace::only_visible(reads, project.into_iter().collect())?;
        if visible.is_empty() {
            gone_links.push("project_id");
        }
    }
    let generation = match t.generation_request_id {
        Some(g) => {
            let record = reads.get::<GenerationRecord>(&keys::id(g))?;
            if record.is_none() {
                gone_links.push("generation_request_id");
            }
            record.map(|g| TicketGenerationView {
                status: g.status.as_str(),
                error: g.error.clone(),
                refunded: g.status.is_refunded(),
            })
        }
        None => None,
    };
    Ok(TicketView {
        id: t.id,
        number: t.display_number(),
        subject: t.subject.clone(),
        description: t.description.clone(),
        channel: t.channel.as_str(),
        stage: t.stage.as_str(),
        priority: t.priority.as_str(),
        user_id: t.user_id,
        assignee_id: t.assignee_id,
        project_id: t.project_id,
        generation_request_id: t.generation_request_id,
        generation,
        sla: SlaView {
            first_response_due_at: rfc3339(t.first_response_due_at_us),
            first_responded_at: t.first_responded_at_us.map(rfc3339),
            status: t.sla_status(now_us()).as_str(),
        },
        gone_links,
        created_at: rfc3339(t.created_at_us),
        updated_at: rfc3339(t.updated_at_us),
    })
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    id: Uuid,
    ticket_id: Uuid,
    author_id: Uuid,
    #[schema(example = "user")]
    author_role: &'static str,
    body: String,
    internal: bool,
    created_at: String,
}

impl MessageView {
    /// The view of a message event (`None` for other events).
    pub fn of(e: &TicketEventRecord) -> Option<MessageView> {
        match &e.kind {
            TicketEventKind::Message {
                id,
                author_id,
                author_role,
                body,
                internal,
            } => Some(MessageView {
                id: *id,
                ticket_id: e.ticket_id,
                author_id: *author_id,
                author_role: author_role.as_str(),
                body: body.clone(),
                internal: *internal,
                created_at: rfc3339(e.at_us),
            }),
            TicketEventKind::Stage { .. } => None,
        }
    }
}

/// A ticket the caller may read (a customer's own; staff: any), else 404.
fn readable(caller: &Caller, raw_id: &str) -> Result<TicketRecord, AppError> {
    ws::load::<TicketRecord>(&*caller.reads, &caller.user, raw_id, Access::Read)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketCreate {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    subject: String,
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    description: String,
    /// `web` (the default) or `chat` (while `enable_live_chat_support` is on).
    #[schema(example = "web")]
    channel: Option<String>,
    project_id: Option<Uuid>,
    generation_request_id: Option<Uuid>,
}

/// Open a ticket. Linked records must be the caller's own (else 422 on that field); at most 20
/// open tickets a customer (409 `limit_reached`); the first-response deadline follows the tier.
#[utoipa::path(post, path = "/api/v1/tickets", tag = "helpdesk", security(("bearer" = [])), request_body = TicketCreate,
    responses((status = 201, body = TicketView), (status = 403, description = "feature_disabled (chat)", body = crate::views::ErrorBody),
        (status = 409, description = "limit_reached", body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/tickets")]
pub async fn create_ticket(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<TicketCreate>,
) -> Result<HttpResponse, AppError> {
    let b = body.0;
    let channel = match b.channel.as_deref() {
        None => TicketChannel::Web,
        Some(c) => TicketChannel::parse(c)
            .ok_or_else(|| AppError::validation("channel", "must be web or chat"))?,
    };
    let new = NewTicket {
        subject: Name::parse(&b.subject, "subject")?.into_inner(),
        description: LongText::parse(&b.description, "description")?.into_inner(),
        channel,
        project_id: b.project_id,
        generation_request_id: b.generation_request_id,
    };
    let t = desk::open(&state, &caller.user, new).await?;
    let view = ticket_view(&state.store, &t)?;
    Ok(HttpResponse::Created().json(view))
}

/// Tickets, newest first: a customer's own; staff see all. Filters: `stage`, `priority`,
/// `channel`, `assignee_id`, `sla_status`, `user_id` (staff).
#[utoipa::path(get, path = "/api/v1/tickets", tag = "helpdesk", security(("bearer" = [])),
    params(("stage" = Option<String>, Query), ("priority" = Option<String>, Query), ("channel" = Option<String>, Query),
        ("assignee_id" = Option<Uuid>, Query), ("sla_status" = Option<String>, Query), ("user_id" = Option<Uuid>, Query, description = "staff only"),
        ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Listing<TicketView>), (status = 422, body = crate::views::ErrorBody)))]
#[get("/api/v1/tickets")]
pub async fn list_tickets(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    let page = Page::with_filters(&req, &desk::LIST_FILTERS)?;
    let (items, next_cursor) = desk::list(&*caller.reads, &caller.user, &page)?;
    let items = items
        .iter()
        .map(|t| ticket_view(&*caller.reads, t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Listing { items, next_cursor }))
}

#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "helpdesk", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = TicketView)))]
#[get("/api/v1/tickets/{id}")]
pub async fn get_ticket(caller: Caller, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let t = readable(&caller, &id)?;
    Ok(HttpResponse::Ok().json(ticket_view(&*caller.reads, &t)?))
}

/// `null` and absent told apart: `Some(None)` unassigns, `None` leaves unchanged.
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Uuid>>, D::Error> {
    Option::<Uuid>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketPatch {
    #[schema(example = "in_progress")]
    stage: Option<String>,
    #[schema(example = "high")]
    priority: Option<String>,
    /// An agent or admin; `null` unassigns.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Uuid>)]
    assignee_id: Option<Option<Uuid>>,
}

/// Change stage, priority or assignee (agents and admins; a closed ticket is final: 409).
#[utoipa::path(patch, path = "/api/v1/tickets/{id}", tag = "helpdesk", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = TicketPatch,
    responses((status = 200, body = TicketView), (status = 403, body = crate::views::ErrorBody),
        (status = 409, description = "invalid_status (closed)", body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[patch("/api/v1/tickets/{id}")]
pub async fn update_ticket(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<TicketPatch>,
) -> Result<HttpResponse, AppError> {
    let t = readable(&caller, &id)?;
    let b = body.0;
    let change = UpdateTicket {
        stage: b
            .stage
            .map(|s| {
                TicketStage::parse(&s).ok_or_else(|| AppError::validation("stage", "unknown stage"))
            })
            .transpose()?,
        priority: b
            .priority
            .map(|p| {
                TicketPriority::parse(&p).ok_or_else(|| {
                    AppError::validation("priority", "must be low, normal, high or urgent")
                })
            })
            .transpose()?,
        assignee_id: b.assignee_id,
        ..UpdateTicket::default()
    };
    let done = desk::update(&state, &caller.user, &t, change).await?;
    Ok(HttpResponse::Ok().json(ticket_view(&state.store, &done.ticket)?))
}

/// A ticket's messages, oldest first; `since` (or `cursor`) continues after a page. Customers
/// never see internal notes.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/messages", tag = "helpdesk", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("since" = Option<String>, Query, description = "a next_cursor"), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Listing<MessageView>), (status = 422, body = crate::views::ErrorBody)))]
#[get("/api/v1/tickets/{id}/messages")]
pub async fn list_messages(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let mut page = Page::with_filters(&req, &["since"])?;
    let t = readable(&caller, &id)?;
    if let Some(since) = page.filter("since").filter(|s| !s.is_empty()) {
        page.after = Some(decode_cursor(since, "since")?);
    }
    let staff = desk::is_staff(&caller.user);
    let (events, next_cursor) = desk::messages(&*caller.reads, &t, staff, &page)?;
    Ok(HttpResponse::Ok().json(Listing {
        items: events.iter().filter_map(MessageView::of).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageCreate {
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    body: String,
    /// Agents and admins only: a note the customer never sees.
    internal: Option<bool>,
}

/// Post a message (at most 1,000 a ticket). A customer's message reopens a resolved ticket; a
/// closed ticket takes none (409 `invalid_status`).
#[utoipa::path(post, path = "/api/v1/tickets/{id}/messages", tag = "helpdesk", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = MessageCreate,
    responses((status = 201, body = MessageView), (status = 403, body = crate::views::ErrorBody),
        (status = 409, description = "invalid_status, limit_reached", body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/tickets/{id}/messages")]
pub async fn post_message(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<MessageCreate>,
) -> Result<HttpResponse, AppError> {
    let t = readable(&caller, &id)?;
    let b = body.0;
    let text = LongText::parse(&b.body, "body")?.into_inner();
    let done = desk::post(&state, &caller.user, &t, text, b.internal.unwrap_or(false)).await?;
    let view = done
        .events
        .iter()
        .find_map(MessageView::of)
        .ok_or_else(|| AppError::internal("a posted message wrote no message event"))?;
    Ok(HttpResponse::Created().json(view))
}
