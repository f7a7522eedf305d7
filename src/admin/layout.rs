//! The page frame (menu, header), the list and form building blocks, and the embedded CSS/JS.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::session::Staff;
use crate::error::AppError;

const CSS: &str = include_str!("admin.css");
const JS: &str = include_str!("admin.js");

/// The root menu "CreativeFlow AI", in the order staff see it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Menu {
    Dashboard,
    Workbenches,
    Projects,
    BrandKits,
    Generations,
    Credits,
    Users,
    Invoices,
    Helpdesk,
    Settings,
}

impl Menu {
    const ALL: [Menu; 10] = [
        Menu::Dashboard,
        Menu::Workbenches,
        Menu::Projects,
        Menu::BrandKits,
        Menu::Generations,
        Menu::Credits,
        Menu::Users,
        Menu::Invoices,
        Menu::Helpdesk,
        Menu::Settings,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Menu::Dashboard => "Dashboard",
            Menu::Workbenches => "Workbenches",
            Menu::Projects => "Projects",
            Menu::BrandKits => "Brand Kits",
            Menu::Generations => "Generation Requests",
            Menu::Credits => "Credits",
            Menu::Users => "Users",
            Menu::Invoices => "Invoices",
            Menu::Helpdesk => "Helpdesk",
            Menu::Settings => "Settings",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Menu::Dashboard => "/admin/",
            Menu::Workbenches => "/admin/workbenches",
            Menu::Projects => "/admin/projects",
            Menu::BrandKits => "/admin/brand-kits",
            Menu::Generations => "/admin/generations",
            Menu::Credits => "/admin/credits",
            Menu::Users => "/admin/users",
            Menu::Invoices => "/admin/invoices",
            Menu::Helpdesk => "/admin/tickets",
            Menu::Settings => "/admin/settings",
        }
    }
}

/// Headers of every back-office page: never cached, never framed, scripts only from us.
pub fn page_headers(resp: &mut HttpResponseBuilder) {
    resp.content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "same-origin"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'self'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
}

/// A whole HTML document around `body`.
pub fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · CreativeFlow AI" }
                link rel="stylesheet" href="/admin/static/admin.css";
                script src="/admin/static/admin.js" defer {}
            }
            body { (body) }
        }
    }
}

/// A signed-in page: the menu, the title, `body`.
pub fn page(staff: &Staff, active: Menu, title: &str, body: Markup) -> HttpResponse {
    let frame = html! {
        header.top {
            a.brand href="/admin/" { "CreativeFlow AI" }
            nav aria-label="Main menu" {
                ul {
                    @for m in Menu::ALL {
                        @if m != Menu::Settings || staff.is_admin() {
                            li { a href=(m.href()) aria-current=[(m == active).then_some("page")] { (m.label()) } }
                        }
                    }
                }
            }
            form.logout method="post" action="/admin/logout" {
                (csrf(staff))
                span { (staff.user.email) " (" (staff.user.role.as_str()) ")" }
                button type="submit" { "Log out" }
            }
        }
        main { h1 { (title) } (body) }
    };
    let mut resp = HttpResponse::Ok();
    page_headers(&mut resp);
    resp.body(document(title, frame).into_string())
}

/// The hidden CSRF input of every state-changing form.
pub fn csrf(staff: &Staff) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(staff.csrf); }
}

pub fn error_page(e: &AppError) -> HttpResponse {
    e.html_response()
}

pub fn message_page(status: StatusCode, title: &str, text: &str) -> HttpResponse {
    let mut resp = HttpResponse::build(status);
    page_headers(&mut resp);
    let body = html! { main { h1 { (title) } p { (text) } p { a href="/admin/" { "Back to the back office" } } } };
    resp.body(document(title, body).into_string())
}

/// A time as `YYYY-MM-DD HH:MM` UTC.
pub fn when(us: i64) -> String {
    let s = crate::views::rfc3339(us);
    s.get(..16).map_or(s.clone(), |d| d.replace('T', " "))
}

/// The rows of a form view: label, value.
pub fn fields(rows: &[(&str, Markup)]) -> Markup {
    html! {
        dl.fields {
            @for (label, value) in rows { dt { (label) } dd { (value) } }
        }
    }
}

/// A link to a record's form view.
pub fn link(path: &str, id: uuid::Uuid, text: &str) -> Markup {
    html! { a href={ (path) "/" (id) } { (text) } }
}

/// A user's email, or "(deleted user)" once the account is gone (tickets, ledger entries and
/// invoices outlive it).
pub fn user_email(reads: &impl storage::Reader, id: uuid::Uuid) -> Result<String, AppError> {
    Ok(reads
        .get::<storage::records::UserRecord>(&storage::keys::user(id))?
        .map_or_else(|| "(deleted user)".to_string(), |u| u.email))
}

/// A link to a user's form, named by their email.
pub fn user_link(reads: &impl storage::Reader, id: uuid::Uuid) -> Result<Markup, AppError> {
    Ok(link("/admin/users", id, &user_email(reads, id)?))
}

/// A short id for tables (the full one is in the link).
pub fn short(id: uuid::Uuid) -> String {
    id.simple().to_string().chars().skip(24).collect()
}

/// A table with a header row.
pub fn table(headers: &[&str], rows: &[Markup]) -> Markup {
    html! {
        table {
            thead { tr { @for h in headers { th scope="col" { (h) } } } }
            tbody {
                @for r in rows { (r) }
                @if rows.is_empty() { tr { td colspan=(headers.len()) { "Nothing here." } } }
            }
        }
    }
}

pub async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(CSS)
}

pub async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(JS)
}

/// Trusted markup we built ourselves (the SVG charts).
pub fn trusted(svg: String) -> PreEscaped<String> {
    PreEscaped(svg)
}
