//! The PayPal webhook end to end with real cryptography: a CA and leaf certificates made in the
//! test, the certificate served from a local HTTP server on an allowed prefix.

use base64::Engine;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509NameBuilder, X509};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

const WEBHOOK_ID: &str = "WH-TEST-1JE4291016473214C";

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn cert(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    days_from: i64,
    days_to: i64,
    ca: bool,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(
        &BigNum::from_u32(rand_serial())
            .unwrap()
            .to_asn1_integer()
            .unwrap(),
    )
    .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now + days_from * 86_400).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + days_to * 86_400).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(KeyUsage::new().critical().key_cert_sign().build().unwrap())
            .unwrap();
    } else {
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .build()
                .unwrap(),
        )
        .unwrap();
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())
        .unwrap();
    b.build()
}

fn rand_serial() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff
}

struct Pki {
    ca_pem: Vec<u8>,
    leaf_key: PKey<Private>,
    other_key: PKey<Private>,
    leaf_pem: Vec<u8>,
    expired_pem: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = key();
    let ca = cert("Test PayPal Root", &ca_key, None, -1, 365, true);
    let leaf_key = key();
    let leaf = cert(
        "messageverificationcerts.sandbox.paypal.com",
        &leaf_key,
        Some((&ca, &ca_key)),
        -1,
        30,
        false,
    );
    let expired = cert(
        "messageverificationcerts.sandbox.paypal.com",
        &leaf_key,
        Some((&ca, &ca_key)),
        -30,
        -1,
        false,
    );
    Pki {
        ca_pem: ca.to_pem().unwrap(),
        other_key: key(),
        leaf_pem: leaf.to_pem().unwrap(),
        expired_pem: expired.to_pem().unwrap(),
        leaf_key,
    }
}

/// Serves `/v1/notifications/certs/{name}` on 127.0.0.1; returns the base URL.
fn serve_certs(certs: Vec<(&'static str, Vec<u8>)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "http://127.0.0.1:{}/v1/notifications/certs/",
        listener.local_addr().unwrap().port()
    );
    let server = actix_web::HttpServer::new(move || {
        let certs = certs.clone();
        actix_web::App::new().route(
            "/v1/notifications/certs/{name}",
            actix_web::web::get().to(move |name: actix_web::web::Path<String>| {
                let found = certs
                    .iter()
                    .find(|(n, _)| *n == name.as_str())
                    .map(|(_, c)| c.clone());
                async move {
                    match found {
                        Some(pem) => actix_web::HttpResponse::Ok().body(pem),
                        None => actix_web::HttpResponse::NotFound().finish(),
                    }
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    base
}

async fn app_with(pki: &Pki, base: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let app = spawn_app_with(&[
        ("CREATIVEFLOW_ENABLE_PAYPAL_PAYMENTS", "true"),
        ("CREATIVEFLOW_PAYPAL_WEBHOOK_ID", WEBHOOK_ID),
        ("CREATIVEFLOW_PAYPAL_CERT_URL_PREFIXES", base),
        ("CREATIVEFLOW_PAYPAL_CA_FILE", ca.to_str().unwrap()),
    ])
    .await;
    (app, dir)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn deliver(
    app: &TestApp,
    body: &[u8],
    signed_body: &[u8],
    key: &PKey<Private>,
    cert_url: &str,
) -> reqwest::Response {
    let transmission_id = uuid::Uuid::new_v4().to_string();
    let time = now_rfc3339();
    let message = format!(
        "{transmission_id}|{time}|{WEBHOOK_ID}|{}",
        crc32fast::hash(signed_body)
    );
    let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
    signer.update(message.as_bytes()).unwrap();
    let sig = base64::engine::general_purpose::STANDARD.encode(signer.sign_to_vec().unwrap());
    app.client
        .post(app.url("/payment/paypal/webhook"))
        .header("content-type", "application/json")
        .header("PAYPAL-TRANSMISSION-ID", transmission_id)
        .header("PAYPAL-TRANSMISSION-TIME", time)
        .header("PAYPAL-TRANSMISSION-SIG", sig)
        .header("PAYPAL-CERT-URL", cert_url)
        .header("PAYPAL-AUTH-ALGO", "SHA256withRSA")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

fn capture(event_id: &str, user: &str, value: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": event_id, "event_type": "PAYMENT.CAPTURE.COMPLETED", "create_time": now_rfc3339(),
        "resource": {"id": format!("CAP-{event_id}"), "status": "COMPLETED", "custom_id": format!("{user}:credits_100"),
            "amount": {"currency_code": "USD", "value": value}}
    }))
    .unwrap()
}

#[actix_web::test]
async fn a_verified_capture_credits_the_pack_once_and_forgeries_change_nothing() {
    let pki = pki();
    let base = serve_certs(vec![
        ("good.pem", pki.leaf_pem.clone()),
        ("expired.pem", pki.expired_pem.clone()),
    ]);
    let (app, _dir) = app_with(&pki, &base).await;
    let (token, user) = app.new_user().await;
    let good_url = format!("{base}good.pem");
    let body = capture("WH-EVT-1", &user, "9.99");

    // Forged or broken deliveries: all 400 invalid_signature, nothing credited.
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    // (sent body, signed body, signing key, cert URL)
    type Delivery<'a> = (&'a [u8], &'a [u8], &'a PKey<Private>, String);
    let cases: Vec<Delivery> = vec![
        (&body, &body, &pki.other_key, good_url.clone()), // wrong key
        (&tampered, &body, &pki.leaf_key, good_url.clone()), // tampered body
        (&body, &body, &pki.leaf_key, format!("{base}expired.pem")), // expired cert
        (
            &body,
            &body,
            &pki.leaf_key,
            "https://evil.example/v1/notifications/certs/good.pem".into(),
        ), // disallowed URL
    ];
    for (sent, signed, key, url) in cases {
        let r = deliver(&app, sent, signed, key, &url).await;
        crate::helpers::assert_error(r, 400, "invalid_signature").await;
    }
    assert_eq!(app.balance(&token).await, 10);

    for _ in 0..3 {
        let r = deliver(&app, &body, &body, &pki.leaf_key, &good_url).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(app.balance(&token).await, 110);
    let invoices: Value = app
        .get("/api/v1/invoices", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(invoices["items"][0]["provider"], "paypal");
    assert_eq!(invoices["items"][0]["amount_minor"], 999);

    // A capture at the wrong price is acknowledged and gives nothing.
    let cheap = capture("WH-EVT-2", &user, "1.00");
    assert_eq!(
        deliver(&app, &cheap, &cheap, &pki.leaf_key, &good_url)
            .await
            .status(),
        200
    );
    assert_eq!(app.balance(&token).await, 110);
    app.assert_verified();
}
