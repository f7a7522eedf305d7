//! Passwords (Argon2id), bearer tokens (random, stored only as SHA-256), and the [`Caller`]
//! extractor that turns a bearer token into the user behind it.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use sha2::{Digest, Sha256};
use storage::keys;
use storage::records::{Role, TokenRecord, UserRecord};
use storage::{Reader, Snapshot};

use crate::error::AppError;
use crate::state::AppState;

/// A new random token (returned to the client once) and its hash (the only thing stored).
pub fn new_token() -> Result<(String, [u8; 32]), AppError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| AppError::internal(format!("the system random generator failed: {e}")))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    Ok((token, hash))
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The authenticated caller of an API route, and the snapshot it was read from: the handler
/// reads what it shows from the same point in time (one read transaction per request).
#[derive(Clone)]
pub struct Caller {
    pub user: UserRecord,
    pub token_hash: [u8; 32],
    pub reads: Rc<Snapshot>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("user", &self.user.id)
            .field("role", &self.user.role)
            .finish_non_exhaustive()
    }
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), AppError> {
        match self.user.role {
            Role::Admin => Ok(()),
            Role::Agent | Role::User => Err(AppError::Forbidden),
        }
    }

    /// Agents and admins (staff) read everything.
    pub fn require_staff(&self) -> Result<(), AppError> {
        match self.user.role {
            Role::Admin | Role::Agent => Ok(()),
            Role::User => Err(AppError::Forbidden),
        }
    }
}

/// The user a session token (by its hash) stands for, while the token is unexpired and was
/// issued since the user's last password change; `None` otherwise.
pub fn session_user(
    reads: &impl Reader,
    token_hash: &[u8; 32],
) -> Result<Option<UserRecord>, AppError> {
    let Some(record) = reads.get::<TokenRecord>(&keys::token(token_hash))? else {
        return Ok(None);
    };
    if record.expires_at_us <= storage::now_us() {
        return Ok(None);
    }
    let user = reads.get::<UserRecord>(&keys::user(record.user_id))?;
    // Issued before the last password change: revoked, however many such tokens exist.
    Ok(user.filter(|u| u.credentials_version == record.credentials_version))
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 512)
        .then(|| token.to_string())
}

impl FromRequest for Caller {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::internal("no app state"))?;
            let token = token.ok_or(AppError::Unauthenticated)?;
            let token_hash = hash_token(&token);
            let reads = state.store.read()?;
            let user = session_user(&reads, &token_hash)?.ok_or(AppError::Unauthenticated)?;
            Ok(Caller {
                user,
                token_hash,
                reads: Rc::new(reads),
            })
        })
    }
}
