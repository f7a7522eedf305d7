use crate::helpers::{assert_error, spawn_app};
use serde_json::{json, Value};
use storage::records::Role;

#[actix_web::test]
async fn an_admin_adds_and_deducts_credits_and_the_ledger_shows_both() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    let r = app.admin_adjust(&admin, &id, 90, "goodwill").await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["balance"], 100);
    assert_eq!(body["transaction"]["kind"], "admin_adjustment");
    assert_eq!(
        app.admin_adjust(&admin, &id, -40, "correction")
            .await
            .status(),
        201
    );
    let credits: Value = app
        .get("/api/v1/credits", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(credits["balance"], 60);
    let amounts: Vec<i64> = credits["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, vec![-40, 90, 10], "newest first");
    app.assert_verified();
}

#[actix_web::test]
async fn deduct_beyond_balance_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    let e = assert_error(
        app.admin_adjust(&admin, &id, -11, "too much").await,
        402,
        "insufficient_credits",
    )
    .await;
    assert_eq!(e["error"]["details"]["balance"], 10);
    let credits: Value = app
        .get("/api/v1/credits", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(credits["balance"], 10);
    assert_eq!(credits["transactions"].as_array().unwrap().len(), 1);
    app.assert_verified();
}

#[actix_web::test]
async fn bad_adjustments_are_422_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    let path = format!("/api/v1/admin/users/{id}/credits");
    for (body, field) in [
        (json!({"amount": 0, "description": "x"}), "amount"),
        (
            json!({"amount": 2_000_000_000i64, "description": "x"}),
            "amount",
        ),
        (json!({"amount": 1.5, "description": "x"}), "amount"),
        (json!({"amount": 5, "description": ""}), "description"),
        (json!({"amount": 5}), "description"),
    ] {
        let e = assert_error(
            app.post_json(&path, Some(&admin), &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(e["error"]["details"]["field"], field, "{body}");
    }
    assert_eq!(app.balance(&token).await, 10);
}

#[actix_web::test]
async fn adjusting_an_unknown_user_is_404() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    assert_error(
        app.admin_adjust(&admin, &uuid::Uuid::now_v7().to_string(), 5, "x")
            .await,
        404,
        "not_found",
    )
    .await;
}

#[actix_web::test]
async fn an_idempotent_retry_is_answered_once_and_charged_once() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    let send = |amount: i64| {
        app.client
            .post(app.url(&format!("/api/v1/admin/users/{id}/credits")))
            .bearer_auth(&admin)
            .header("Idempotency-Key", "refund-ticket-42")
            .json(&json!({"amount": amount, "description": "refund"}))
            .send()
    };
    let first = send(5).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let replay = send(5).await.unwrap();
    // A replay answers as the first time did (status and body), and says it is a replay.
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers().get("idempotent-replayed").unwrap(), "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay, first);
    assert_error(send(6).await.unwrap(), 409, "idempotency_key_reused").await;
    assert_eq!(app.balance(&token).await, 15);
    app.assert_verified();
}

#[actix_web::test]
async fn a_user_sees_only_their_own_ledger() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (alice, alice_id) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    app.admin_adjust(&admin, &alice_id, 77, "alice only").await;
    let bobs: Value = app
        .get("/api/v1/credits", Some(&bob))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["balance"], 10);
    assert!(bobs["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["description"] != "alice only"));
    // A cursor pointing into another user's ledger is refused, not followed.
    let alices: Value = app
        .get("/api/v1/credits?limit=1", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    let cursor = alices["next_cursor"].as_str().unwrap();
    assert_error(
        app.get(&format!("/api/v1/credits?cursor={cursor}"), Some(&bob))
            .await,
        422,
        "validation_failed",
    )
    .await;
}

#[actix_web::test]
async fn the_ledger_pages_newest_first() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    for i in 1..=4 {
        app.admin_adjust(&admin, &id, i, &format!("grant {i}"))
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map_or("/api/v1/credits?limit=2".to_string(), |c| {
                format!("/api/v1/credits?limit=2&cursor={c}")
            });
        let page: Value = app.get(&q, Some(&token)).await.json().await.unwrap();
        seen.extend(
            page["transactions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["amount"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec![4, 3, 2, 1, 10]);
}

#[actix_web::test]
async fn a_thousand_simultaneous_deducts_against_600_credits_grant_exactly_600() {
    let (app, _dir) = crate::helpers::spawn_app_with_config(crate::helpers::FLOOD_CONFIG).await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    assert_eq!(
        app.admin_adjust(&admin, &id, 590, "top up to 600")
            .await
            .status(),
        201
    );
    let results = futures_util::future::join_all(
        (0..1000).map(|_| app.admin_adjust(&admin, &id, -1, "deduct")),
    )
    .await;
    let ok = results.iter().filter(|r| r.status() == 201).count();
    let refused = results.iter().filter(|r| r.status() == 402).count();
    assert_eq!(ok, 600);
    assert_eq!(refused, 400);
    assert_eq!(app.balance(&token).await, 0);
    app.assert_verified();
}

#[actix_web::test]
async fn simultaneous_deducts_through_the_account_actor_never_overspend() {
    use actors::Apply;
    use storage::ledger::Posting;
    use storage::records::LedgerKind;
    let app = spawn_app().await;
    let (token, id) = app.new_user().await;
    let user = uuid::Uuid::parse_str(&id).unwrap();
    let deduct = || Apply {
        posting: Posting {
            amount: -3,
            kind: LedgerKind::GenerationCharge,
            description: "charge".into(),
            generation_request_id: None,
            invoice_id: None,
        },
        idempotency: None,
        extra: storage::WriteSet::new(),
    };
    let outcomes =
        futures_util::future::join_all((0..50).map(|_| app.state.accounts.apply(user, deduct())))
            .await;
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(actors::Outcome::Applied { .. })))
        .count();
    assert_eq!(applied, 3, "10 credits cover exactly 3 charges of 3");
    assert_eq!(app.balance(&token).await, 1);
    app.assert_verified();
}
