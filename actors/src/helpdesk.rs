//! Helpdesk tickets (SPEC §9). A ticket belongs to the customer who opened it, so every change
//! of it (a message, a stage, an assignment, the SLA mark) goes through that customer's
//! [`Workspace`] actor: one change of a ticket at a time, each a read-check-write with nothing
//! interleaved. Ticket numbers are gapless across all customers: the [`Numbering`] actor writes
//! one numbered ticket at a time, and on a shared database one node at a time.

use std::sync::Arc;

use actix::prelude::*;
use storage::keys;
use storage::records::*;
use storage::{now_us, ClusterMutex, Store, WriteOutcome, WriteSet};
use uuid::Uuid;

use crate::registry::MAILBOX_CAPACITY;
use crate::workspace::{owned, within_limit, Change, Workspace, WorkspaceError};

/// Messages a ticket holds at most, internal notes included.
pub const MESSAGES_PER_TICKET_MAX: u32 = 1000;
/// Stage changes a ticket records at most (its event log is bounded by both).
pub const STAGE_CHANGES_PER_TICKET_MAX: u32 = 1000;
/// Tickets a customer may have open (not resolved or closed) when opening another.
pub const OPEN_TICKETS_PER_USER_MAX: usize = 20;

// --- Numbering ----------------------------------------------------------------------------------

/// Writes numbered records one at a time. Why an actor and not a compare-and-set: a hundred
/// tickets opened at once would all read one counter and all but one lose, round after round;
/// here each write reads the counter after the last one committed, so none loses and no number
/// is skipped (a set that fails takes its number with it, since the counter moves only with it).
pub struct Numbering {
    store: Store,
    /// Turns across nodes on one database: the actor orders this node's writes, the mutex
    /// orders the nodes, so none reads a counter another is about to move.
    turns: Arc<ClusterMutex>,
}

impl Numbering {
    pub fn start(store: Store, turns: ClusterMutex) -> Addr<Numbering> {
        Numbering {
            store,
            turns: Arc::new(turns),
        }
        .start()
    }
}

impl Actor for Numbering {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

/// The write set that `build` makes around the next number of `sequence`, with the counter.
pub struct Numbered<T> {
    pub sequence: &'static [u8],
    pub build: Box<dyn FnOnce(u64) -> (WriteSet, T) + Send>,
}

impl<T: Send + 'static> Message for Numbered<T> {
    type Result = Result<T, WorkspaceError>;
}

impl<T: Send + 'static> Handler<Numbered<T>> for Numbering {
    // Atomic: the next message reads the counter only after this write is durable.
    type Result = AtomicResponse<Self, Result<T, WorkspaceError>>;

    fn handle(&mut self, msg: Numbered<T>, _ctx: &mut Self::Context) -> Self::Result {
        let (store, turns) = (self.store.clone(), self.turns.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let _turn = turns.lock().await?;
                let key = msg.sequence.to_vec();
                let current = store.get::<SequenceRecord>(&key)?;
                let number = current.map_or(1, |c| c.next);
                let (mut set, done) = (msg.build)(number);
                match current {
                    Some(c) => set.require_equal(key.clone(), &c),
                    None => set.require_absent::<SequenceRecord>(key.clone()),
                };
                let next = number.checked_add(1).ok_or(WorkspaceError::LimitReached {
                    what: "numbers in a sequence",
                    limit: usize::MAX,
                })?;
                set.put(key, &SequenceRecord { next });
                match store.write(set).await? {
                    WriteOutcome::Committed => Ok(done),
                    WriteOutcome::ConditionFailed(_) => Err(WorkspaceError::Conflict),
                }
            }
            .into_actor(self),
        ))
    }
}

// --- Opening a ticket -----------------------------------------------------------------------------

/// Opens a ticket for the owner: its links must be the owner's own, the owner may hold at most
/// [`OPEN_TICKETS_PER_USER_MAX`] open tickets, and it takes the next ticket number.
#[derive(Message, Clone)]
#[rtype(result = "Result<TicketRecord, WorkspaceError>")]
pub struct OpenTicket {
    pub subject: String,
    pub description: String,
    pub channel: TicketChannel,
    pub project_id: Option<Uuid>,
    pub generation_request_id: Option<Uuid>,
    /// The first-response promise of the owner's tier.
    pub first_response_within_us: i64,
    pub numbering: Addr<Numbering>,
}

impl Handler<OpenTicket> for Workspace {
    // Atomic: the open-ticket count and the link checks hold until the ticket is written.
    type Result = AtomicResponse<Self, Result<TicketRecord, WorkspaceError>>;

    fn handle(&mut self, msg: OpenTicket, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let owner = self.owner;
        AtomicResponse::new(Box::pin(
            async move {
                let now = now_us();
                let unnumbered = check_new_ticket(&store, owner, &msg, now)?;
                let build = Box::new(move |number: u64| {
                    let t = TicketRecord {
                        number,
                        ..unnumbered
                    };
                    let mut set = WriteSet::new();
                    set.put(keys::id(t.id), &t);
                    set.put(keys::pair(owner, t.id), &TicketOfUser);
                    set.put(keys::pair(owner, t.id), &OpenTicketOfUser);
                    set.put(
                        keys::awaiting_response(t.first_response_due_at_us, t.id),
                        &TicketAwaitingResponse,
                    );
                    (set, t)
                });
                let numbered = Numbered {
                    sequence: TICKET_SEQUENCE,
                    build,
                };
                msg.numbering
                    .send(numbered)
                    .await
                    .unwrap_or(Err(WorkspaceError::Unavailable))
            }
            .into_actor(self),
        ))
    }
}

/// The new ticket (number 0 until numbered) once its rules hold.
fn check_new_ticket(
    store: &Store,
    owner: Uuid,
    msg: &OpenTicket,
    now: i64,
) -> Result<TicketRecord, WorkspaceError> {
    within_limit(
        store,
        storage::Table::OpenTicketsByUser,
        owner,
        "open tickets per customer",
        OPEN_TICKETS_PER_USER_MAX,
    )?;
    // A link to another customer's record answers exactly as one to no record at all.
    if let Some(p) = msg.project_id {
        owned::<ProjectRecord>(store, owner, p).map_err(|_| WorkspaceError::BadReference {
            field: "project_id",
            what: "projects",
        })?;
    }
    if let Some(g) = msg.generation_request_id {
        let bad = WorkspaceError::BadReference {
            field: "generation_request_id",
            what: "generation requests",
        };
        let generation = owned::<GenerationRecord>(store, owner, g).map_err(|_| bad)?;
        if msg.project_id.is_some_and(|p| p != generation.project_id) {
            return Err(WorkspaceError::InvalidField {
                field: "generation_request_id",
                reason: "belongs to another project than project_id",
            });
        }
    }
    Ok(TicketRecord {
        id: Uuid::now_v7(),
        number: 0,
        user_id: owner,
        subject: msg.subject.clone(),
        description: msg.description.clone(),
        channel: msg.channel,
        stage: TicketStage::New,
        priority: TicketPriority::Normal,
        assignee_id: None,
        project_id: msg.project_id,
        generation_request_id: msg.generation_request_id,
        first_response_due_at_us: now.saturating_add(msg.first_response_within_us),
        first_responded_at_us: None,
        sla_breached: false,
        messages_count: 0,
        events_count: 0,
        created_at_us: now,
        updated_at_us: now,
    })
}

/// The owner's ticket (another customer's is not found).
fn ticket_of(store: &Store, owner: Uuid, id: Uuid) -> Result<TicketRecord, WorkspaceError> {
    match store.get::<TicketRecord>(&keys::id(id))? {
        Some(t) if t.user_id == owner => Ok(t),
        _ => Err(WorkspaceError::NotFound),
    }
}

/// A ticket's next state and the set that writes it, built up by the changes below.
struct TicketChange {
    before: TicketRecord,
    after: TicketRecord,
    set: WriteSet,
    events: Vec<TicketEventRecord>,
    newly_breached: bool,
}

impl TicketChange {
    fn new(before: TicketRecord, now: i64) -> TicketChange {
        let mut set = WriteSet::new();
        set.require_equal(keys::id(before.id), &before);
        let after = TicketRecord {
            updated_at_us: now,
            ..before.clone()
        };
        TicketChange {
            before,
            after,
            set,
            events: Vec::new(),
            newly_breached: false,
        }
    }

    fn event(&mut self, kind: TicketEventKind) {
        let seq = self.after.events_count + 1;
        self.after.events_count = seq;
        let e = TicketEventRecord {
            ticket_id: self.after.id,
            seq,
            kind,
            at_us: self.after.updated_at_us,
        };
        self.set.put(keys::ticket_event(e.ticket_id, seq), &e);
        self.events.push(e);
    }

    fn stage_changes(&self) -> u32 {
        self.after.events_count - self.after.messages_count
    }

    fn stage(&mut self, to: TicketStage, by: Uuid) -> Result<(), WorkspaceError> {
        let from = self.after.stage;
        if from == to {
            return Ok(());
        }
        if self.stage_changes() >= STAGE_CHANGES_PER_TICKET_MAX {
            return Err(WorkspaceError::LimitReached {
                what: "stage changes per ticket",
                limit: STAGE_CHANGES_PER_TICKET_MAX as usize,
            });
        }
        self.after.stage = to;
        self.event(TicketEventKind::Stage { from, to, by });
        Ok(())
    }

    /// Whether the change leaves the ticket as it was (its time of change aside).
    fn unchanged(&self) -> bool {
        let same_time = TicketRecord {
            updated_at_us: self.before.updated_at_us,
            ..self.after.clone()
        };
        same_time == self.before
    }

    /// The first public reply by staff: the SLA is met, or breached if it came late.
    fn responded(&mut self) {
        if self.after.first_responded_at_us.is_some() {
            return;
        }
        let now = self.after.updated_at_us;
        self.after.first_responded_at_us = Some(now);
        if now > self.after.first_response_due_at_us && !self.after.sla_breached {
            self.after.sla_breached = true;
            self.newly_breached = true;
        }
    }

    /// The set with the ticket and its indexes brought in line with the new state.
    fn finish(mut self) -> (WriteSet, TicketDone) {
        let (b, a) = (&self.before, &self.after);
        let pair = keys::pair(a.user_id, a.id);
        match (b.stage.is_open(), a.stage.is_open()) {
            (true, false) => {
                self.set.delete::<OpenTicketOfUser>(pair);
            }
            (false, true) => {
                self.set.put(pair, &OpenTicketOfUser);
            }
            _ => {}
        }
        if b.awaits_response() && !a.awaits_response() {
            self.set
                .delete::<TicketAwaitingResponse>(keys::awaiting_response(
                    b.first_response_due_at_us,
                    b.id,
                ));
        }
        self.set.put(keys::id(a.id), a);
        let done = TicketDone {
            ticket: self.after,
            events: self.events,
            newly_breached: self.newly_breached,
        };
        (self.set, done)
    }
}

/// A ticket after a change, the events the change added, and whether it just breached its SLA.
#[derive(Debug, Clone)]
pub struct TicketDone {
    pub ticket: TicketRecord,
    pub events: Vec<TicketEventRecord>,
    pub newly_breached: bool,
}

fn refuse_closed(t: &TicketRecord) -> Result<(), WorkspaceError> {
    if t.stage == TicketStage::Closed {
        return Err(WorkspaceError::InvalidStatus("closed"));
    }
    Ok(())
}

// --- Messages -----------------------------------------------------------------------------------

/// Posts a message on a ticket of the owner: a customer's message, a public reply by staff or
/// an internal note. A customer writing on a resolved (or waiting) ticket moves it back to
/// `in_progress`; the first public reply by staff answers the SLA.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<TicketDone, WorkspaceError>")]
pub struct PostMessage {
    pub ticket_id: Uuid,
    pub author_id: Uuid,
    pub author_role: Role,
    pub body: String,
    pub internal: bool,
}

impl Change for PostMessage {
    type Done = TicketDone;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, TicketDone), WorkspaceError> {
        let t = ticket_of(store, owner, self.ticket_id)?;
        refuse_closed(&t)?;
        if t.messages_count >= MESSAGES_PER_TICKET_MAX {
            return Err(WorkspaceError::LimitReached {
                what: "messages per ticket",
                limit: MESSAGES_PER_TICKET_MAX as usize,
            });
        }
        let staff = self.author_role != Role::User;
        let mut c = TicketChange::new(t, now);
        c.after.messages_count += 1;
        c.event(TicketEventKind::Message {
            id: Uuid::now_v7(),
            author_id: self.author_id,
            author_role: self.author_role,
            body: self.body,
            internal: self.internal,
        });
        if self.internal {
            // A note the customer never sees must not show as a change to them either.
            c.after.updated_at_us = c.before.updated_at_us;
        }
        if staff && !self.internal {
            c.responded();
        }
        let customer_answers = !staff
            && matches!(
                c.after.stage,
                TicketStage::Resolved | TicketStage::WaitingCustomer
            );
        // At the stage-change bound the message still goes in (a customer can always answer);
        // only the reopen is left out.
        if customer_answers && c.stage_changes() < STAGE_CHANGES_PER_TICKET_MAX {
            c.stage(TicketStage::InProgress, self.author_id)?;
        }
        Ok(c.finish())
    }

    fn within_quota() -> bool {
        false
    }
}

// --- Staff changes ------------------------------------------------------------------------------

/// Changes a ticket's stage, priority or assignee (agents and admins). A closed ticket is final.
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "Result<TicketDone, WorkspaceError>")]
pub struct UpdateTicket {
    pub ticket_id: Uuid,
    pub by: Uuid,
    pub stage: Option<TicketStage>,
    pub priority: Option<TicketPriority>,
    /// `Some(None)` unassigns.
    pub assignee_id: Option<Option<Uuid>>,
}

impl Change for UpdateTicket {
    type Done = TicketDone;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, TicketDone), WorkspaceError> {
        let t = ticket_of(store, owner, self.ticket_id)?;
        refuse_closed(&t)?;
        let mut c = TicketChange::new(t, now);
        if let Some(Some(a)) = self.assignee_id {
            let assignee = store.get::<UserRecord>(&keys::user(a))?;
            match assignee {
                // The role is part of the rule: the assignment fails if it changes meanwhile.
                Some(u) if u.role != Role::User => {
                    c.set.require_equal(keys::user(a), &u);
                }
                _ => {
                    return Err(WorkspaceError::InvalidField {
                        field: "assignee_id",
                        reason: "must name an agent or admin",
                    })
                }
            }
        }
        if let Some(a) = self.assignee_id {
            c.after.assignee_id = a;
        }
        if let Some(p) = self.priority {
            c.after.priority = p;
        }
        if let Some(s) = self.stage {
            c.stage(s, self.by)?;
        }
        if c.unchanged() {
            // Nothing to record: the answer is the ticket as it is, and nothing is written.
            let done = TicketDone {
                ticket: c.before,
                events: Vec::new(),
                newly_breached: false,
            };
            return Ok((WriteSet::new(), done));
        }
        Ok(c.finish())
    }

    fn within_quota() -> bool {
        false
    }
}

/// Marks a ticket whose first-response deadline passed unanswered (the SLA sweep). Answers
/// whether this call marked it (a ticket answered or marked meanwhile is left as it is).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<bool, WorkspaceError>")]
pub struct MarkSlaBreached {
    pub ticket_id: Uuid,
}

impl Change for MarkSlaBreached {
    type Done = bool;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, bool), WorkspaceError> {
        let t = ticket_of(store, owner, self.ticket_id)?;
        if !t.awaits_response() || now <= t.first_response_due_at_us {
            return Ok((WriteSet::new(), false));
        }
        let mut c = TicketChange::new(t, now);
        // The mark is bookkeeping, not an edit someone made: the ticket keeps its updated_at.
        c.after.updated_at_us = c.before.updated_at_us;
        c.after.sla_breached = true;
        let (set, _) = c.finish();
        Ok((set, true))
    }

    fn within_quota() -> bool {
        false
    }
}
