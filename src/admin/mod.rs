//! The back office (SPEC §11): server-rendered pages under `/admin/` for agents and admins.
//!
//! The same store, services and rules as the API: a page handler parses the form, calls one
//! service, and renders. Errors render as pages, never JSON. Templates are `maud` macros
//! (checked at compile time, every value escaped); CSS and the small kanban script are compiled
//! into the binary. None of these routes is in the OpenAPI.

mod dashboard;
mod entities;
mod form;
mod helpdesk;
mod layout;
mod listing;
mod session;
mod settings;
mod users;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};

use crate::error::AppError;

pub use session::{Staff, SESSION_COOKIE};

/// Largest form body the back office reads (a ticket reply of 10,000 characters, encoded).
const FORM_BYTES_MAX: usize = 128 * 1024;

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// A refusal or failure of the service layer, shown with its status and message.
    App(AppError),
    /// No live session: to the login page.
    SignIn,
    /// A state-changing form without the session's CSRF token: nothing was changed.
    Csrf,
}

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        PageError::App(e)
    }
}

impl From<storage::StorageError> for PageError {
    fn from(e: storage::StorageError) -> Self {
        PageError::App(e.into())
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::App(e) => write!(f, "{e}"),
            PageError::SignIn => f.write_str("sign in first"),
            PageError::Csrf => f.write_str("the form's CSRF token is missing or wrong"),
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::App(e) => e.envelope().status,
            PageError::SignIn => StatusCode::SEE_OTHER,
            PageError::Csrf => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            PageError::App(e) => layout::error_page(e),
            PageError::SignIn => HttpResponse::SeeOther()
                .insert_header(("Location", "/admin/login"))
                .finish(),
            PageError::Csrf => layout::message_page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form's security token is missing or wrong, so nothing was changed. \
                 Go back, reload the page and try again.",
            ),
        }
    }
}

pub type PageResult = Result<HttpResponse, PageError>;

/// A 303 to `location`: every successful form post ends with one, so a reload does not post
/// the form again.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .finish()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .app_data(web::PayloadConfig::new(FORM_BYTES_MAX))
            .route("/static/admin.css", web::get().to(layout::css))
            .route("/static/admin.js", web::get().to(layout::js))
            .route("/login", web::get().to(session::login_page))
            .route("/login", web::post().to(session::login))
            .route("/logout", web::post().to(session::logout))
            .route("", web::get().to(dashboard::show))
            .route("/", web::get().to(dashboard::show))
            .route("/users", web::get().to(users::list))
            .route("/users/{id}", web::get().to(users::show))
            .route("/users/{id}", web::post().to(users::update))
            .route("/users/{id}/credits", web::post().to(users::adjust_credits))
            .route("/workbenches", web::get().to(entities::workbenches))
            .route("/workbenches/{id}", web::get().to(entities::workbench))
            .route("/projects", web::get().to(entities::projects))
            .route("/projects/kanban", web::get().to(entities::projects_kanban))
            .route("/projects/{id}", web::get().to(entities::project))
            .route("/brand-kits", web::get().to(entities::brand_kits))
            .route("/brand-kits/{id}", web::get().to(entities::brand_kit))
            .route("/generations", web::get().to(entities::generations))
            .route("/generations/{id}", web::get().to(entities::generation))
            .route(
                "/generations/{id}/cancel",
                web::post().to(entities::cancel_generation),
            )
            .route("/credits", web::get().to(entities::ledger))
            .route("/invoices", web::get().to(entities::invoices))
            .route("/invoices/{id}", web::get().to(entities::invoice))
            .route("/tickets", web::get().to(helpdesk::list))
            .route("/tickets/kanban", web::get().to(helpdesk::kanban))
            .route("/tickets/{id}", web::get().to(helpdesk::show))
            .route("/tickets/{id}", web::post().to(helpdesk::update))
            .route(
                "/tickets/{id}/messages",
                web::post().to(helpdesk::post_message),
            )
            .route("/settings", web::get().to(settings::show))
            .route("/settings", web::post().to(settings::update))
            .default_service(web::to(not_found)),
    );
}

async fn not_found() -> HttpResponse {
    layout::error_page(&AppError::NotFound)
}
