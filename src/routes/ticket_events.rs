//! `GET /api/v1/tickets/{id}/events`: new messages and stage changes of a ticket as
//! Server-Sent Events, while `enable_live_chat_support` is on.
//!
//! The stream reads the ticket's event log from the store; the hub only wakes it. So nothing is
//! missed: a notice lost to a full buffer, a change made by another worker, or a reconnect with
//! `Last-Event-ID` (the event number) all end in the same read of what came after the last event
//! sent. A customer's stream skips internal notes.

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde_json::json;
use storage::records::{TicketEventKind, TicketEventRecord, TicketRecord};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::AppError;
use crate::services::helpdesk as desk;
use crate::services::workspace::{self as ws, Access};
use crate::state::AppState;
use crate::ticket_hub::StreamSlot;
use crate::views::rfc3339;

/// A comment line at least this often, so proxies and clients see the stream alive.
const HEARTBEAT_S: u64 = 15;
/// On a store shared by several nodes another node's change wakes this one's streams when its
/// notification is heard; should one be missed (the listener reconnecting), streams also
/// re-read their ticket this often.
const SHARED_STORE_POLL_MS: u64 = 5_000;
/// Frames a stream holds for a slow client before its reader waits.
const FRAMES_BUFFERED_MAX: usize = 16;
/// How long one frame may wait for a client that stopped reading before the stream ends (its
/// slot would otherwise be held past its lifetime and through a shutdown).
const SEND_WAIT_MAX_S: u64 = 15;
/// Events read from the store per step.
const EVENTS_READ_MAX: usize = 100;

/// Stream the ticket's new messages and stage changes. Resume with `Last-Event-ID`.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/events", tag = "helpdesk", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Last-Event-ID" = Option<u32>, Header, description = "the id of the last event received")),
    responses((status = 200, description = "text/event-stream: `message` and `stage` events", content_type = "text/event-stream", body = String),
        (status = 403, description = "feature_disabled", body = crate::views::ErrorBody),
        (status = 422, body = crate::views::ErrorBody), (status = 429, description = "too many open streams", body = crate::views::ErrorBody)))]
#[get("/api/v1/tickets/{id}/events")]
pub async fn ticket_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    desk::chat_enabled(&state)?;
    let t = ws::load::<TicketRecord>(&*caller.reads, &caller.user, &id, Access::Read)?;
    let after = last_event_id(&req)?.map_or(t.events_count, |n| n.min(t.events_count));
    let slot = state
        .tickets
        .enter(caller.user.id)
        .ok_or(AppError::RateLimited { retry_after_s: 5 })?;
    let (tx, rx) = mpsc::channel::<Bytes>(FRAMES_BUFFERED_MAX);
    let relay = Relay {
        state: state.clone(),
        ticket: t.id,
        after,
        staff: desk::is_staff(&caller.user),
        token_hash: caller.token_hash,
        tx,
        _slot: slot,
    };
    actix_web::rt::spawn(relay.run());
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, std::convert::Infallible>(frame), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

fn last_event_id(req: &HttpRequest) -> Result<Option<u32>, AppError> {
    req.headers()
        .get("Last-Event-ID")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .ok_or_else(|| AppError::validation("Last-Event-ID", "must be an event id we sent"))
        })
        .transpose()
}

/// One open stream: reads what came after `after` whenever the ticket may have changed.
struct Relay {
    state: web::Data<AppState>,
    ticket: Uuid,
    after: u32,
    staff: bool,
    /// The caller's session: rechecked on every wake, so a logout, a password change, a role
    /// change or the toggle turned off ends the stream.
    token_hash: [u8; 32],
    tx: mpsc::Sender<Bytes>,
    _slot: StreamSlot,
}

impl Relay {
    async fn run(mut self) {
        // Subscribed before the first read: a change committed after that read wakes us.
        let mut changed = self.state.tickets.subscribe();
        let mut stopping = self.state.tickets.stopping();
        let lifetime = Duration::from_secs(self.state.config.file.helpdesk.stream_lifetime_seconds);
        let ends = tokio::time::Instant::now() + lifetime;
        let beat = Duration::from_secs(HEARTBEAT_S);
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
        if !self.send(Bytes::from_static(b": connected\n\n")).await {
            return;
        }
        let shared = self.state.store.postgres().is_some();
        let poll = Duration::from_millis(SHARED_STORE_POLL_MS);
        loop {
            if !self.still_allowed() {
                return;
            }
            match self.send_new().await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, ticket = %self.ticket, "event stream stopped");
                    return;
                }
            }
            tokio::select! {
                woke = wait_for(&mut changed, self.ticket) => if !woke { return },
                _ = heartbeat.tick() => {
                    if !self.send(Bytes::from_static(b": heartbeat\n\n")).await {
                        return;
                    }
                }
                _ = stopping.wait_for(|s| *s) => return,
                _ = tokio::time::sleep_until(ends) => return,
                _ = tokio::time::sleep(poll), if shared => {}
            }
        }
    }

    /// Sends every event after `after`; false once the client is gone.
    async fn send_new(&mut self) -> Result<bool, AppError> {
        loop {
            let events =
                desk::events_after(&self.state.store, self.ticket, self.after, EVENTS_READ_MAX)?;
            let more = events.len() == EVENTS_READ_MAX;
            for e in events {
                self.after = e.seq;
                if desk::shows(self.staff, &e) && !self.send(frame(&e)).await {
                    return Ok(false);
                }
            }
            if !more {
                return Ok(true);
            }
        }
    }

    async fn send(&self, frame: Bytes) -> bool {
        let wait = Duration::from_secs(SEND_WAIT_MAX_S);
        matches!(
            tokio::time::timeout(wait, self.tx.send(frame)).await,
            Ok(Ok(()))
        )
    }

    /// Whether the caller may still hold this stream: the session lives, the caller's role
    /// still sees what it saw (a demoted agent must not keep reading internal notes), and live
    /// chat is still on.
    fn still_allowed(&self) -> bool {
        let session = self
            .state
            .store
            .read()
            .map_err(AppError::from)
            .and_then(|reads| crate::auth::session_user(&reads, &self.token_hash));
        match session {
            Ok(Some(user)) => {
                desk::is_staff(&user) == self.staff && desk::chat_enabled(&self.state).is_ok()
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, ticket = %self.ticket, "event stream recheck failed");
                false
            }
        }
    }
}

/// Until this ticket may have changed (true), or the hub is gone (false).
async fn wait_for(changed: &mut broadcast::Receiver<Uuid>, ticket: Uuid) -> bool {
    loop {
        match changed.recv().await {
            Ok(id) if id == ticket => return true,
            Ok(_) => {}
            // Notices were dropped: any of them may have been ours.
            Err(broadcast::error::RecvError::Lagged(_)) => return true,
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
}

/// `id:`, `event:` and one `data:` line of JSON (JSON has no raw newlines, so one line holds it).
fn frame(e: &TicketEventRecord) -> Bytes {
    let (event, data) = match &e.kind {
        TicketEventKind::Message { .. } => (
            "message",
            serde_json::to_value(crate::routes::tickets::MessageView::of(e)).unwrap_or_default(),
        ),
        TicketEventKind::Stage { from, to, by } => (
            "stage",
            json!({
                "ticket_id": e.ticket_id,
                "from": from.as_str(),
                "to": to.as_str(),
                "by": by,
                "at": rfc3339(e.at_us),
            }),
        ),
    };
    Bytes::from(format!("id: {}\nevent: {event}\ndata: {data}\n\n", e.seq))
}
