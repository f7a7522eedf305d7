//! The one error type of the HTTP layer, the one exhaustive `match` that gives each error its
//! status and stable snake_case code (SPEC §3 envelope), and every conversion from the layers
//! below. The same [`Envelope`] is rendered as JSON, as a JSON-RPC error, or as an HTML page.
//!
//! One meaning per situation:
//! - a compare-and-set lost after its bounded retries (someone changed the record meanwhile;
//!   the same request may succeed when sent again) is 409 `concurrent_update`, whichever
//!   record it was (account, request, workspace, user);
//! - capacity (the writer's queue is full, an actor's mailbox is closed, the hashing pool is
//!   busy) is 503 `overloaded`, and shutting down is 503 `unavailable`; every 503 carries
//!   `Retry-After`.

use std::fmt::Write as _;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use actors::generation::GenerationError;
use actors::workspace::WorkspaceError;
use actors::AccountError;
use storage::StorageError;

/// A cause kept for the log (with its whole `source()` chain), never shown to a client.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_OVERLOADED_S: u64 = 1;
const RETRY_AFTER_UNAVAILABLE_S: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    Validation { field: String, message: String },
    #[error("authentication is required")]
    Unauthenticated,
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("this role may not do that")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("the method is not allowed on this route")]
    MethodNotAllowed { allow: String },
    #[error("an account with this email exists already")]
    EmailTaken,
    #[error("this idempotency key was used for a different request")]
    IdempotencyKeyReused,
    #[error("brand kits need the pro, team or enterprise tier")]
    TierRequired,
    #[error("the brand kit is used by {workbenches} workbench(es) and {projects} project(s); clear those first")]
    BrandKitInUse { workbenches: usize, projects: usize },
    #[error("at most {limit} {what}")]
    LimitReached { what: &'static str, limit: usize },
    #[error("the workspace holds at most {limit} {what} on this tier")]
    QuotaExceeded { what: &'static str, limit: u64 },
    #[error("an admin cannot change their own role")]
    CannotChangeOwnRole,
    #[error("an admin cannot delete their own account")]
    CannotDeleteSelf,
    #[error("the record was changed by someone else meanwhile; retry")]
    ConcurrentUpdate,
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("the webhook signature is invalid: {0}")]
    InvalidSignature(String),
    #[error("this feature is disabled")]
    FeatureDisabled { status_404: bool },
    #[error("not allowed while it is {0}")]
    InvalidStatus(&'static str),
    #[error("the balance of {balance} credits does not cover {required}")]
    InsufficientCredits { balance: u64, required: u64 },
    #[error("the request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("the content type must be application/json")]
    UnsupportedMediaType,
    #[error("the request body did not arrive within {timeout_s} s")]
    RequestTimeout { timeout_s: u64 },
    #[error("too many attempts; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("too many connections from this address")]
    TooManyConnections,
    #[error("the server is overloaded; retry shortly")]
    Overloaded,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Cause),
}

/// What a client is told: status, stable code, message, details. The request id is added by
/// the renderer from the request's scope.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl AppError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// An internal failure; the cause goes to the log with its source chain.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        AppError::Internal(cause.into())
    }

    fn status_code_and_details(&self) -> (StatusCode, &'static str, Value) {
        use AppError::*;
        match self {
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json", json!({})),
            Validation { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                json!({ "field": field }),
            ),
            Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", json!({})),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", json!({})),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden", json!({})),
            TierRequired => (
                StatusCode::FORBIDDEN,
                "tier_required",
                json!({ "tiers": ["pro", "team", "enterprise"] }),
            ),
            BrandKitInUse {
                workbenches,
                projects,
            } => (
                StatusCode::CONFLICT,
                "brand_kit_in_use",
                json!({ "workbenches": workbenches, "projects": projects }),
            ),
            LimitReached { what, limit } => (
                StatusCode::CONFLICT,
                "limit_reached",
                json!({ "what": what, "limit": limit }),
            ),
            QuotaExceeded { what, limit } => (
                StatusCode::CONFLICT,
                "quota_exceeded",
                json!({ "what": what, "limit": limit }),
            ),
            NotFound => (StatusCode::NOT_FOUND, "not_found", json!({})),
            MethodNotAllowed { allow } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                json!({ "allow": allow }),
            ),
            EmailTaken => (
                StatusCode::CONFLICT,
                "email_taken",
                json!({ "field": "email" }),
            ),
            IdempotencyKeyReused => (StatusCode::CONFLICT, "idempotency_key_reused", json!({})),
            CannotChangeOwnRole => (StatusCode::CONFLICT, "cannot_change_own_role", json!({})),
            CannotDeleteSelf => (StatusCode::CONFLICT, "cannot_delete_self", json!({})),
            ConcurrentUpdate => (StatusCode::CONFLICT, "concurrent_update", json!({})),
            NotConfigured(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "webhook_not_configured",
                json!({}),
            ),
            InvalidSignature(_) => (StatusCode::BAD_REQUEST, "invalid_signature", json!({})),
            FeatureDisabled { status_404: true } => {
                (StatusCode::NOT_FOUND, "feature_disabled", json!({}))
            }
            FeatureDisabled { status_404: false } => {
                (StatusCode::FORBIDDEN, "feature_disabled", json!({}))
            }
            InvalidStatus(status) => (
                StatusCode::CONFLICT,
                "invalid_status",
                json!({ "status": status }),
            ),
            InsufficientCredits { balance, required } => (
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_credits",
                json!({ "balance": balance, "required": required }),
            ),
            PayloadTooLarge { limit_bytes } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                json!({ "limit_bytes": limit_bytes }),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                json!({ "expected": "application/json" }),
            ),
            RequestTimeout { timeout_s } => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                json!({ "timeout_seconds": timeout_s }),
            ),
            RateLimited { retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                json!({ "retry_after_seconds": retry_after_s }),
            ),
            TooManyConnections => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                json!({ "retry_after_seconds": 1 }),
            ),
            Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", json!({})),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", json!({})),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                json!({}),
            ),
        }
    }

    /// What the client is told about this error.
    pub fn envelope(&self) -> Envelope {
        let (status, code, details) = self.status_code_and_details();
        let message = match self {
            // Never leak internals to clients; they are logged instead.
            AppError::Internal(_) => "internal error".into(),
            other => other.to_string(),
        };
        Envelope {
            status,
            code,
            message,
            details,
        }
    }

    /// Seconds for `Retry-After`: every 429 and 503 says when to come back.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            AppError::RateLimited { retry_after_s } => Some(*retry_after_s),
            AppError::TooManyConnections => Some(1),
            AppError::Overloaded => Some(RETRY_AFTER_OVERLOADED_S),
            AppError::Unavailable(_) | AppError::NotConfigured(_) => {
                Some(RETRY_AFTER_UNAVAILABLE_S)
            }
            _ => None,
        }
    }

    /// Logs server-side failures with the whole cause chain.
    fn log(&self, code: &str) {
        let mut chain = String::new();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let _ = write!(chain, ": {c}");
            cause = c.source();
        }
        tracing::error!(code, error = %self, causes = %chain, "request failed");
    }

    /// The response headers this error carries besides the content type.
    fn headers(&self, resp: &mut actix_web::HttpResponseBuilder) {
        if let Some(s) = self.retry_after_s() {
            resp.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        match self {
            AppError::Unauthenticated => {
                resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            AppError::MethodNotAllowed { allow } => {
                resp.insert_header((header::ALLOW, allow.as_str()));
            }
            // The rest of that body may never come, or the connection is one too many: it is
            // not reused.
            AppError::RequestTimeout { .. } | AppError::TooManyConnections => {
                resp.force_close();
            }
            _ => {}
        }
    }

    /// The error as an HTML page (the back office), same status and headers as the JSON form.
    pub fn html_response(&self) -> HttpResponse {
        let e = self.envelope();
        if e.status.is_server_error() {
            self.log(e.code);
        }
        let mut resp = HttpResponse::build(e.status);
        self.headers(&mut resp);
        let request_id = crate::request_id::current().unwrap_or_default();
        resp.content_type("text/html; charset=utf-8").body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status}</title>\
             <link rel=\"stylesheet\" href=\"/admin/static/admin.css\"></head>\
             <body class=\"error\"><main><h1>{status}</h1><p>{message}</p>\
             <p><a href=\"/admin/\">Back to the back office</a></p>\
             <p><small>{code} · request {rid}</small></p></main></body></html>",
            status = e.status,
            message = html_escape(&e.message),
            code = e.code,
            rid = html_escape(&request_id),
        ))
    }
}

impl Envelope {
    /// The SPEC §3 body, with the request id when the request has one.
    pub fn to_json(&self) -> Value {
        let mut error =
            json!({ "code": self.code, "message": self.message, "details": self.details });
        if let Some(rid) = crate::request_id::current() {
            error["request_id"] = Value::String(rid);
        }
        json!({ "error": error })
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.status_code_and_details().0
    }

    fn error_response(&self) -> HttpResponse {
        let e = self.envelope();
        if e.status.is_server_error() {
            self.log(e.code);
        }
        let mut resp = HttpResponse::build(e.status);
        self.headers(&mut resp);
        resp.json(e.to_json())
    }
}

// --- Conversions from the layers below: the only ones there are ---------------------------------

impl From<StorageError> for AppError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Overloaded => AppError::Overloaded,
            StorageError::Closed => AppError::Unavailable("the server is shutting down".into()),
            StorageError::Unavailable(_) => {
                tracing::error!(error = %e, "storage unavailable");
                AppError::Unavailable("the database is unavailable; try again shortly".into())
            }
            other => AppError::internal(other),
        }
    }
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Storage(s) => s.into(),
            AccountError::NoSuchAccount(_) => AppError::NotFound,
            AccountError::AmountOutOfRange => {
                AppError::validation("amount", "the amount is out of range")
            }
            AccountError::Contended => AppError::ConcurrentUpdate,
            AccountError::Unavailable => AppError::Overloaded,
            corrupt @ AccountError::Corrupt(..) => AppError::internal(corrupt),
        }
    }
}

impl From<WorkspaceError> for AppError {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::NotFound => AppError::NotFound,
            WorkspaceError::TierRequired => AppError::TierRequired,
            WorkspaceError::BrandKitInUse {
                workbenches,
                projects,
            } => AppError::BrandKitInUse {
                workbenches,
                projects,
            },
            WorkspaceError::LimitReached { what, limit } => AppError::LimitReached { what, limit },
            WorkspaceError::QuotaExceeded { what, limit } => {
                AppError::QuotaExceeded { what, limit }
            }
            WorkspaceError::BadReference { field, what } => {
                AppError::validation(field, format!("does not name one of the owner's {what}"))
            }
            WorkspaceError::InvalidField { field, reason } => AppError::validation(field, reason),
            WorkspaceError::InvalidStatus(status) => AppError::InvalidStatus(status),
            WorkspaceError::Conflict => AppError::ConcurrentUpdate,
            WorkspaceError::Unavailable => AppError::Overloaded,
            WorkspaceError::Storage(s) => s.into(),
        }
    }
}

impl From<GenerationError> for AppError {
    fn from(e: GenerationError) -> Self {
        match e {
            GenerationError::Unknown(_) => AppError::NotFound,
            GenerationError::Contended => AppError::ConcurrentUpdate,
            GenerationError::Account(a) => a.into(),
            GenerationError::Workspace(w) => w.into(),
            GenerationError::Storage(s) => s.into(),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        AppError::Overloaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_compare_and_set_means_the_same_everywhere() {
        let from_account = AppError::from(AccountError::Contended).envelope();
        let from_workspace = AppError::from(WorkspaceError::Conflict).envelope();
        let from_generation = AppError::from(GenerationError::Contended).envelope();
        for e in [from_account, from_workspace, from_generation] {
            assert_eq!(
                (e.status, e.code),
                (StatusCode::CONFLICT, "concurrent_update")
            );
        }
    }

    #[test]
    fn every_503_says_when_to_retry() {
        for e in [
            AppError::Overloaded,
            AppError::Unavailable("x".into()),
            AppError::NotConfigured("x"),
            AppError::from(StorageError::Overloaded),
            AppError::from(AccountError::Unavailable),
        ] {
            assert_eq!(e.envelope().status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(e.retry_after_s().is_some(), "{e:?}");
        }
    }

    #[test]
    fn an_internal_error_keeps_its_cause_for_the_log_and_hides_it_from_the_client() {
        let e = AppError::from(StorageError::Engine("disk on fire".into()));
        assert_eq!(e.envelope().message, "internal error");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("disk on fire")));
    }

    #[test]
    fn the_html_page_escapes_the_message() {
        let resp = AppError::validation("name", "<script>").html_response();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
