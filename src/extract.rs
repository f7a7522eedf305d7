//! Request extractors that fail with the SPEC's envelope: JSON bodies (content type, size limit,
//! syntax → 400, a bad field → 422 naming it) and list paging.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use base64::Engine;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// SPEC §3: 1 MiB unless a route says less.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// A JSON body parsed into `T` (which should `deny_unknown_fields`).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = is_json(req);
        let declared = declared_length(req);
        let timeout = body_timeout(req);
        let payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(AppError::UnsupportedMediaType);
            }
            if declared.is_some_and(|n| n > BODY_LIMIT_BYTES) {
                return Err(AppError::PayloadTooLarge {
                    limit_bytes: BODY_LIMIT_BYTES,
                });
            }
            let body = read_body(payload, BODY_LIMIT_BYTES, timeout).await?;
            parse_json(&body).map(ApiJson)
        })
    }
}

pub fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// How long a body may take to arrive (`[http] body_timeout_seconds`).
pub fn body_timeout(req: &HttpRequest) -> std::time::Duration {
    let seconds = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map_or(10, |s| s.config.file.http.body_timeout_seconds);
    std::time::Duration::from_secs(seconds)
}

/// Reads the whole body within `timeout`, refusing it as soon as it passes `limit_bytes`.
pub async fn read_body(
    payload: Payload,
    limit_bytes: usize,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, AppError> {
    tokio::time::timeout(timeout, read_all(payload, limit_bytes))
        .await
        .map_err(|_| AppError::RequestTimeout {
            timeout_s: timeout.as_secs(),
        })?
}

async fn read_all(mut payload: Payload, limit_bytes: usize) -> Result<Vec<u8>, AppError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AppError::MalformedJson(format!("body unreadable: {e}")))?;
        if body.len() + chunk.len() > limit_bytes {
            return Err(AppError::PayloadTooLarge { limit_bytes });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a whole body: one JSON value and nothing after it but whitespace (a second value or
/// trailing garbage is 400, so what was applied is exactly what was sent).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = parse_value(&mut de)?;
    de.end()
        .map_err(|e| AppError::MalformedJson(format!("data after the JSON value: {e}")))?;
    Ok(value)
}

fn parse_value<T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
) -> Result<T, AppError> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                AppError::MalformedJson(inner.to_string())
            }
            serde_json::error::Category::Io => AppError::MalformedJson(inner.to_string()),
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                let field = field_of(&path, &msg);
                AppError::validation(&field, msg)
            }
        }
    })
}

/// Converts an already-parsed JSON value (e.g. JSON-RPC `params`) into `T`; errors name the
/// field as for a body.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, AppError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        AppError::validation(&field_of(&path, &msg), msg)
    })
}

/// The field a serde data error is about: the path, or for missing/unknown fields the name
/// serde quotes in backticks.
fn field_of(path: &str, msg: &str) -> String {
    let quoted = msg.split('`').nth(1);
    match quoted {
        // serde_path_to_error already ends the path with an unknown field's name.
        Some(name) if msg.starts_with("missing field") && path == "." => name.to_string(),
        Some(name) if msg.starts_with("missing field") => format!("{path}.{name}"),
        Some(name) if msg.starts_with("unknown field") && path == "." => name.to_string(),
        _ => path.to_string(),
    }
}

pub const PAGE_LIMIT_DEFAULT: usize = 50;
pub const PAGE_LIMIT_MAX: usize = 200;

/// `?limit=` (1..200, default 50) and `?cursor=` (opaque), plus the filters a route allows.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: usize,
    /// The decoded cursor: the last key of the previous page.
    pub after: Option<Vec<u8>>,
    filters: Vec<(String, String)>,
}

impl Page {
    pub fn from_query(req: &HttpRequest) -> Result<Page, AppError> {
        Self::with_filters(req, &[])
    }

    /// Parses paging and the named filters; any other query parameter is refused (422).
    pub fn with_filters(req: &HttpRequest, allowed: &[&str]) -> Result<Page, AppError> {
        let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| AppError::validation("query", e.to_string()))?
            .into_inner();
        let mut limit = PAGE_LIMIT_DEFAULT;
        let mut after = None;
        let mut filters = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "limit" => {
                    limit = match v.parse::<usize>() {
                        Ok(n) if (1..=PAGE_LIMIT_MAX).contains(&n) => n,
                        _ => return Err(AppError::validation("limit", "limit must be 1..200")),
                    }
                }
                "cursor" if v.is_empty() => {}
                "cursor" => after = Some(decode_cursor(&v, "cursor")?),
                other if allowed.contains(&other) => filters.push((k, v)),
                other => return Err(AppError::validation(other, "unknown query parameter")),
            }
        }
        Ok(Page {
            limit,
            after,
            filters,
        })
    }

    /// A filter's raw value.
    pub fn filter(&self, name: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A filter parsed as a UUID (422 naming it when malformed).
    pub fn uuid_filter(&self, name: &str) -> Result<Option<uuid::Uuid>, AppError> {
        self.filters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| {
                uuid::Uuid::parse_str(v).map_err(|_| AppError::validation(name, "must be a UUID"))
            })
            .transpose()
    }

    /// The cursor of the next page when this page came back full.
    pub fn next_cursor(&self, returned: usize, last_key: Option<&[u8]>) -> Option<String> {
        if returned < self.limit {
            return None;
        }
        last_key.map(encode_cursor)
    }
}

/// The key of a cursor we issued (422 naming `field` otherwise).
pub fn decode_cursor(raw: &str, field: &str) -> Result<Vec<u8>, AppError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.as_bytes())
        .map_err(|_| AppError::validation(field, "the cursor is not one we issued"))
}

/// An opaque cursor for a key.
pub fn encode_cursor(key: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        n: u32,
    }

    #[test]
    fn syntax_errors_are_400_and_field_errors_name_the_field() {
        assert!(matches!(
            parse_json::<Body>(b"{"),
            Err(AppError::MalformedJson(_))
        ));
        match parse_json::<Body>(br#"{"email":"a"}"#) {
            Err(AppError::Validation { field, .. }) => assert_eq!(field, "n"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(br#"{"email":"a","n":"x"}"#) {
            Err(AppError::Validation { field, .. }) => assert_eq!(field, "n"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(br#"{"email":"a","n":1,"extra":2}"#) {
            Err(AppError::Validation { field, .. }) => assert_eq!(field, "extra"),
            other => panic!("{other:?}"),
        }
    }
}
