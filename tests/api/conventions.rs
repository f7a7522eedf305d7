//! What operators and clients expect of any production HTTP service: 405 with `Allow`,
//! `Retry-After` on 503, request ids, Prometheus text that parses, alike idempotent replays,
//! graceful stops on SIGTERM and SIGINT, passwords kept off the command line.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::cli::{run, text, Server, BIN};
use crate::helpers::{assert_error, spawn_app, unique_email, PASSWORD};

#[actix_web::test]
async fn a_wrong_method_on_a_known_route_is_405_with_allow_for_every_method() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        ("PUT", "/api/v1/auth/signup", "POST"),
        ("TRACE", "/api/v1/me", "GET"),
        ("DELETE", "/healthz", "GET"),
        (
            "PUT",
            "/api/v1/workbenches/00000000-0000-0000-0000-000000000000",
            "GET, PATCH, DELETE",
        ),
        ("FOO1", "/api/v1/credits", "GET"),
        ("GET", "/api/v1/generation/create", "POST"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app.client.request(m, app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        assert_error(r, 405, "method_not_allowed").await;
    }
    // An unknown path stays 404 whatever the method.
    let r = app
        .client
        .put(app.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
}

#[actix_web::test]
async fn every_answer_carries_a_request_id_and_an_error_envelope_repeats_it() {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    let generated = r.headers()["request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    let r = app
        .client
        .get(app.url("/api/v1/me"))
        .header("Request-Id", "client-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["request-id"], "client-abc.123");
    let body = assert_error(r, 401, "unauthenticated").await;
    assert_eq!(body["error"]["request_id"], "client-abc.123");

    // An id that could smuggle anything into logs or headers is replaced.
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("Request-Id", "a b<script>")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["request-id"], "a b<script>");
}

#[actix_web::test]
async fn a_503_says_when_to_retry() {
    // No webhook secret configured: the Stripe route answers 503.
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/payment/stripe/webhook"))
        .header("Stripe-Signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, 503, "webhook_not_configured").await;
}

/// Parses the exposition with a Prometheus text-format parser and checks what it cannot.
fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
}

#[actix_web::test]
async fn metrics_parse_as_prometheus_text_with_counters_typed_and_labels_bounded() {
    let app = spawn_app().await;
    app.get("/healthz", None).await;
    for i in 0..20 {
        let m = reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        app.client
            .request(m, app.url("/healthz"))
            .send()
            .await
            .unwrap();
    }
    let r = app.get("/metrics", None).await;
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let scrape = parse_metrics(&text);
    let types: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    for s in &scrape.samples {
        if s.metric.ends_with("_total") {
            assert_eq!(
                types.get(&s.metric).map(String::as_str),
                Some("counter"),
                "{}",
                s.metric
            );
            assert!(
                matches!(s.value, prometheus_parse::Value::Counter(_)),
                "{}",
                s.metric
            );
        }
        let family = s
            .metric
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            types.contains_key(&s.metric) || types.contains_key(family),
            "{} has no TYPE line",
            s.metric
        );
    }
    let methods: std::collections::BTreeSet<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "creativeflow_http_requests_total")
        .filter_map(|s| s.labels.get("method"))
        .collect();
    assert!(methods.contains("_OTHER"), "{methods:?}");
    assert!(methods.iter().all(|m| !m.starts_with("FOO")), "{methods:?}");
    assert_eq!(
        types
            .get("creativeflow_publish_lag_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert!(text.contains("creativeflow_publish_lag_seconds_bucket{le=\"+Inf\"}"));
    assert!(!text.contains("p99"), "no precomputed quantiles");
    let start = scrape
        .samples
        .iter()
        .find(|s| s.metric == "process_start_time_seconds")
        .expect("process_start_time_seconds");
    match start.value {
        prometheus_parse::Value::Gauge(v) => assert!(v > 1.7e9, "{v}"),
        ref other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn a_json_rpc_error_carries_the_same_code_and_details_as_the_rest_envelope() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    let params = json!({"project_id": uuid::Uuid::nil(), "prompt": "x", "format": "banner"});
    let rest = app
        .post_json("/api/v1/generation/create", Some(&token), &params)
        .await;
    let rest = assert_error(rest, 422, "validation_failed").await;
    let rpc = json!({"jsonrpc": "2.0", "method": "call", "id": 3, "params": params});
    let r: Value = app
        .post_json("/api/v1/generation/create", Some(&token), &rpc)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["id"], 3);
    assert_eq!(r["error"]["code"], 422);
    assert_eq!(r["error"]["data"]["code"], "validation_failed");
    assert_eq!(r["error"]["data"]["details"], rest["error"]["details"]);
    assert_eq!(r["error"]["message"], rest["error"]["message"]);
}

/// Signups in flight when the signal arrives all finish (each hashes a password, so they are
/// still running), the process exits 0, and every one of them is in the store.
async fn in_flight_requests_finish_when(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let client = reqwest::Client::new();
    let emails: Vec<String> = (0..12).map(|_| unique_email("stop")).collect();
    let requests: Vec<_> = emails
        .iter()
        .map(|email| {
            let req = client
                .post(format!("{}/api/v1/auth/signup", server.base))
                .json(&json!({"email": email, "password": PASSWORD, "name": "S"}))
                .send();
            tokio::spawn(req)
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    for r in requests {
        let r = r.await.unwrap().expect("an in-flight request is answered");
        assert_eq!(r.status(), 201);
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{signal}: exit {status:?}");
    let o = run(dir.path(), &["verify"]);
    assert!(o.status.success(), "{}", text(&o));
    let store = storage::Store::open(dir.path(), &storage::StoreOptions::default()).unwrap();
    for email in &emails {
        let key = storage::keys::email(&email.to_lowercase());
        assert!(store
            .get::<storage::records::EmailIndex>(&key)
            .unwrap()
            .is_some());
    }
    store.shutdown();
}

#[actix_web::test]
async fn sigterm_stops_gracefully() {
    in_flight_requests_finish_when("TERM").await;
}

#[actix_web::test]
async fn sigint_stops_gracefully_like_sigterm() {
    in_flight_requests_finish_when("INT").await;
}

#[test]
fn user_create_reads_the_password_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "user",
            "create",
            "--email",
            "stdin@example.com",
            "--password-stdin",
            "--role",
            "admin",
        ])
        .env("CREATIVEFLOW_DATA_DIR", dir.path())
        .env("CREATIVEFLOW_AMQP_URL", crate::helpers::NO_BROKER)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long stdin password\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let store = storage::Store::open(dir.path(), &storage::StoreOptions::default()).unwrap();
    let index = store
        .get::<storage::records::EmailIndex>(&storage::keys::email("stdin@example.com"))
        .unwrap()
        .expect("created");
    let user = store
        .get::<storage::records::UserRecord>(&storage::keys::user(index.user_id))
        .unwrap()
        .unwrap();
    assert!(creativeflow::passwords::verify_password_now(
        "a long stdin password",
        &user.password_hash
    ));
    store.shutdown();

    // Both, or neither, is refused before anything is written.
    let o = run(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "x@example.com",
            "--role",
            "user",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
