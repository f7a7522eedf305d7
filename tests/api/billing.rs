//! Stripe and PayPal webhooks, invoices and subscriptions (SPEC §8).

use serde_json::{json, Value};
use storage::records::Role;
use storage::Table;

use crate::helpers::{assert_error, spawn_app_with, TestApp};

pub const SECRET: &str = "whsec_integration_test_secret";

async fn app() -> TestApp {
    spawn_app_with(&[("CREATIVEFLOW_STRIPE_WEBHOOK_SECRET", SECRET)]).await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn stripe_raw(app: &TestApp, body: &[u8], signature: Option<String>) -> reqwest::Response {
    let mut r = app
        .client
        .post(app.url("/payment/stripe/webhook"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        r = r.header("Stripe-Signature", s);
    }
    r.send().await.unwrap()
}

pub async fn stripe(app: &TestApp, event: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(event).unwrap();
    let sig = creativeflow::billing::stripe::signature_header(SECRET, now(), &body);
    stripe_raw(app, &body, Some(sig)).await
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": kind, "created": created, "data": {"object": object}})
}

pub fn pack_checkout(event_id: &str, user: &str, pack: &str, amount: u64, pi: &str) -> Value {
    event(
        event_id,
        "checkout.session.completed",
        now(),
        json!({
            "id": format!("cs_{event_id}"), "object": "checkout.session", "mode": "payment", "payment_status": "paid",
            "client_reference_id": user, "metadata": {"pack": pack}, "amount_total": amount, "currency": "usd", "payment_intent": pi
        }),
    )
}

async fn invoices(app: &TestApp, token: &str) -> Vec<Value> {
    let v: Value = app
        .get("/api/v1/invoices?limit=200", Some(token))
        .await
        .json()
        .await
        .unwrap();
    v["items"].as_array().unwrap().clone()
}

#[actix_web::test]
async fn a_bad_or_missing_signature_is_400_and_changes_nothing() {
    let app = app().await;
    let (_, user) = app.new_user().await;
    let body = serde_json::to_vec(&pack_checkout(
        "evt_sig",
        &user,
        "credits_100",
        999,
        "pi_sig",
    ))
    .unwrap();
    let t = now();
    let wrong_secret = creativeflow::billing::stripe::signature_header("whsec_other", t, &body);
    let good = creativeflow::billing::stripe::signature_header(SECRET, t, &body);
    let stale = creativeflow::billing::stripe::signature_header(SECRET, t - 301, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    for (b, sig) in [
        (&body, Some(wrong_secret)),
        (&tampered, Some(good.clone())),
        (&body, Some(stale)),
        (&body, None),
        (&body, Some("t=1,v1=zz".to_string())),
    ] {
        assert_error(stripe_raw(&app, b, sig).await, 400, "invalid_signature").await;
    }
    assert_eq!(app.state.store.count(Table::ProcessedEvents).unwrap(), 0);
    assert_eq!(app.state.store.count(Table::Invoices).unwrap(), 0);
    // One valid v1 among several (secret rotation) passes.
    let rotated = format!(
        "{},v1={}",
        creativeflow::billing::stripe::signature_header("whsec_old", t, &body),
        good.split("v1=").nth(1).unwrap()
    );
    assert_eq!(stripe_raw(&app, &body, Some(rotated)).await.status(), 200);
}

#[actix_web::test]
async fn without_a_secret_the_stripe_webhook_is_503() {
    let app = crate::helpers::spawn_app().await;
    let r = app
        .client
        .post(app.url("/payment/stripe/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(r, 503, "webhook_not_configured").await;
}

#[actix_web::test]
async fn a_pack_purchase_credits_once_however_often_the_event_comes() {
    let app = app().await;
    let (token, user) = app.new_user().await;
    let ev = pack_checkout("evt_pack_1", &user, "credits_100", 999, "pi_1");
    for _ in 0..5 {
        assert_eq!(stripe(&app, &ev).await.status(), 200);
    }
    let concurrent = futures_util::future::join_all((0..5).map(|_| stripe(&app, &ev))).await;
    assert!(concurrent.iter().all(|r| r.status() == 200));
    assert_eq!(app.balance(&token).await, 110);
    let inv = invoices(&app, &token).await;
    assert_eq!(inv.len(), 1);
    assert!(inv[0]["number"].as_str().unwrap().starts_with("CF/20"));
    assert_eq!(inv[0]["amount_minor"], 999);
    assert_eq!(inv[0]["provider"], "stripe");
    let credits: Value = app
        .get("/api/v1/credits", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(credits["transactions"][0]["kind"], "purchase");
    assert_eq!(credits["transactions"][0]["invoice_id"], inv[0]["id"]);
    app.assert_verified();
}

#[actix_web::test]
async fn a_pack_paid_at_the_wrong_price_gives_no_credits() {
    let app = app().await;
    let (token, user) = app.new_user().await;
    assert_eq!(
        stripe(
            &app,
            &pack_checkout("evt_cheap", &user, "credits_500", 100, "pi_cheap")
        )
        .await
        .status(),
        200
    );
    assert_eq!(app.balance(&token).await, 10);
    assert!(invoices(&app, &token).await.is_empty());
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("creativeflow_payment_mismatches_total 1"),
        "{metrics}"
    );
}

fn subscription_checkout(event_id: &str, user: &str, tier: &str) -> Value {
    event(
        event_id,
        "checkout.session.completed",
        now() - 100,
        json!({
            "id": format!("cs_{event_id}"), "mode": "subscription", "payment_status": "paid", "client_reference_id": user,
            "customer": "cus_1", "subscription": "sub_1", "metadata": {"tier": tier}
        }),
    )
}

fn invoice_paid(event_id: &str, invoice: &str, basil: bool, user_meta: Option<&str>) -> Value {
    let mut obj = json!({"id": invoice, "customer": "cus_1", "amount_paid": 4900, "currency": "usd",
        "lines": {"data": [{"description": "Pro plan", "quantity": 1, "amount": 4900, "period": {"end": now() + 30 * 86400}}]}});
    if basil {
        obj["parent"] = json!({"subscription_details": {"subscription": "sub_1", "metadata": {"user_id": user_meta}}});
    } else {
        obj["subscription"] = json!("sub_1");
    }
    event(event_id, "invoice.paid", now(), obj)
}

#[actix_web::test]
async fn a_subscription_sets_the_tier_grants_each_period_once_and_follows_the_provider() {
    let app = app().await;
    let (token, user) = app.new_user().await;
    assert_eq!(
        stripe(&app, &subscription_checkout("evt_s1", &user, "pro"))
            .await
            .status(),
        200
    );
    let me: Value = app
        .get("/api/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["subscription_tier"], "pro");
    let sub: Value = app
        .get("/api/v1/subscription", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["provider"], "stripe");
    // The same invoice in two different events grants once; the basil shape is understood.
    stripe(&app, &invoice_paid("evt_i1", "in_1", false, None)).await;
    stripe(&app, &invoice_paid("evt_i1b", "in_1", true, None)).await;
    assert_eq!(app.balance(&token).await, 510);
    stripe(&app, &invoice_paid("evt_i2", "in_2", true, None)).await;
    assert_eq!(app.balance(&token).await, 1010);
    assert_eq!(invoices(&app, &token).await.len(), 2);
    let sub: Value = app
        .get("/api/v1/subscription", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(sub["current_period_end"].is_string());
    // Payment failure: past due, tier kept.
    stripe(
        &app,
        &event(
            "evt_f1",
            "invoice.payment_failed",
            now(),
            json!({"id": "in_3", "subscription": "sub_1", "customer": "cus_1"}),
        ),
    )
    .await;
    let sub: Value = app
        .get("/api/v1/subscription", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sub["status"], "past_due");
    assert_eq!(sub["tier"], "pro");
    // An update older than what was applied does not roll back; a newer one does apply.
    stripe(&app, &event("evt_u_old", "customer.subscription.updated", now() - 1000, json!({"id": "sub_1", "customer": "cus_1", "status": "active", "metadata": {"tier": "enterprise"}}))).await;
    assert_eq!(
        app.get("/api/v1/me", Some(&token))
            .await
            .json::<Value>()
            .await
            .unwrap()["subscription_tier"],
        "pro"
    );
    stripe(&app, &event("evt_u_new", "customer.subscription.updated", now() + 5, json!({"id": "sub_1", "customer": "cus_1", "status": "active", "metadata": {"tier": "team"}}))).await;
    assert_eq!(
        app.get("/api/v1/me", Some(&token))
            .await
            .json::<Value>()
            .await
            .unwrap()["subscription_tier"],
        "team"
    );
    stripe(
        &app,
        &event(
            "evt_d",
            "customer.subscription.deleted",
            now() + 10,
            json!({"id": "sub_1", "customer": "cus_1", "status": "canceled"}),
        ),
    )
    .await;
    assert_eq!(
        app.get("/api/v1/me", Some(&token))
            .await
            .json::<Value>()
            .await
            .unwrap()["subscription_tier"],
        "free"
    );
    assert_eq!(
        app.get("/api/v1/subscription", Some(&token))
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "cancelled"
    );
    app.assert_verified();
}

#[actix_web::test]
async fn an_invoice_before_its_subscription_is_retried_later_unless_it_names_the_user() {
    let app = app().await;
    let (token, user) = app.new_user().await;
    let invoice = |event_id: &str, invoice_id: &str, meta: Value| {
        event(
            event_id,
            "invoice.paid",
            now(),
            json!({
                "id": invoice_id, "customer": "cus_9", "amount_paid": 4900, "currency": "usd", "lines": {"data": []},
                "parent": {"subscription_details": {"subscription": "sub_9", "metadata": meta}}
            }),
        )
    };
    let early = invoice("evt_early", "in_early", json!({}));
    assert_error(stripe(&app, &early).await, 503, "unavailable").await;
    assert_eq!(
        app.state.store.count(Table::ProcessedEvents).unwrap(),
        0,
        "not recorded: Stripe retries"
    );
    let named = invoice(
        "evt_named",
        "in_named",
        json!({"user_id": user, "tier": "pro"}),
    );
    assert_eq!(stripe(&app, &named).await.status(), 200);
    assert_eq!(app.balance(&token).await, 510);
    assert_eq!(
        app.get("/api/v1/me", Some(&token))
            .await
            .json::<Value>()
            .await
            .unwrap()["subscription_tier"],
        "pro"
    );
    // Stripe's retry of the early invoice now finds the subscription and grants its period.
    assert_eq!(stripe(&app, &early).await.status(), 200);
    assert_eq!(app.balance(&token).await, 1010);
    app.assert_verified();
}

#[actix_web::test]
async fn a_refund_beyond_the_remaining_balance_reverses_what_it_can_and_records_the_rest_as_owed() {
    let app = app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, user) = app.new_user().await;
    stripe(
        &app,
        &pack_checkout("evt_buy", &user, "credits_100", 999, "pi_r"),
    )
    .await;
    assert_eq!(app.balance(&token).await, 110);
    // Partial refund: half the money → floor(100 * 500 / 999) = 50 credits.
    stripe(&app, &event("evt_ref1", "charge.refunded", now(), json!({"id": "ch_1", "payment_intent": "pi_r", "amount_refunded": 500, "refunded": false}))).await;
    assert_eq!(app.balance(&token).await, 60);
    app.admin_adjust(&admin, &user, -55, "spent").await;
    assert_eq!(app.balance(&token).await, 5);
    // Full refund: 50 more due, only 5 left.
    stripe(&app, &event("evt_ref2", "charge.refunded", now(), json!({"id": "ch_1", "payment_intent": "pi_r", "amount_refunded": 999, "refunded": true}))).await;
    assert_eq!(app.balance(&token).await, 0);
    let owed: Value = app
        .get("/api/v1/admin/owed", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(owed["items"][0]["owed_credits"], 45);
    assert_eq!(owed["items"][0]["user_id"], user);
    assert_eq!(invoices(&app, &token).await[0]["status"], "refunded");
    assert_error(
        app.get("/api/v1/admin/owed", Some(&token)).await,
        403,
        "forbidden",
    )
    .await;
    app.assert_verified();
}

#[actix_web::test]
async fn invoice_numbers_stay_gapless_under_a_hundred_concurrent_payments() {
    let app = app().await;
    let mut users = Vec::new();
    for _ in 0..10 {
        users.push(app.new_user().await.1);
    }
    let events: Vec<Value> = (0..100)
        .map(|i| {
            pack_checkout(
                &format!("evt_c{i}"),
                &users[i % 10],
                "credits_100",
                999,
                &format!("pi_c{i}"),
            )
        })
        .collect();
    let answers = futures_util::future::join_all(events.iter().map(|e| stripe(&app, e))).await;
    assert!(answers.iter().all(|r| r.status() == 200));
    let snap = app
        .state
        .store
        .scan::<storage::records::InvoiceRecord>(&[], None, storage::Direction::Forward, 1000)
        .unwrap();
    let mut seqs: Vec<u64> = snap.iter().map(|(_, i)| i.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    app.assert_verified();
}

#[actix_web::test]
async fn unknown_event_types_are_acknowledged_and_ignored() {
    let app = app().await;
    let r = stripe(
        &app,
        &event("evt_x", "customer.created", now(), json!({"id": "cus_x"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "ignored");
}

#[actix_web::test]
async fn the_paypal_webhook_is_404_while_disabled_and_503_without_a_webhook_id() {
    let app = crate::helpers::spawn_app().await;
    let r = app
        .client
        .post(app.url("/payment/paypal/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "feature_disabled").await;
    let app = spawn_app_with(&[("CREATIVEFLOW_ENABLE_PAYPAL_PAYMENTS", "true")]).await;
    let r = app
        .client
        .post(app.url("/payment/paypal/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(r, 503, "webhook_not_configured").await;
}

#[actix_web::test]
async fn a_one_off_invoice_of_a_subscriber_grants_no_plan_credits() {
    let app = app().await;
    let (token, user) = app.new_user().await;
    stripe(&app, &subscription_checkout("evt_s", &user, "pro")).await;
    let one_off = event(
        "evt_manual",
        "invoice.paid",
        now(),
        json!({
            "id": "in_manual", "customer": "cus_1", "amount_paid": 999, "currency": "usd", "billing_reason": "manual", "lines": {"data": []}
        }),
    );
    assert_eq!(stripe(&app, &one_off).await.status(), 200);
    assert_eq!(app.balance(&token).await, 10);
}

#[actix_web::test]
async fn a_refund_that_arrives_before_its_purchase_is_retried_not_dropped() {
    let app = app().await;
    let (token, user) = app.new_user().await;
    let refund = event(
        "evt_ref_early",
        "charge.refunded",
        now(),
        json!({"id": "ch_e", "payment_intent": "pi_e", "amount_refunded": 999}),
    );
    assert_error(stripe(&app, &refund).await, 503, "unavailable").await;
    stripe(
        &app,
        &pack_checkout("evt_buy_late", &user, "credits_100", 999, "pi_e"),
    )
    .await;
    assert_eq!(app.balance(&token).await, 110);
    assert_eq!(
        stripe(&app, &refund).await.status(),
        200,
        "Stripe's retry applies"
    );
    assert_eq!(app.balance(&token).await, 10);
    app.assert_verified();
}

#[actix_web::test]
async fn late_or_foreign_subscription_events_do_not_override_newer_state() {
    let app = app().await;
    let (token, user) = app.new_user().await;
    stripe(&app, &subscription_checkout("evt_s", &user, "pro")).await;
    stripe(&app, &invoice_paid("evt_paid", "in_p", false, None)).await;
    // A payment failure created before the paid invoice, delivered after it.
    let late_failure = event(
        "evt_late_fail",
        "invoice.payment_failed",
        now() - 50,
        json!({"id": "in_old", "subscription": "sub_1", "customer": "cus_1"}),
    );
    assert_eq!(stripe(&app, &late_failure).await.status(), 200);
    assert_eq!(
        app.get("/api/v1/subscription", Some(&token))
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "active"
    );
    // The deletion of some other subscription of this customer leaves the current one alone.
    let other = event(
        "evt_other_del",
        "customer.subscription.deleted",
        now() + 5,
        json!({"id": "sub_old", "customer": "cus_1", "status": "canceled", "metadata": {"user_id": user}}),
    );
    assert_eq!(stripe(&app, &other).await.status(), 200);
    assert_eq!(
        app.get("/api/v1/me", Some(&token))
            .await
            .json::<Value>()
            .await
            .unwrap()["subscription_tier"],
        "pro"
    );
}

/// Provider timestamps far out of range are treated as absent, never wrapped or panicking.
#[actix_web::test]
async fn out_of_range_provider_timestamps_neither_panic_nor_fail_the_event() {
    let app = app().await;
    let (_, user) = app.new_user().await;
    let mut checkout = subscription_checkout("evt_huge_1", &user, "pro");
    checkout["created"] = json!(i64::MAX / 2);
    assert_eq!(stripe(&app, &checkout).await.status(), 200);
    let mut invoice = invoice_paid("evt_huge_2", "in_huge", false, None);
    invoice["data"]["object"]["lines"]["data"][0]["period"]["end"] = json!(i64::MAX / 3);
    let r = stripe(&app, &invoice).await;
    assert!(r.status() == 200 || r.status() == 503, "{}", r.status());
    let update = event(
        "evt_huge_3",
        "customer.subscription.updated",
        now(),
        json!({"id": "sub_1", "status": "active", "current_period_end": i64::MIN / 7, "metadata": {"user_id": user}}),
    );
    let r = stripe(&app, &update).await;
    assert!(
        r.status().is_success() || r.status() == 503,
        "{}",
        r.status()
    );
    app.assert_verified();
}

async fn tier(app: &TestApp, token: &str) -> String {
    app.get("/api/v1/me", Some(token))
        .await
        .json::<Value>()
        .await
        .unwrap()["subscription_tier"]
        .as_str()
        .unwrap()
        .to_string()
}

fn checkout_for(event_id: &str, user: &str, sub: &str, tier: &str, paid: &str) -> Value {
    event(
        event_id,
        "checkout.session.completed",
        now() - 100,
        json!({
            "id": format!("cs_{event_id}"), "mode": "subscription", "payment_status": paid, "client_reference_id": user,
            "customer": format!("cus_{sub}"), "subscription": sub, "metadata": {"tier": tier}
        }),
    )
}

fn subscription_event(event_id: &str, kind: &str, sub: &str, status: &str) -> Value {
    event(event_id, kind, now(), json!({"id": sub, "status": status}))
}

/// A second subscription naming the same user is a second subscription: each one's events
/// change only itself, and the tier is the highest among those that grant one.
#[actix_web::test]
async fn a_second_subscription_neither_overwrites_nor_hides_the_first() {
    let app = app().await;
    let (token, user) = app.new_user().await;
    assert_eq!(
        stripe(&app, &checkout_for("evt_a", &user, "sub_a", "pro", "paid"))
            .await
            .status(),
        200
    );
    assert_eq!(tier(&app, &token).await, "pro");
    assert_eq!(
        stripe(&app, &checkout_for("evt_b", &user, "sub_b", "team", "paid"))
            .await
            .status(),
        200
    );
    assert_eq!(tier(&app, &token).await, "team");
    let gone = subscription_event(
        "evt_b_del",
        "customer.subscription.deleted",
        "sub_b",
        "canceled",
    );
    assert_eq!(stripe(&app, &gone).await.status(), 200);
    assert_eq!(tier(&app, &token).await, "pro", "sub_a still pays for pro");
    // The first subscription's own events still apply to it.
    let a_gone = subscription_event(
        "evt_a_del",
        "customer.subscription.deleted",
        "sub_a",
        "canceled",
    );
    assert_eq!(stripe(&app, &a_gone).await.status(), 200);
    assert_eq!(tier(&app, &token).await, "free");
    app.assert_verified();
}

/// What was bought decides: a mapped price beats `metadata.tier`; an unpaid or paused
/// subscription grants no tier.
#[actix_web::test]
async fn the_price_decides_the_tier_and_an_unpaid_subscription_grants_nothing() {
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("cf.toml");
    std::fs::write(
        &file,
        "[plans.pro]\nmonthly_credits = 500\nstripe_price_ids = [\"price_pro\"]\n\
         [plans.team]\nmonthly_credits = 2000\n[plans.enterprise]\nmonthly_credits = 10000\n",
    )
    .unwrap();
    let app = spawn_app_with(&[
        ("CREATIVEFLOW_STRIPE_WEBHOOK_SECRET", SECRET),
        ("CREATIVEFLOW_CONFIG", file.to_str().unwrap()),
    ])
    .await;
    let (token, user) = app.new_user().await;
    let mut claims_more = checkout_for("evt_p", &user, "sub_p", "enterprise", "paid");
    claims_more["data"]["object"]["metadata"]["price_id"] = json!("price_pro");
    assert_eq!(stripe(&app, &claims_more).await.status(), 200);
    assert_eq!(tier(&app, &token).await, "pro");

    let (token2, user2) = app.new_user().await;
    assert_eq!(
        stripe(
            &app,
            &checkout_for("evt_u", &user2, "sub_u", "team", "unpaid")
        )
        .await
        .status(),
        200
    );
    assert_eq!(tier(&app, &token2).await, "free");
    assert_eq!(app.balance(&token2).await, 10);
    let paused = subscription_event(
        "evt_pause",
        "customer.subscription.updated",
        "sub_p",
        "paused",
    );
    assert_eq!(stripe(&app, &paused).await.status(), 200);
    assert_eq!(tier(&app, &token).await, "free");
    app.assert_verified();
}

/// A refund of a subscription invoice reverses that period's credits proportionally, like a
/// pack; a refund of a payment that never credited anything here is acknowledged, not retried
/// for days.
#[actix_web::test]
async fn a_refunded_subscription_period_reverses_its_credits_and_unknown_old_refunds_are_acknowledged(
) {
    let app = app().await;
    let (token, user) = app.new_user().await;
    assert_eq!(
        stripe(&app, &checkout_for("evt_s", &user, "sub_r", "pro", "paid"))
            .await
            .status(),
        200
    );
    let paid = event(
        "evt_inv",
        "invoice.paid",
        now(),
        json!({"id": "in_r", "customer": "cus_sub_r", "subscription": "sub_r", "amount_paid": 4900, "currency": "usd",
               "payment_intent": "pi_sub_r", "lines": {"data": [{"description": "Pro", "quantity": 1, "amount": 4900}]}}),
    );
    assert_eq!(stripe(&app, &paid).await.status(), 200);
    assert_eq!(app.balance(&token).await, 510);
    let half = event(
        "evt_ref",
        "charge.refunded",
        now(),
        json!({"id": "ch_r", "payment_intent": "pi_sub_r", "amount_refunded": 2450}),
    );
    assert_eq!(stripe(&app, &half).await.status(), 200);
    assert_eq!(
        app.balance(&token).await,
        260,
        "half of the 500 plan credits reversed"
    );
    let stranger = event(
        "evt_stranger",
        "charge.refunded",
        now() - 2 * 3600,
        json!({"id": "ch_x", "payment_intent": "pi_never_seen", "amount_refunded": 100}),
    );
    assert_eq!(stripe(&app, &stranger).await.status(), 200);
    let fresh_stranger = event(
        "evt_fresh",
        "charge.refunded",
        now(),
        json!({"id": "ch_y", "payment_intent": "pi_not_yet", "amount_refunded": 100}),
    );
    assert_error(stripe(&app, &fresh_stranger).await, 503, "unavailable").await;
    app.assert_verified();
}
