//! The one error type of the HTTP layer and the one exhaustive `match` that gives each error its
//! status and stable snake_case code (SPEC §3 envelope).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use actors::AccountError;
use storage::StorageError;

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
    MethodNotAllowed,
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
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("the webhook signature is invalid: {0}")]
    InvalidSignature(String),
    #[error("this feature is disabled")]
    FeatureDisabled { status_404: bool },
    #[error("not allowed while the request is {0}")]
    InvalidStatus(&'static str),
    #[error("the record was changed by someone else meanwhile; retry")]
    Conflict(&'static str),
    #[error("the balance of {balance} credits does not cover {required}")]
    InsufficientCredits { balance: u64, required: u64 },
    #[error("the request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("the content type must be application/json")]
    UnsupportedMediaType,
    #[error("too many attempts; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("the server is overloaded; retry shortly")]
    Overloaded,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: field.to_string(),
            message: message.into(),
        }
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
            NotFound => (StatusCode::NOT_FOUND, "not_found", json!({})),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                json!({}),
            ),
            EmailTaken => (
                StatusCode::CONFLICT,
                "email_taken",
                json!({ "field": "email" }),
            ),
            IdempotencyKeyReused => (StatusCode::CONFLICT, "idempotency_key_reused", json!({})),
            Conflict(code) => (StatusCode::CONFLICT, code, json!({})),
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
            RateLimited { retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                json!({ "retry_after_seconds": retry_after_s }),
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

    fn public_message(&self) -> String {
        match self {
            // Never leak internals to clients; they are logged instead.
            AppError::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.status_code_and_details().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, details) = self.status_code_and_details();
        if status.is_server_error() {
            tracing::error!(error = ?self, code, "request failed");
        }
        let mut resp = HttpResponse::build(status);
        if let AppError::RateLimited { retry_after_s } = self {
            resp.insert_header((header::RETRY_AFTER, retry_after_s.to_string()));
        }
        if matches!(self, AppError::Unauthenticated) {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.json(json!({
            "error": { "code": code, "message": self.public_message(), "details": details }
        }))
    }
}

impl From<StorageError> for AppError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Overloaded => AppError::Overloaded,
            StorageError::Closed => AppError::Unavailable("the server is shutting down".into()),
            other => AppError::Internal(other.to_string()),
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
            AccountError::Contended | AccountError::Unavailable => AppError::Overloaded,
            AccountError::Corrupt(..) => AppError::Internal(e.to_string()),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        AppError::Overloaded
    }
}
