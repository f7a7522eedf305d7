//! HTTP routes. Handlers are thin: parse into domain types, call one service, map the error.

pub mod auth;
pub mod credits;
pub mod health;
pub mod users;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(health::openapi)
        .service(auth::signup)
        .service(auth::login)
        .service(auth::logout)
        .service(auth::password_reset_request)
        .service(auth::password_reset_confirm)
        .service(users::me)
        .service(users::admin_list_users)
        .service(users::admin_update_user)
        .service(credits::my_credits)
        .service(credits::admin_adjust_credits);
}
