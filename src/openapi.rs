//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{auth, credits, health, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "CreativeFlow Core API", description = "Business backend of CreativeFlow AI. Every error is {\"error\": {\"code\", \"message\", \"details\"}}."),
    paths(
        health::healthz, health::readyz, health::metrics, health::openapi,
        auth::signup, auth::login, auth::logout, auth::password_reset_request, auth::password_reset_confirm,
        users::me, users::admin_list_users, users::admin_update_user,
        credits::my_credits, credits::admin_adjust_credits,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
