//! The helpdesk's invariants: tickets, their event logs, their indexes and their numbers.

use redb::{ReadTransaction, ReadableTable};
use uuid::Uuid;

use super::{get, has, hex, open, Collector, RawTable};
use crate::codec::decode;
use crate::keys;
use crate::records::*;
use crate::{StorageError, Table};

struct Tables {
    tickets: RawTable,
    events: RawTable,
    by_user: RawTable,
    open_by_user: RawTable,
    awaiting: RawTable,
    projects: RawTable,
    generations: RawTable,
}

/// Every ticket is indexed as its state says, links only to its customer's records (or to
/// records since deleted), keeps consistent SLA fields and a gapless event log that matches its
/// counters; ticket numbers are 1..N without gap or repeat, and the sequence is at N + 1; every
/// event and index entry names an existing ticket.
pub(super) fn check_helpdesk(txn: &ReadTransaction, c: &mut Collector) -> Result<(), StorageError> {
    let t = Tables {
        tickets: open(txn, Table::Tickets)?,
        events: open(txn, Table::TicketEvents)?,
        by_user: open(txn, Table::TicketsByUser)?,
        open_by_user: open(txn, Table::OpenTicketsByUser)?,
        awaiting: open(txn, Table::TicketsAwaitingResponse)?,
        projects: open(txn, Table::Projects)?,
        generations: open(txn, Table::Generations)?,
    };
    let mut numbers = Vec::new();
    for item in t.tickets.iter()? {
        let (_, v) = item?;
        c.seen(Table::Tickets);
        match decode::<TicketRecord>(v.value()) {
            Ok(ticket) => {
                numbers.push(ticket.number);
                check_ticket(&t, &ticket, c)?;
            }
            Err(e) => c.violation(format!("ticket unreadable: {e}")),
        }
    }
    check_numbers(txn, numbers, c)?;
    check_orphans(&t, c)
}

fn check_ticket(t: &Tables, ticket: &TicketRecord, c: &mut Collector) -> Result<(), StorageError> {
    let id = ticket.id;
    let pair = keys::pair(ticket.user_id, id);
    if !has(&t.by_user, pair.clone())? {
        c.violation(format!("ticket {id} is not indexed under its customer"));
    }
    if has(&t.open_by_user, pair)? != ticket.stage.is_open() {
        c.violation(format!(
            "ticket {id} ({}) is wrongly in or out of the open index",
            ticket.stage.as_str()
        ));
    }
    let awaiting_key = keys::awaiting_response(ticket.first_response_due_at_us, id);
    if has(&t.awaiting, awaiting_key)? != ticket.awaits_response() {
        c.violation(format!(
            "ticket {id} is wrongly in or out of the SLA deadline index"
        ));
    }
    check_links(t, ticket, c)?;
    check_sla(ticket, c);
    check_events(t, ticket, c)
}

fn check_links(t: &Tables, ticket: &TicketRecord, c: &mut Collector) -> Result<(), StorageError> {
    // A link to a record since deleted is allowed (the ticket shows it as gone); one that does
    // not decode is damage, not a deletion.
    if let Some(p) = ticket.project_id {
        match get::<ProjectRecord>(&t.projects, &keys::id(p))? {
            Some(Ok(project)) if project.user_id != ticket.user_id => c.violation(format!(
                "ticket {} links project {p} of another user",
                ticket.id
            )),
            Some(Err(e)) => c.violation(format!(
                "ticket {} links project {p}, which does not decode: {e}",
                ticket.id
            )),
            _ => {}
        }
    }
    if let Some(g) = ticket.generation_request_id {
        match get::<GenerationRecord>(&t.generations, &keys::id(g))? {
            Some(Ok(generation)) if generation.user_id != ticket.user_id => c.violation(format!(
                "ticket {} links generation request {g} of another user",
                ticket.id
            )),
            Some(Err(e)) => c.violation(format!(
                "ticket {} links generation request {g}, which does not decode: {e}",
                ticket.id
            )),
            _ => {}
        }
    }
    Ok(())
}

fn check_sla(ticket: &TicketRecord, c: &mut Collector) {
    let due = ticket.first_response_due_at_us;
    let consistent = due > ticket.created_at_us
        && match ticket.first_responded_at_us {
            Some(at) => at >= ticket.created_at_us && (at > due) == ticket.sla_breached,
            // Marked breached only once the deadline has passed.
            None => !ticket.sla_breached || due < crate::now_us(),
        };
    if !consistent {
        c.violation(format!(
            "ticket {} has inconsistent SLA fields (due {due}, responded {:?}, breached {})",
            ticket.id, ticket.first_responded_at_us, ticket.sla_breached
        ));
    }
}

/// The ticket's events are numbered 1..events_count, of this ticket, with messages_count
/// messages among them.
fn check_events(t: &Tables, ticket: &TicketRecord, c: &mut Collector) -> Result<(), StorageError> {
    let (mut expected, mut messages) = (1u32, 0u32);
    let start = keys::ticket_event(ticket.id, 0);
    let end = keys::ticket_event(ticket.id, u32::MAX);
    for item in t.events.range(start.as_slice()..=end.as_slice())? {
        let (k, v) = item?;
        let seq = keys::parse_ticket_event(k.value()).map(|(_, s)| s);
        match decode::<TicketEventRecord>(v.value()) {
            Ok(e) if Some(e.seq) == seq && e.seq == expected && e.ticket_id == ticket.id => {
                if matches!(e.kind, TicketEventKind::Message { .. }) {
                    messages += 1;
                }
            }
            Ok(_) => c.violation(format!(
                "ticket {} event {} is out of place (expected number {expected})",
                ticket.id,
                hex(k.value())
            )),
            Err(e) => c.violation(format!("ticket {} event unreadable: {e}", ticket.id)),
        }
        expected = expected.saturating_add(1);
    }
    if expected - 1 != ticket.events_count || messages != ticket.messages_count {
        c.violation(format!(
            "ticket {} counts {} events and {} messages; its log holds {} and {messages}",
            ticket.id,
            ticket.events_count,
            ticket.messages_count,
            expected - 1
        ));
    }
    Ok(())
}

fn check_numbers(
    txn: &ReadTransaction,
    mut numbers: Vec<u64>,
    c: &mut Collector,
) -> Result<(), StorageError> {
    numbers.sort_unstable();
    for (i, n) in numbers.iter().enumerate() {
        if *n != i as u64 + 1 {
            c.violation(format!(
                "ticket numbers are not 1..{} without gaps: position {} holds {n}",
                numbers.len(),
                i + 1
            ));
            break;
        }
    }
    let sequences = open(txn, Table::Sequences)?;
    let next = get::<SequenceRecord>(&sequences, TICKET_SEQUENCE)?.and_then(Result::ok);
    let expected = numbers.len() as u64 + 1;
    if next.map_or(1, |s| s.next) != expected {
        c.violation(format!(
            "the ticket number sequence is at {:?}, expected {expected}",
            next.map(|s| s.next)
        ));
    }
    Ok(())
}

/// Events and index entries of tickets that do not exist (or not as the entry says).
fn check_orphans(t: &Tables, c: &mut Collector) -> Result<(), StorageError> {
    let ticket = |id: Uuid| -> Result<Option<TicketRecord>, StorageError> {
        Ok(get::<TicketRecord>(&t.tickets, &keys::id(id))?.and_then(Result::ok))
    };
    for item in t.events.iter()? {
        let (k, _) = item?;
        c.seen(Table::TicketEvents);
        let parent = keys::parse_ticket_event(k.value()).map(|(id, _)| id);
        if parent.map(ticket).transpose()?.flatten().is_none() {
            c.violation(format!("ticket event {} has no ticket", hex(k.value())));
        }
    }
    for (table, handle) in [
        (Table::TicketsByUser, &t.by_user),
        (Table::OpenTicketsByUser, &t.open_by_user),
    ] {
        for item in handle.iter()? {
            let (k, _) = item?;
            c.seen(table);
            let owner = k.value().get(..16).and_then(|b| Uuid::from_slice(b).ok());
            let found = keys::pair_child(k.value())
                .map(ticket)
                .transpose()?
                .flatten();
            if found.is_none_or(|t| Some(t.user_id) != owner) {
                c.violation(format!(
                    "{table} entry {} names no ticket of its user",
                    hex(k.value())
                ));
            }
        }
    }
    for item in t.awaiting.iter()? {
        let (k, _) = item?;
        c.seen(Table::TicketsAwaitingResponse);
        let parsed = keys::parse_live_generation(k.value());
        let found = parsed.map(|(_, id)| ticket(id)).transpose()?.flatten();
        let matches = matches!((parsed, &found), (Some((due, _)), Some(t)) if t.first_response_due_at_us == due);
        if !matches {
            c.violation(format!(
                "SLA deadline entry {} names no ticket with that deadline",
                hex(k.value())
            ));
        }
    }
    Ok(())
}
