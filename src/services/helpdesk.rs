//! The helpdesk (SPEC §9): opening tickets, messages, staff changes and the SLA sweep. Records rules: a customer sees and writes only their own tickets
//! (another's answers 404) and never an internal note; agents and admins see and work on all.

use std::sync::atomic::Ordering;

use actors::helpdesk::{MarkSlaBreached, OpenTicket, PostMessage, TicketDone, UpdateTicket};
use actors::workspace::WorkspaceError;
use storage::keys;
use storage::records::*;
use storage::{now_us, Direction, Reader};
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::Page;
use crate::state::AppState;

/// Tickets or index keys examined for one filtered listing page at most; a page that reaches
/// it comes back short, with a cursor to go on from.
const LIST_SCAN_MAX: usize = 5000;
/// Keys read per step of a listing scan.
const SCAN_STEP: usize = 256;

// --- Reads ----------------------------------------------------------------------------------------

pub fn is_staff(user: &UserRecord) -> bool {
    user.role != Role::User
}

/// Whether `caller` may see this event of a ticket they can read.
pub fn shows(caller_is_staff: bool, e: &TicketEventRecord) -> bool {
    match &e.kind {
        TicketEventKind::Message { internal, .. } => caller_is_staff || !internal,
        TicketEventKind::Stage { .. } => true,
    }
}

/// The filters of a ticket list, parsed (the API's and the back office's).
pub struct TicketFilter {
    pub stage: Option<TicketStage>,
    pub priority: Option<TicketPriority>,
    pub channel: Option<TicketChannel>,
    pub assignee: Option<Uuid>,
    pub sla: Option<SlaStatus>,
}

impl TicketFilter {
    fn parse(page: &Page) -> Result<TicketFilter, AppError> {
        fn pick<T>(
            page: &Page,
            name: &str,
            parse: fn(&str) -> Option<T>,
        ) -> Result<Option<T>, AppError> {
            page.filter(name)
                .map(|v| parse(v).ok_or_else(|| AppError::validation(name, "unknown value")))
                .transpose()
        }
        Ok(TicketFilter {
            stage: pick(page, "stage", TicketStage::parse)?,
            priority: pick(page, "priority", TicketPriority::parse)?,
            channel: pick(page, "channel", TicketChannel::parse)?,
            assignee: page.uuid_filter("assignee_id")?,
            sla: pick(page, "sla_status", SlaStatus::parse)?,
        })
    }

    pub fn keeps(&self, t: &TicketRecord, now: i64) -> bool {
        self.stage.is_none_or(|s| s == t.stage)
            && self.priority.is_none_or(|p| p == t.priority)
            && self.channel.is_none_or(|c| c == t.channel)
            && self.assignee.is_none_or(|a| Some(a) == t.assignee_id)
            && self.sla.is_none_or(|s| s == t.sla_status(now))
    }
}

pub const LIST_FILTERS: [&str; 6] = [
    "stage",
    "priority",
    "channel",
    "assignee_id",
    "sla_status",
    "user_id",
];

/// Tickets newest first: a customer's own; for staff everyone's, or one customer's (`user_id`).
pub fn list(
    reads: &impl Reader,
    caller: &UserRecord,
    page: &Page,
) -> Result<(Vec<TicketRecord>, Option<String>), AppError> {
    let filter = TicketFilter::parse(page)?;
    let owner = match (caller.role, page.uuid_filter("user_id")?) {
        (Role::User, Some(u)) if u != caller.id => return Err(AppError::NotFound),
        (Role::User, _) => Some(caller.id),
        (_, u) => u,
    };
    let prefix = owner.map(keys::user).unwrap_or_default();
    if page.after.as_ref().is_some_and(|a| !a.starts_with(&prefix)) {
        return Err(AppError::validation(
            "cursor",
            "the cursor is not one we issued",
        ));
    }
    let now = now_us();
    let mut after = page.after.clone();
    let mut items = Vec::new();
    let mut examined = 0;
    loop {
        let rows = list_step(reads, owner.map(|_| prefix.as_slice()), after.as_deref())?;
        let exhausted = rows.len() < SCAN_STEP;
        for (k, t) in rows {
            examined += 1;
            after = Some(k);
            if let Some(t) = t.filter(|t| filter.keeps(t, now)) {
                items.push(t);
            }
            if items.len() == page.limit || examined >= LIST_SCAN_MAX {
                return Ok((items, after.map(|k| crate::extract::encode_cursor(&k))));
            }
        }
        if exhausted {
            return Ok((items, None));
        }
    }
}

/// A listing row: the key the cursor moves over, and the ticket (if it is still there).
type Row = (Vec<u8>, Option<TicketRecord>);

/// The next keys of a listing: one customer's index (`owner_prefix`), else the tickets
/// themselves (ids are time-ordered either way), newest first.
fn list_step(
    reads: &impl Reader,
    owner_prefix: Option<&[u8]>,
    after: Option<&[u8]>,
) -> Result<Vec<Row>, AppError> {
    let Some(prefix) = owner_prefix else {
        let rows = reads.scan::<TicketRecord>(&[], after, Direction::Backward, SCAN_STEP)?;
        return Ok(rows.into_iter().map(|(k, t)| (k, Some(t))).collect());
    };
    let rows = reads.scan::<TicketOfUser>(prefix, after, Direction::Backward, SCAN_STEP)?;
    rows.into_iter()
        .map(|(k, _)| {
            let t = keys::pair_child(&k)
                .map(|id| reads.get::<TicketRecord>(&keys::id(id)))
                .transpose()?
                .flatten();
            Ok((k, t))
        })
        .collect()
}

/// One page of a ticket's messages, oldest first (internal notes only for staff).
pub fn messages(
    reads: &impl Reader,
    ticket: &TicketRecord,
    caller_is_staff: bool,
    page: &Page,
) -> Result<(Vec<TicketEventRecord>, Option<String>), AppError> {
    let prefix = keys::id(ticket.id);
    if page.after.as_ref().is_some_and(|a| !a.starts_with(&prefix)) {
        return Err(AppError::validation(
            "since",
            "the cursor is not one we issued",
        ));
    }
    let mut after = page.after.clone();
    let mut items = Vec::new();
    loop {
        let rows = reads.scan::<TicketEventRecord>(
            &prefix,
            after.as_deref(),
            Direction::Forward,
            SCAN_STEP,
        )?;
        let exhausted = rows.len() < SCAN_STEP;
        for (k, e) in rows {
            after = Some(k);
            let message = matches!(e.kind, TicketEventKind::Message { .. });
            if message && shows(caller_is_staff, &e) {
                items.push(e);
                if items.len() == page.limit {
                    return Ok((items, after.map(|k| crate::extract::encode_cursor(&k))));
                }
            }
        }
        if exhausted {
            return Ok((items, None));
        }
    }
}

/// Events of a ticket after event number `after`, at most `limit` (all kinds; the caller
/// filters with [`shows`]).
pub fn events_after(
    reads: &impl Reader,
    ticket: Uuid,
    after: u32,
    limit: usize,
) -> Result<Vec<TicketEventRecord>, AppError> {
    let from = keys::ticket_event(ticket, after);
    Ok(reads
        .scan::<TicketEventRecord>(&keys::id(ticket), Some(&from), Direction::Forward, limit)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

// --- Changes --------------------------------------------------------------------------------------

/// What a customer gives to open a ticket, parsed.
pub struct NewTicket {
    pub subject: String,
    pub description: String,
    pub channel: TicketChannel,
    pub project_id: Option<Uuid>,
    pub generation_request_id: Option<Uuid>,
}

/// 403 `feature_disabled` while live chat is off (read on every request).
pub fn chat_enabled(state: &AppState) -> Result<(), AppError> {
    crate::services::features::require(&state.store, state.config.features, |f| {
        f.enable_live_chat_support
    })
}

/// Opens a ticket for `caller`, with the first-response deadline of their tier.
pub async fn open(
    state: &AppState,
    caller: &UserRecord,
    new: NewTicket,
) -> Result<TicketRecord, AppError> {
    if new.channel == TicketChannel::Chat {
        chat_enabled(state)?;
    }
    let msg = OpenTicket {
        subject: new.subject,
        description: new.description,
        channel: new.channel,
        project_id: new.project_id,
        generation_request_id: new.generation_request_id,
        first_response_within_us: state
            .config
            .file
            .helpdesk
            .first_response_within_us(caller.tier),
        numbering: state.numbering.clone(),
    };
    let ticket = state
        .workspaces
        .send(caller.id, msg)
        .await
        .unwrap_or(Err(WorkspaceError::Unavailable))?;
    state.metrics.tickets_opened.fetch_add(1, Ordering::Relaxed);
    tracing::info!(ticket = %ticket.id, number = ticket.number, "ticket opened");
    Ok(ticket)
}

/// Posts a message on `ticket` (read by the caller's rules). Only staff write internal notes.
pub async fn post(
    state: &AppState,
    caller: &UserRecord,
    ticket: &TicketRecord,
    body: String,
    internal: bool,
) -> Result<TicketDone, AppError> {
    if internal && !is_staff(caller) {
        return Err(AppError::Forbidden);
    }
    if ticket.channel == TicketChannel::Chat {
        chat_enabled(state)?;
    }
    let msg = PostMessage {
        ticket_id: ticket.id,
        author_id: caller.id,
        author_role: caller.role,
        body,
        internal,
    };
    let done = state.workspaces.change(ticket.user_id, msg).await?;
    after_change(state, &done);
    Ok(done)
}

/// Stage, priority, assignee (staff only).
pub async fn update(
    state: &AppState,
    caller: &UserRecord,
    ticket: &TicketRecord,
    change: UpdateTicket,
) -> Result<TicketDone, AppError> {
    if !is_staff(caller) {
        return Err(AppError::Forbidden);
    }
    if ticket.channel == TicketChannel::Chat {
        chat_enabled(state)?;
    }
    let change = UpdateTicket {
        ticket_id: ticket.id,
        by: caller.id,
        ..change
    };
    let done = state.workspaces.change(ticket.user_id, change).await?;
    after_change(state, &done);
    Ok(done)
}

fn after_change(state: &AppState, done: &TicketDone) {
    if done.newly_breached {
        state.metrics.sla_breaches.fetch_add(1, Ordering::Relaxed);
    }
    if !done.events.is_empty() {
        state.tickets.notify(done.ticket.id);
    }
}

async fn mark_breached(state: &AppState, id: Uuid) -> Result<bool, AppError> {
    let Some(t) = state.store.get::<TicketRecord>(&keys::id(id))? else {
        return Ok(false);
    };
    Ok(state
        .workspaces
        .change(t.user_id, MarkSlaBreached { ticket_id: id })
        .await?)
}

/// Marks the tickets whose first-response deadline has passed unanswered (at most `limit` per
/// run), counting each breach once. Returns how many it marked.
pub async fn sweep_sla(state: &AppState, limit: usize) -> Result<usize, AppError> {
    let now = now_us();
    let due = state
        .store
        .scan::<TicketAwaitingResponse>(&[], None, Direction::Forward, limit)?;
    let mut marked = 0;
    for (k, _) in due {
        let Some((due_at, id)) = keys::parse_live_generation(&k) else {
            continue;
        };
        if due_at >= now {
            break;
        }
        // One ticket that cannot be marked (undecodable, its owner's actor busy) must not stop
        // the others: it is logged and retried on the next run.
        match mark_breached(state, id).await {
            Ok(true) => {
                state.metrics.sla_breaches.fetch_add(1, Ordering::Relaxed);
                marked += 1;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(ticket = %id, error = %e, "SLA breach not marked; retried next run")
            }
        }
    }
    if marked > 0 {
        tracing::info!(marked, "tickets past their first-response deadline");
    }
    Ok(marked)
}
