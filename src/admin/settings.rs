//! Settings: the four feature toggles and their change history (admins only).

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest};
use maud::html;

use super::layout::{self, Menu};
use super::{see_other, PageResult, Staff};
use crate::extract::Page;
use crate::services::features::{self, FeaturePatch};
use crate::state::AppState;

const TOGGLES: [(&str, &str); 4] = [
    (
        "enable_paypal_payments",
        "PayPal payments (the PayPal webhook)",
    ),
    (
        "enable_live_chat_support",
        "Live chat support (chat tickets and event streams)",
    ),
    ("enable_user_template_saving", "Saved templates"),
    ("enable_progressive_profiling", "Progressive profiling"),
];

/// `GET /admin/settings`.
pub async fn show(req: HttpRequest, state: web::Data<AppState>, staff: Staff) -> PageResult {
    staff.require_admin()?;
    let reads = &*staff.reads;
    let now = features::current(reads, state.config.features)?;
    let values = [
        now.enable_paypal_payments,
        now.enable_live_chat_support,
        now.enable_user_template_saving,
        now.enable_progressive_profiling,
    ];
    let page = Page::from_query(&req)?;
    let (history, next) = features::history(reads, &page)?;
    let rows: Vec<_> = history
        .iter()
        .map(|c| html! { tr {
            td { (layout::when(c.changed_at_us)) } td { (c.name) } td { (c.old) } td { (c.new) }
            td { (crate::services::users::get_user(reads, c.changed_by).map_or_else(|_| c.changed_by.to_string(), |u| u.email)) }
        } })
        .collect();
    let body = html! {
        section.panel { h2 { "Feature toggles" }
            form method="post" action="/admin/settings" {
                (layout::csrf(&staff))
                @for ((name, label), on) in TOGGLES.iter().zip(values) {
                    // What the form showed: only toggles changed here are set, so another
                    // admin's change made meanwhile stands.
                    input type="hidden" name={ (name) "_was" } value=(if on { "on" } else { "off" });
                    label { input type="checkbox" name=(name) value="on" checked[on]; " " (label) }
                }
                button type="submit" { "Save toggles" }
            }
        }
        section.panel { h2 { "Change history" }
            (layout::table(&["When", "Toggle", "Old", "New", "By"], &rows))
            @if let Some(n) = next { a rel="next" href={ "/admin/settings?cursor=" (n) } { "Older changes" } }
        }
    };
    Ok(layout::page(&staff, Menu::Settings, "Settings", body))
}

/// `POST /admin/settings`: the toggles changed on the form (an unticked box is off); only real
/// changes are recorded.
pub async fn update(state: web::Data<AppState>, staff: Staff, body: Bytes) -> PageResult {
    let form = staff.form(&body)?;
    staff.require_admin()?;
    let on = |name: &str| {
        let now = form.get(name) == Some("on");
        let was = form.get(&format!("{name}_was")).map(|w| w == "on");
        (was != Some(now)).then_some(now)
    };
    let patch = FeaturePatch {
        enable_paypal_payments: on("enable_paypal_payments"),
        enable_live_chat_support: on("enable_live_chat_support"),
        enable_user_template_saving: on("enable_user_template_saving"),
        enable_progressive_profiling: on("enable_progressive_profiling"),
    };
    features::update(&state.store, &staff.user, state.config.features, patch).await?;
    Ok(see_other("/admin/settings"))
}
