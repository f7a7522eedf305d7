//! Random bodies against every JSON route and the webhook parsers (signed, so they reach the
//! event logic): nothing panics, nothing answers 5xx, and the store still verifies. A seeded
//! generator keeps every run the same; `FUZZ_CASES` raises the count.

use serde_json::{json, Map, Value};

use crate::helpers::{spawn_app_with, FLOOD_CONFIG};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Names the parsers look for, so random objects reach deep branches.
const KEYS: &[&str] = &[
    "id",
    "type",
    "object",
    "data",
    "created",
    "metadata",
    "user_id",
    "tier",
    "pack",
    "mode",
    "payment_status",
    "client_reference_id",
    "customer",
    "subscription",
    "amount_total",
    "amount_paid",
    "amount_refunded",
    "currency",
    "payment_intent",
    "charge",
    "invoice",
    "lines",
    "period",
    "end",
    "status",
    "current_period_end",
    "items",
    "price",
    "parent",
    "subscription_details",
    "event_type",
    "resource",
    "custom_id",
    "amount",
    "value",
    "currency_code",
    "plan_id",
    "billing_agreement_id",
    "total",
    "links",
    "rel",
    "href",
    "name",
    "email",
    "password",
    "description",
    "prompt",
    "format",
    "variations",
    "params",
    "project_id",
    "workbench_id",
    "brand_kit_id",
    "colors",
    "fonts",
    "logos",
    "hex",
    "weight",
    "jsonrpc",
    "method",
];

fn value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 3 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!([i64::MIN, i64::MAX, 0, -1, 1, 999, 4900][rng.below(7) as usize]),
        4 => json!((rng.next() % 1_000_000) as f64 / 7.0),
        5 => Value::String(
            [
                "",
                "pro",
                "team",
                "free",
                "paid",
                "usd",
                "subscription",
                "payment",
                "active",
                "credits_100",
                "\u{202E}x",
                "x".repeat(300).as_str(),
                "2026-01-01T00:00:00Z",
                "checkout.session.completed",
                "invoice.paid",
                "charge.refunded",
                "customer.subscription.updated",
                "PAYMENT.CAPTURE.COMPLETED",
                "9.99",
                "-1",
            ][rng.below(20) as usize]
                .to_string(),
        ),
        6 | 7 => {
            let mut m = Map::new();
            for _ in 0..rng.below(6) {
                let k = KEYS[rng.below(KEYS.len() as u64) as usize];
                m.insert(k.to_string(), value(rng, depth + 1));
            }
            Value::Object(m)
        }
        _ => Value::Array((0..rng.below(3)).map(|_| value(rng, depth + 1)).collect()),
    }
}

fn body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(5) {
        // Raw bytes, sometimes almost JSON.
        0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        1 => {
            let mut b = serde_json::to_vec(&value(rng, 0)).unwrap_or_default();
            b.extend_from_slice(b" {");
            b
        }
        _ => serde_json::to_vec(&value(rng, 0)).unwrap_or_default(),
    }
}

#[actix_web::test]
async fn random_bodies_never_answer_5xx_and_leave_a_store_that_verifies() {
    const SECRET: &str = "whsec_fuzz";
    let cases: u64 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("cf.toml");
    std::fs::write(
        &file,
        format!("{FLOOD_CONFIG}[auth]\nsignups_per_ip_max = 100000\n"),
    )
    .unwrap();
    let app = spawn_app_with(&[
        ("CREATIVEFLOW_CONFIG", file.to_str().unwrap()),
        ("CREATIVEFLOW_STRIPE_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let admin = app.staff(storage::records::Role::Admin).await;
    let (_, user) = app.new_user().await;
    let routes = [
        "/api/v1/auth/signup".to_string(),
        "/api/v1/auth/login".into(),
        "/api/v1/auth/password-reset/request".into(),
        "/api/v1/auth/password-reset/confirm".into(),
        "/api/v1/workbenches".into(),
        "/api/v1/projects".into(),
        "/api/v1/brand-kits".into(),
        "/api/v1/generation/create".into(),
        format!("/api/v1/admin/users/{user}/credits"),
        "/payment/stripe/webhook".into(),
    ];
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    for case in 0..cases {
        let route = &routes[(case % routes.len() as u64) as usize];
        let payload = if route.contains("stripe") {
            // Signed, so the event logic (not the signature check) meets the random input.
            let mut event = value(&mut rng, 1);
            if let Value::Object(m) = &mut event {
                m.insert("id".into(), json!(format!("evt_fuzz_{case}")));
            }
            serde_json::to_vec(&event).unwrap()
        } else {
            body(&mut rng)
        };
        let mut req = app
            .client
            .post(app.url(route))
            .header("content-type", "application/json")
            .bearer_auth(&admin)
            .body(payload.clone());
        if route.contains("stripe") {
            let t = storage::now_us() / 1_000_000;
            req = req.header(
                "Stripe-Signature",
                creativeflow::billing::stripe::signature_header(SECRET, t, &payload),
            );
        }
        let r = req.send().await.expect("an answer");
        assert!(
            r.status().as_u16() < 500 || r.status() == 503,
            "case {case}: {route} answered {} to {}",
            r.status(),
            String::from_utf8_lossy(&payload)
        );
        if r.status() == 503 {
            // Only a payment event that cannot apply yet may ask to be retried.
            assert!(
                route.contains("stripe"),
                "case {case}: {route} answered 503"
            );
        }
    }
    app.assert_verified();
}

/// The PayPal event logic (behind a signature the fuzzer cannot forge) takes any JSON without
/// panicking and without an internal error: every outcome is a decision or a client error.
#[actix_web::test]
async fn the_paypal_event_logic_takes_any_json() {
    let app = crate::helpers::spawn_app().await;
    let (_, user) = app.new_user().await;
    let mut rng = Rng(0x5EED_CAFE_F00D_0002);
    let kinds = [
        "PAYMENT.CAPTURE.COMPLETED",
        "PAYMENT.CAPTURE.REFUNDED",
        "BILLING.SUBSCRIPTION.ACTIVATED",
        "BILLING.SUBSCRIPTION.CANCELLED",
        "BILLING.SUBSCRIPTION.PAYMENT.FAILED",
        "PAYMENT.SALE.COMPLETED",
    ];
    for case in 0..2000u64 {
        let mut event = value(&mut rng, 1);
        if let Value::Object(m) = &mut event {
            m.insert("event_type".into(), json!(kinds[(case % 6) as usize]));
            if case % 3 == 0 {
                let mut resource = value(&mut rng, 2);
                if let Value::Object(r) = &mut resource {
                    r.insert("custom_id".into(), json!(format!("{user}:credits_100")));
                }
                m.insert("resource".into(), resource);
            }
        }
        match creativeflow::billing::paypal::decide(&app.state, &event) {
            Ok(_) => {}
            Err(e) => {
                let status = e.envelope().status;
                assert!(
                    !status.is_server_error() || status.as_u16() == 503,
                    "case {case}: {e:?} for {event}"
                );
            }
        }
    }
}
