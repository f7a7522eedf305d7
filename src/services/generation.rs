//! Generation requests (SPEC §7): create (charge + request + outbox job in one durable write),
//! status, cancel, listing, and the timeout sweep.

use std::sync::atomic::Ordering;

use actors::generation::{apply_event, EventOutcome, GenerationError};
use actors::lifecycle::{creation_set, Event, JobBrandKit, JobMessage};
use actors::{Apply, IdempotencyKey, Outcome};
use sha2::{Digest, Sha256};
use storage::keys;
use storage::ledger::Posting;
use storage::records::*;
use storage::{now_us, Direction, Reader, Record, Table};
use uuid::Uuid;

use super::chain;
use crate::domain::IdempotencyKeyValue;
use crate::error::AppError;
use crate::extract::Page;
use crate::state::AppState;

pub const PROMPT_CHARS_MAX: usize = 4000;
pub const VARIATIONS_MAX: u8 = 4;
pub const PARAMS_BYTES_MAX: usize = 16 * 1024;
/// Ledger entries of the owner examined at most to fill one filtered page.
const LIST_SCAN_MAX: usize = 5000;

/// A validated create request.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub project_id: Uuid,
    pub prompt: String,
    pub format: String,
    pub variations: u8,
    pub params: serde_json::Value,
}

/// The fields of a generation (a create's, or a saved template's), validated.
#[derive(Debug, Clone)]
pub struct GenerationFields {
    pub prompt: String,
    pub format: String,
    pub variations: u8,
    pub params: serde_json::Value,
}

impl GenerationFields {
    /// Validates the raw fields against SPEC §7 and the price table; `params` must serialize
    /// under `params_bytes_max`.
    pub fn parse(
        state: &AppState,
        prompt: &str,
        format: String,
        variations: Option<i64>,
        params: Option<serde_json::Value>,
        params_bytes_max: usize,
    ) -> Result<Self, AppError> {
        // Prompts keep their newlines and tabs; other control and invisible characters go.
        let prompt = crate::domain::clean_text(prompt, "prompt", true)?;
        let chars = prompt.chars().count();
        if prompt.is_empty() || chars > PROMPT_CHARS_MAX {
            return Err(AppError::validation(
                "prompt",
                "the prompt must be 1 to 4000 characters",
            ));
        }
        if !state.config.file.prices.contains_key(&format) {
            let known: Vec<&str> = state
                .config
                .file
                .prices
                .keys()
                .map(String::as_str)
                .collect();
            return Err(AppError::validation(
                "format",
                format!("unknown format; one of {}", known.join(", ")),
            ));
        }
        let variations = match variations.unwrap_or(1) {
            v @ 1..=4 => v as u8,
            _ => {
                return Err(AppError::validation(
                    "variations",
                    "variations must be 1 to 4",
                ))
            }
        };
        let params = params.unwrap_or_else(|| serde_json::json!({}));
        if !params.is_object() {
            return Err(AppError::validation("params", "params must be an object"));
        }
        if params.to_string().len() >= params_bytes_max {
            return Err(AppError::validation(
                "params",
                format!("params must be under {} KiB", params_bytes_max / 1024),
            ));
        }
        Ok(GenerationFields {
            prompt,
            format,
            variations,
            params,
        })
    }
}

impl CreateRequest {
    /// Validates the raw fields against SPEC §7 and the price table.
    pub fn parse(
        state: &AppState,
        project_id: Uuid,
        prompt: String,
        format: String,
        variations: Option<i64>,
        params: Option<serde_json::Value>,
    ) -> Result<Self, AppError> {
        let f =
            GenerationFields::parse(state, &prompt, format, variations, params, PARAMS_BYTES_MAX)?;
        Ok(CreateRequest {
            project_id,
            prompt: f.prompt,
            format: f.format,
            variations: f.variations,
            params: f.params,
        })
    }

    /// What an idempotent retry must repeat exactly (serde_json sorts object keys).
    fn fingerprint(&self) -> [u8; 32] {
        let canonical = serde_json::json!({
            "project_id": self.project_id, "prompt": self.prompt, "format": self.format,
            "variations": self.variations, "params": self.params,
        });
        Sha256::digest(canonical.to_string().as_bytes()).into()
    }
}

/// The 202 answer (also what a replay returns).
#[derive(Debug, Clone)]
pub struct Created {
    pub id: Uuid,
    pub cost: u64,
    pub credit_balance: u64,
    pub replayed: bool,
}

/// Accepts a request: charges its cost and writes the request, its indexes and its job (in the
/// outbox) in one durable write through the caller's account actor. `reads` is the caller's
/// snapshot (the project and brand kit are read from it; the write rechecks the project).
pub async fn create(
    state: &AppState,
    reads: &impl Reader,
    caller: &UserRecord,
    req: CreateRequest,
    idempotency: Option<IdempotencyKeyValue>,
) -> Result<Created, AppError> {
    let project = own_project(reads, caller, req.project_id)?;
    let price = state
        .config
        .file
        .prices
        .get(&req.format)
        .copied()
        .ok_or_else(|| AppError::validation("format", "unknown format"))?;
    let cost = price * u64::from(req.variations);
    let generation = new_request(state, caller, &project, &req, cost);
    let kit = actors::workspace_reads::effective_brand_kit(reads, &project)?;
    let payload = job_payload(&generation, &req.params, kit.as_ref())?;
    let idempotency = idempotency.map(|k| IdempotencyKey {
        key_hash: Sha256::digest(format!("generation\0{}", k.as_str())).into(),
        request_hash: req.fingerprint(),
    });
    let apply = Apply {
        posting: Posting {
            amount: -i64::try_from(cost).map_err(|_| AppError::internal("cost out of range"))?,
            kind: LedgerKind::GenerationCharge,
            description: format!(
                "Generation: {} x{}",
                generation.format, generation.variations
            ),
            generation_request_id: Some(generation.id),
            invoice_id: None,
        },
        idempotency,
        extra: creation_set(&generation, payload),
    };
    let outcome = state.accounts.apply(caller.id, apply).await?;
    answer_create(state, generation.id, cost, outcome)
}

fn not_your_project() -> AppError {
    AppError::validation("project_id", "does not name one of your projects")
}

/// The caller's own project; another user's is the same answer as none (never revealed).
fn own_project(
    reads: &impl Reader,
    caller: &UserRecord,
    id: Uuid,
) -> Result<ProjectRecord, AppError> {
    match reads.get::<ProjectRecord>(&keys::id(id))? {
        Some(p) if p.user_id == caller.id && actors::workspace_reads::visible(reads, &p)? => Ok(p),
        _ => Err(not_your_project()),
    }
}

/// The request record as accepted: pending, with its deadline.
fn new_request(
    state: &AppState,
    caller: &UserRecord,
    project: &ProjectRecord,
    req: &CreateRequest,
    cost: u64,
) -> GenerationRecord {
    let now = now_us();
    let deadline_s = state.config.file.generation.deadline_seconds;
    let deadline_us = i64::try_from(deadline_s.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    GenerationRecord {
        id: Uuid::now_v7(),
        user_id: caller.id,
        project_id: project.id,
        prompt: req.prompt.clone(),
        format: req.format.clone(),
        variations: req.variations,
        params_json: req.params.to_string(),
        cost,
        status: GenStatus::Pending,
        error: None,
        asset_ids: Vec::new(),
        deadline_at_us: now.saturating_add(deadline_us),
        created_at_us: now,
        updated_at_us: now,
    }
}

/// The job message (SPEC §7) as the workers will receive it.
fn job_payload(
    g: &GenerationRecord,
    params: &serde_json::Value,
    kit: Option<&BrandKitRecord>,
) -> Result<Vec<u8>, AppError> {
    let job = JobMessage {
        generation_id: g.id,
        user_id: g.user_id,
        project_id: g.project_id,
        prompt: &g.prompt,
        format: &g.format,
        variations: g.variations,
        params,
        brand_kit: kit.map(|k| JobBrandKit {
            colors: &k.colors,
            fonts: &k.fonts,
            logos: &k.logos,
        }),
        cost: g.cost,
        created_at: crate::views::rfc3339(g.created_at_us),
    };
    serde_json::to_vec(&job).map_err(AppError::internal)
}

/// The 202 answer (a replay answers the first one), or why not.
fn answer_create(
    state: &AppState,
    id: Uuid,
    cost: u64,
    outcome: Outcome,
) -> Result<Created, AppError> {
    let m = &state.metrics;
    match outcome {
        Outcome::Applied { entry } => {
            m.ledger_applied.fetch_add(1, Ordering::Relaxed);
            m.generations_created.fetch_add(1, Ordering::Relaxed);
            state.publisher.wake();
            Ok(Created {
                id,
                cost,
                credit_balance: entry.balance_after,
                replayed: false,
            })
        }
        Outcome::AlreadyApplied { entry } => {
            m.ledger_replayed.fetch_add(1, Ordering::Relaxed);
            let id = entry
                .generation_request_id
                .ok_or_else(|| AppError::internal("replayed entry without its request"))?;
            Ok(Created {
                id,
                cost: entry.amount.unsigned_abs(),
                credit_balance: entry.balance_after,
                replayed: true,
            })
        }
        Outcome::InsufficientCredits { balance } => {
            m.ledger_insufficient.fetch_add(1, Ordering::Relaxed);
            Err(AppError::InsufficientCredits {
                balance,
                required: cost,
            })
        }
        Outcome::IdempotencyKeyReused => Err(AppError::IdempotencyKeyReused),
        Outcome::ExtraConditionFailed { .. } => Err(not_your_project()),
    }
}

/// The request if the caller may see it (owner, or staff); others get 404.
pub fn get_visible(
    reads: &impl Reader,
    caller: &UserRecord,
    id: Uuid,
) -> Result<GenerationRecord, AppError> {
    crate::services::workspace::load_id(reads, caller, id, crate::services::workspace::Access::Read)
}

pub fn assets_of(reads: &impl Reader, g: &GenerationRecord) -> Result<Vec<AssetRecord>, AppError> {
    let mut out = Vec::with_capacity(g.asset_ids.len());
    for id in &g.asset_ids {
        if let Some(a) = reads.get::<AssetRecord>(&keys::id(*id))? {
            out.push(a);
        }
    }
    Ok(out)
}

pub enum Cancelled {
    Now {
        generation: GenerationRecord,
        credit_balance: u64,
    },
    Already(GenerationRecord),
}

pub async fn cancel(
    state: &AppState,
    caller: &UserRecord,
    id: Uuid,
) -> Result<Cancelled, AppError> {
    let g = get_visible(&state.store, caller, id)?;
    crate::services::workspace::authorize(
        caller,
        g.user_id,
        crate::services::workspace::Access::Write,
    )?;
    match apply_event(
        &state.store,
        &state.accounts,
        &state.workspaces,
        id,
        Event::Cancel,
    )
    .await?
    {
        EventOutcome::Applied {
            generation,
            balance_after,
        } => {
            let credit_balance = balance_after.unwrap_or_default();
            Ok(Cancelled::Now {
                generation,
                credit_balance,
            })
        }
        EventOutcome::Ignored(g) => Ok(Cancelled::Already(g)),
        EventOutcome::Refused(g) => Err(AppError::InvalidStatus(g.status.as_str())),
    }
}

/// The caller's requests newest first (staff: `user_id`), filtered by project and status: the
/// charges of the owner's ledger chain (see [`chain`]).
pub fn list(
    reads: &impl Reader,
    caller: &UserRecord,
    page: &Page,
) -> Result<(Vec<GenerationRecord>, Option<String>), AppError> {
    let owner = match (caller.role, page.uuid_filter("user_id")?) {
        (Role::User, Some(u)) if u != caller.id => return Err(AppError::NotFound),
        (_, Some(u)) => u,
        (_, None) => caller.id,
    };
    let project = page.uuid_filter("project_id")?;
    let status = match page.filter("status") {
        Some(s) => Some(
            GenStatus::parse(s).ok_or_else(|| AppError::validation("status", "unknown status"))?,
        ),
        None => None,
    };
    let bounds = chain::PageBounds {
        rows_max: page.limit,
        examined_max: LIST_SCAN_MAX,
    };
    let found = chain::page(reads, owner, page.after.as_deref(), bounds, |e| {
        Ok(charged_request(reads, e)?.filter(|g| {
            project.is_none_or(|p| p == g.project_id) && status.is_none_or(|s| s == g.status)
        }))
    })?;
    Ok((found.rows, found.next))
}

/// The request a ledger entry charged, if it is a charge. A charge whose request is missing or
/// another user's is damage (`verify` reports it), so an error rather than a wrong list.
pub fn charged_request(
    reads: &impl Reader,
    entry: &LedgerEntry,
) -> Result<Option<GenerationRecord>, AppError> {
    let (LedgerKind::GenerationCharge, Some(id)) = (entry.kind, entry.generation_request_id) else {
        return Ok(None);
    };
    match reads.get::<GenerationRecord>(&keys::id(id))? {
        Some(g) if g.user_id == entry.user_id => Ok(Some(g)),
        Some(g) => Err(AppError::internal(format!(
            "ledger entry {} of user {} charges request {id} of user {}",
            entry.id, entry.user_id, g.user_id
        ))),
        None => Err(AppError::internal(format!(
            "ledger entry {} charges request {id}, which is missing",
            entry.id
        ))),
    }
}

/// Fails and refunds every request past its deadline (at most `limit` per run). Returns how many.
pub async fn sweep_timeouts(state: &AppState, limit: usize) -> Result<usize, AppError> {
    let now = now_us();
    let due = state
        .store
        .scan::<LiveGeneration>(&[], None, Direction::Forward, limit)?;
    let mut timed_out = 0;
    for (k, _) in due {
        let Some((deadline, id)) = keys::parse_live_generation(&k) else {
            continue;
        };
        if deadline > now {
            break;
        }
        match apply_event(
            &state.store,
            &state.accounts,
            &state.workspaces,
            id,
            Event::Timeout,
        )
        .await
        {
            Ok(EventOutcome::Applied { .. }) => timed_out += 1,
            Ok(_) => {}
            Err(GenerationError::Unknown(_)) => {
                tracing::warn!(%id, "live index names a missing request")
            }
            // One request that cannot be moved must not hold back every later deadline.
            Err(e) => tracing::warn!(%id, error = %e, "timeout not applied; retried next sweep"),
        }
    }
    if timed_out > 0 {
        state
            .metrics
            .generations_timed_out
            .fetch_add(timed_out as u64, Ordering::Relaxed);
        tracing::info!(timed_out, "generation requests timed out and refunded");
    }
    Ok(timed_out)
}

pub fn outbox_backlog(state: &AppState) -> u64 {
    state
        .store
        .count(<OutboxRecord as Record>::TABLE)
        .unwrap_or(0)
}

pub fn table_len(state: &AppState, t: Table) -> u64 {
    state.store.count(t).unwrap_or(0)
}
