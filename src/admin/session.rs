//! Back-office sessions: the same accounts and failed-login limits as the API, a server-side
//! session (the token's hash in the store, so a password reset or logout ends it), carried in
//! an `HttpOnly`, `SameSite=Strict` cookie; and the CSRF token every state-changing form
//! carries.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use maud::html;
use sha2::{Digest, Sha256};
use storage::records::{Role, UserRecord};
use storage::Snapshot;
use subtle::ConstantTimeEq;

use super::form::Form;
use super::{layout, see_other, PageError, PageResult};
use crate::auth::{hash_token, new_token, session_user};
use crate::error::AppError;
use crate::services::{login as sessions, users};
use crate::state::AppState;

/// The session cookie (scoped to `/admin`).
pub const SESSION_COOKIE: &str = "cf_admin";
/// The login form's CSRF value, before there is a session (double-submit).
const LOGIN_CSRF_COOKIE: &str = "cf_admin_login";
/// How long a login form stays usable.
const LOGIN_FORM_TTL_S: i64 = 3600;

/// A signed-in agent or admin, with the snapshot the page reads from.
pub struct Staff {
    pub user: UserRecord,
    token_hash: [u8; 32],
    /// The value every form of this session carries as `csrf_token`.
    pub csrf: String,
    pub reads: Rc<Snapshot>,
}

impl std::fmt::Debug for Staff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staff")
            .field("user", &self.user.id)
            .field("role", &self.user.role)
            .finish_non_exhaustive()
    }
}

impl Staff {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    pub fn require_admin(&self) -> Result<(), PageError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(PageError::App(AppError::Forbidden))
        }
    }

    /// Parses a posted form and checks its CSRF token; a form without the right one changes
    /// nothing.
    pub fn form(&self, body: &Bytes) -> Result<Form, PageError> {
        let form = Form::parse(body).map_err(|_| PageError::Csrf)?;
        let sent = form.get("csrf_token").unwrap_or_default();
        if bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(form)
        } else {
            Err(PageError::Csrf)
        }
    }
}

/// The CSRF token of a session: derived from the session token, which only the cookie holds, so
/// another site can neither read nor compute it.
fn csrf_of(session_token: &str) -> String {
    let digest = Sha256::digest(format!("creativeflow admin csrf\0{session_token}"));
    hex::encode(&digest[..20])
}

impl FromRequest for Staff {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Staff, PageError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::internal("no app state"))?;
            let token = token
                .filter(|t| !t.is_empty() && t.len() <= 512)
                .ok_or(PageError::SignIn)?;
            let token_hash = hash_token(&token);
            let reads = state.store.read()?;
            let user = session_user(&reads, &token_hash)?.ok_or(PageError::SignIn)?;
            if user.role == Role::User {
                return Err(PageError::App(AppError::Forbidden));
            }
            Ok(Staff {
                user,
                token_hash,
                csrf: csrf_of(&token),
                reads: Rc::new(reads),
            })
        })
    }
}

fn secure(req: &HttpRequest) -> bool {
    let always = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.config.file.http.secure_cookies);
    always || req.connection_info().scheme() == "https"
}

fn cookie<'a>(req: &HttpRequest, name: &'a str, value: String, path: &'a str) -> Cookie<'a> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(req))
        .finish()
}

/// `GET /admin/login`.
pub async fn login_page(req: HttpRequest) -> PageResult {
    let (value, _) = new_token()?;
    let mut c = cookie(&req, LOGIN_CSRF_COOKIE, value.clone(), "/admin/login");
    c.set_max_age(CookieDuration::seconds(LOGIN_FORM_TTL_S));
    Ok(login_form(StatusCode::OK, &value, None, Some(c)))
}

fn login_form(
    status: StatusCode,
    csrf: &str,
    problem: Option<&str>,
    set: Option<Cookie<'_>>,
) -> HttpResponse {
    let body = html! {
        main.login {
            h1 { "CreativeFlow AI" }
            p { "Back office sign-in for agents and admins." }
            @if let Some(p) = problem { p.problem role="alert" { (p) } }
            form method="post" action="/admin/login" {
                input type="hidden" name="csrf_token" value=(csrf);
                label { "Email" input type="email" name="email" required autocomplete="username"; }
                label { "Password" input type="password" name="password" required autocomplete="current-password"; }
                button type="submit" { "Sign in" }
            }
        }
    };
    let mut resp = HttpResponse::build(status);
    layout::page_headers(&mut resp);
    if let Some(c) = set {
        resp.cookie(c);
    }
    resp.body(layout::document("Sign in", body).into_string())
}

/// `POST /admin/login`: email and password, checked like the API login (the same limits).
pub async fn login(req: HttpRequest, state: web::Data<AppState>, body: Bytes) -> PageResult {
    let form = Form::parse(&body).map_err(|_| PageError::Csrf)?;
    let expected = req
        .cookie(LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    let sent = form.get("csrf_token").unwrap_or_default();
    if expected.is_empty() || !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(PageError::Csrf);
    }
    let ip = crate::routes::auth::client_ip(&req);
    let email = form.get("email").unwrap_or_default();
    let password = form.get("password").unwrap_or_default();
    let user = match sessions::check_credentials(&state, &ip, email, password).await {
        Ok(user) => user,
        Err(AppError::InvalidCredentials) => {
            return Ok(login_form(
                StatusCode::UNAUTHORIZED,
                &expected,
                Some("Wrong email or password."),
                None,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if user.role == Role::User {
        return Err(PageError::App(AppError::Forbidden));
    }
    let (token, expires_at_us) = sessions::open_session(&state, &user).await?;
    let mut session = cookie(&req, SESSION_COOKIE, token, "/admin");
    let ttl_s = (expires_at_us - storage::now_us()) / 1_000_000;
    session.set_max_age(CookieDuration::seconds(ttl_s.max(1)));
    let mut spent = cookie(&req, LOGIN_CSRF_COOKIE, String::new(), "/admin/login");
    spent.make_removal();
    tracing::info!(user = %user.id, "back-office sign-in");
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", "/admin/"))
        .cookie(session)
        .cookie(spent)
        .finish())
}

/// `POST /admin/logout`: ends the session in the store, not only in the browser.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    staff: Staff,
    body: Bytes,
) -> PageResult {
    staff.form(&body)?;
    users::revoke_token(&state.store, staff.user.id, &staff.token_hash).await?;
    let mut gone = cookie(&req, SESSION_COOKIE, String::new(), "/admin");
    gone.make_removal();
    let mut resp = see_other("/admin/login");
    resp.add_cookie(&gone)
        .map_err(|e| AppError::internal(format!("cookie: {e}")))?;
    Ok(resp)
}
