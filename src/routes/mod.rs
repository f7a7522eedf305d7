//! HTTP routes. Handlers are thin: parse into domain types, call one service, map the error.

pub mod auth;
pub mod billing;
pub mod credits;
pub mod features;
pub mod generation;
pub mod health;
pub mod profile;
pub mod templates;
pub mod ticket_events;
pub mod tickets;
pub mod users;
pub mod workspace;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, HttpResponseBuilder};

/// The answer of a route that honours `Idempotency-Key`: a replay answers exactly as the first
/// time (same status, same body) and says so with `Idempotent-Replayed: true`.
pub fn answer(status: StatusCode, replayed: bool) -> HttpResponseBuilder {
    let mut resp = HttpResponse::build(status);
    if replayed {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    resp
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // actix-web tries resources in registration order (a regex per dynamic path), so the hot
    // routes come first.
    cfg.service(generation::create)
        .service(generation::status)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(auth::signup)
        .service(auth::login)
        .service(auth::logout)
        .service(auth::password_reset_request)
        .service(auth::password_reset_confirm)
        .service(users::me)
        .service(users::admin_list_users)
        .service(users::admin_update_user)
        .service(credits::my_credits)
        .service(credits::admin_adjust_credits)
        .service(workspace::list_workbenches)
        .service(workspace::create_workbench)
        .service(workspace::get_workbench)
        .service(workspace::update_workbench)
        .service(workspace::delete_workbench)
        .service(workspace::list_projects)
        .service(workspace::create_project)
        .service(workspace::get_project)
        .service(workspace::update_project)
        .service(workspace::delete_project)
        .service(workspace::list_brand_kits)
        .service(workspace::create_brand_kit)
        .service(workspace::get_brand_kit)
        .service(workspace::update_brand_kit)
        .service(workspace::delete_brand_kit)
        .service(workspace::list_assets)
        .service(workspace::create_asset)
        .service(workspace::delete_asset)
        .service(users::admin_delete_user)
        .service(generation::cancel)
        .service(generation::list)
        .service(billing::stripe_webhook)
        .service(billing::paypal_webhook)
        .service(billing::invoices)
        .service(billing::subscription)
        .service(billing::owed)
        .service(features::get_features)
        .service(features::put_features)
        .service(features::feature_history)
        .service(templates::list_templates)
        .service(templates::create_template)
        .service(templates::get_template)
        .service(templates::update_template)
        .service(templates::delete_template)
        .service(profile::next_question)
        .service(profile::answer)
        .service(tickets::create_ticket)
        .service(tickets::list_tickets)
        .service(tickets::get_ticket)
        .service(tickets::update_ticket)
        .service(tickets::list_messages)
        .service(tickets::post_message)
        .service(ticket_events::ticket_events);
}
