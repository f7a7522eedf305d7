//! Requests as an attacker would send them (issue 9): each answers with the SPEC's envelope and
//! changes nothing it should not.

use serde_json::Value;
use storage::records::Role;

use crate::helpers::{assert_error, spawn_app};

async fn raw_post(
    app: &crate::helpers::TestApp,
    path: &str,
    token: &str,
    body: &'static str,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request")
}

#[actix_web::test]
async fn data_after_the_json_body_is_malformed_and_changes_nothing() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    let r = raw_post(
        &app,
        "/api/v1/workbenches",
        &token,
        r#"{"name":"first"}{"name":"second"} <garbage>"#,
    )
    .await;
    assert_error(r, 400, "malformed_json").await;
    let r = raw_post(
        &app,
        "/api/v1/workbenches",
        &token,
        r#"{"name":"first"} xyz"#,
    )
    .await;
    assert_error(r, 400, "malformed_json").await;
    let listed: Value = app
        .get("/api/v1/workbenches", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
    // Whitespace after the value is fine.
    let r = raw_post(
        &app,
        "/api/v1/workbenches",
        &token,
        "{\"name\":\"ok\"}\n\t ",
    )
    .await;
    assert_eq!(r.status(), 201);

    let admin = app.staff(Role::Admin).await;
    let (user_token, user) = app.new_user().await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/admin/users/{user}/credits")))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(r#"{"amount":1,"description":"x"} xyz"#)
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "malformed_json").await;
    assert_eq!(app.balance(&user_token).await, 10);
    app.assert_verified();
}

#[actix_web::test]
async fn a_forged_ledger_cursor_is_422_whether_or_not_the_entry_exists() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    for forged in [
        creativeflow::extract::encode_cursor(uuid::Uuid::now_v7().as_bytes()),
        creativeflow::extract::encode_cursor(b"short"),
        "!!not-base64!!".to_string(),
    ] {
        let r = app
            .get(&format!("/api/v1/credits?cursor={forged}"), Some(&token))
            .await;
        let body = assert_error(r, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["field"], "cursor", "{forged}");
    }
    // Every paginated route refuses a cursor that is not one of its own.
    for path in [
        "/api/v1/workbenches",
        "/api/v1/projects",
        "/api/v1/brand-kits",
        "/api/v1/generation",
        "/api/v1/invoices",
    ] {
        let forged = creativeflow::extract::encode_cursor(uuid::Uuid::now_v7().as_bytes());
        let r = app
            .get(&format!("{path}?cursor={forged}"), Some(&token))
            .await;
        let body = assert_error(r, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["field"], "cursor", "{path}");
    }
}

#[actix_web::test]
async fn invisible_and_control_characters_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let (token, user) = app.new_user().await;
    let admin = app.staff(Role::Admin).await;
    for name in [
        "\u{200B}\u{200C}",
        "\u{202E}evil",
        "a\u{0000}b",
        "x\u{FEFF}",
    ] {
        let r = app
            .post_json(
                "/api/v1/workbenches",
                Some(&token),
                &serde_json::json!({"name": name}),
            )
            .await;
        let body = assert_error(r, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["field"], "name", "{name:?}");
    }
    let r = app.admin_adjust(&admin, &user, 5, "\u{0000}").await;
    let body = assert_error(r, 422, "validation_failed").await;
    assert_eq!(body["error"]["details"]["field"], "description");
    // An email with a zero-width space is not a second account that looks like the first.
    let email = crate::helpers::unique_email("look");
    assert_eq!(app.signup(&email).await.status(), 201);
    let lookalike = email.replacen('@', "\u{200B}@", 1);
    let r = app.signup(&lookalike).await;
    let body = assert_error(r, 422, "validation_failed").await;
    assert_eq!(body["error"]["details"]["field"], "email");
    // Composed and decomposed forms of one address are one account.
    let composed = format!("jos\u{00E9}-{}@example.com", uuid::Uuid::now_v7().simple());
    let decomposed = composed.replace('\u{00E9}', "e\u{0301}");
    assert_eq!(app.signup(&composed).await.status(), 201);
    assert_error(app.signup(&decomposed).await, 409, "email_taken").await;
    // Prompts keep newlines and tabs, nothing else invisible.
    let wb: Value = app
        .post_json(
            "/api/v1/workbenches",
            Some(&token),
            &serde_json::json!({"name": "W"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let p: Value = app
        .post_json(
            "/api/v1/projects",
            Some(&token),
            &serde_json::json!({"name": "P", "workbench_id": wb["id"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let bad = serde_json::json!({"project_id": p["id"], "prompt": "\u{0007}\u{0008}", "format": "banner"});
    let body = assert_error(
        app.post_json("/api/v1/generation/create", Some(&token), &bad)
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "prompt");
    let good = serde_json::json!({"project_id": p["id"], "prompt": "line one\n\tline two", "format": "banner"});
    assert_eq!(
        app.post_json("/api/v1/generation/create", Some(&token), &good)
            .await
            .status(),
        202
    );
    app.assert_verified();
}

/// Headers sent, a body promised and never finished.
async fn slow_body(app: &crate::helpers::TestApp, token: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = app.address.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/workbenches HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[actix_web::test]
async fn a_body_that_stops_arriving_is_408_and_the_connection_closes() {
    use tokio::io::AsyncReadExt;
    let (app, _dir) =
        crate::helpers::spawn_app_with_config("[http]\nbody_timeout_seconds = 1\n").await;
    let (token, _) = app.new_user().await;
    let mut s = slow_body(&app, &token).await;
    let mut answer = Vec::new();
    // Bounded wait for liveness only: the server must answer and close by itself.
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.read_to_end(&mut answer),
    )
    .await
    .expect("the server closed the connection")
    .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    let listed: Value = app
        .get("/api/v1/workbenches", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
}

#[actix_web::test]
async fn one_client_ip_holds_a_bounded_number_of_requests_in_flight() {
    let (app, _dir) = crate::helpers::spawn_app_with_config(
        "[http]\nbody_timeout_seconds = 30\nrequests_in_flight_per_ip_max = 2\n",
    )
    .await;
    let (token, _) = app.new_user().await;
    let held = [slow_body(&app, &token).await, slow_body(&app, &token).await];
    // Both are in flight once the server reads their heads.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = app.get("/healthz", None).await;
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            assert_error(r, 429, "rate_limited").await;
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never limited");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(held);
    // Closing them frees their slots.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.get("/healthz", None).await.status() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "slots never freed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn one_client_ip_holds_a_bounded_number_of_connections() {
    let (app, _dir) =
        crate::helpers::spawn_app_with_config("[http]\nconnections_per_ip_max = 2\n").await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let held = [
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
    ];
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = fresh().get(app.url("/healthz")).send().await.unwrap();
        if r.status() == 429 {
            assert_eq!(r.headers()["connection"], "close");
            assert_error(r, 429, "rate_limited").await;
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never limited");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(held);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while fresh()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(tokio::time::Instant::now() < deadline, "slots never freed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
