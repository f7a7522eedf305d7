//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{auth, billing, credits, generation, health, users, workspace};

#[derive(OpenApi)]
#[openapi(
    info(title = "CreativeFlow Core API", description = "Business backend of CreativeFlow AI. Every error is {\"error\": {\"code\", \"message\", \"details\"}}."),
    paths(
        health::healthz, health::readyz, health::metrics, health::openapi,
        auth::signup, auth::login, auth::logout, auth::password_reset_request, auth::password_reset_confirm,
        users::me, users::admin_list_users, users::admin_update_user,
        users::admin_delete_user,
        credits::my_credits, credits::admin_adjust_credits,
        workspace::list_workbenches, workspace::create_workbench, workspace::get_workbench, workspace::update_workbench, workspace::delete_workbench,
        workspace::list_projects, workspace::create_project, workspace::get_project, workspace::update_project, workspace::delete_project,
        workspace::list_brand_kits, workspace::create_brand_kit, workspace::get_brand_kit, workspace::update_brand_kit, workspace::delete_brand_kit,
        workspace::list_assets, workspace::create_asset, workspace::delete_asset,
        generation::create, generation::status, generation::cancel, generation::list,
        billing::stripe_webhook, billing::paypal_webhook, billing::invoices, billing::subscription, billing::owed,
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
