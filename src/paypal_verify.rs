//! Offline verification of PayPal webhook transmissions.
//!
//! PayPal signs every webhook delivery with a certificate it publishes at the
//! URL given in the `PAYPAL-CERT-URL` header. The signed message is
//!
//! ```text
//! {transmission_id}|{transmission_time}|{webhook_id}|{crc32(raw_body) as unsigned decimal}
//! ```
//!
//! and `PAYPAL-TRANSMISSION-SIG` is the base64 of an RSA PKCS#1 v1.5 / SHA-256
//! signature over it (`PAYPAL-AUTH-ALGO: SHA256withRSA`).
//!
//! [`PaypalVerifier::verify`] checks, in this order:
//! 1. the algorithm is `SHA256withRSA` (case-insensitive),
//! 2. the transmission time (RFC 3339) lies within ±tolerance of `now`,
//! 3. the certificate URL passes the prefix allow-list (before any network I/O),
//! 4. the certificate chain (fetched with a 5 s timeout and a 64 KiB cap, or
//!    taken from a bounded URL cache) validates against the system trust store
//!    plus the configured extra roots, including validity dates,
//! 5. the signature verifies with the leaf certificate's RSA public key over the
//!    *raw* body bytes' CRC32.
//!
//! Only certificate chains that validated are cached, and a cached chain is
//! re-validated on every use, so a certificate that expires while cached is
//! rejected (and dropped from the cache).
//!
//! Nothing secret (webhook id, signatures, bodies) is logged.
//!
//! Replay protection beyond the time window (deduplicating on the event `id`)
//! is the caller's job.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Padding;
use openssl::sign::Verifier;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509StoreContext, X509};
use parking_lot::Mutex;

const HDR_TRANSMISSION_ID: &str = "PAYPAL-TRANSMISSION-ID";
const HDR_TRANSMISSION_TIME: &str = "PAYPAL-TRANSMISSION-TIME";
const HDR_TRANSMISSION_SIG: &str = "PAYPAL-TRANSMISSION-SIG";
const HDR_CERT_URL: &str = "PAYPAL-CERT-URL";
const HDR_AUTH_ALGO: &str = "PAYPAL-AUTH-ALGO";

/// The only algorithm PayPal uses (RSA PKCS#1 v1.5 with SHA-256).
const SUPPORTED_ALGO: &str = "SHA256withRSA";
/// Bound on the whole certificate fetch (connect + headers + body).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the certificate response body.
const MAX_CERT_BYTES: usize = 64 * 1024;
/// Bound on the number of certificates in one PEM chain.
const MAX_CHAIN_LEN: usize = 8;
/// Bound on the certificate URL length.
const MAX_URL_LEN: usize = 2048;
/// Smallest RSA modulus accepted for the leaf key.
const MIN_RSA_BITS: u32 = 2048;
/// How much of an attacker-supplied value is echoed back inside an error.
const MAX_ECHO: usize = 200;

/// The five `PAYPAL-*` headers of one webhook transmission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaypalHeaders {
    pub transmission_id: String,
    pub transmission_time: String,
    pub transmission_sig: String,
    pub cert_url: String,
    pub auth_algo: String,
}

impl PaypalHeaders {
    /// Builds the headers from a lookup of header values.
    ///
    /// Header names are case-insensitive: the lookup is asked for the
    /// canonical upper-case name (`PAYPAL-TRANSMISSION-ID`, …) and, failing
    /// that, the lower-case and `Title-Case` spellings, so both a
    /// case-insensitive map (e.g. actix-web's `HeaderMap`) and a plain map
    /// keyed by one spelling work. Values are trimmed of surrounding
    /// whitespace. Returns `Err(VerifyError::MissingHeader(name))` when a
    /// header is absent or empty.
    ///
    /// With actix-web:
    /// `PaypalHeaders::from_lookup(|n| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned))`
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, VerifyError> {
        let header = |name: &'static str| -> Result<String, VerifyError> {
            lookup_header(&get, name).ok_or(VerifyError::MissingHeader(name))
        };
        Ok(PaypalHeaders {
            transmission_id: header(HDR_TRANSMISSION_ID)?,
            transmission_time: header(HDR_TRANSMISSION_TIME)?,
            transmission_sig: header(HDR_TRANSMISSION_SIG)?,
            cert_url: header(HDR_CERT_URL)?,
            auth_algo: header(HDR_AUTH_ALGO)?,
        })
    }
}

fn lookup_header(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let title = title_case(name);
    let found = [name, lower.as_str(), title.as_str()]
        .into_iter()
        .filter_map(get)
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty());
    found
}

/// `PAYPAL-CERT-URL` → `Paypal-Cert-Url`.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut out = String::with_capacity(word.len());
            for (i, c) in word.chars().enumerate() {
                if i == 0 {
                    out.push(c.to_ascii_uppercase());
                } else {
                    out.push(c.to_ascii_lowercase());
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Why a transmission was rejected.
///
/// Attacker-supplied values carried in a variant are truncated and meant to be
/// logged with `{:?}`/`Display` (which quotes them), never interpolated raw.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A required `PAYPAL-*` header is absent or empty.
    #[error("missing PayPal header {0}")]
    MissingHeader(&'static str),
    /// The transmission time is outside the tolerance window, or is not valid RFC 3339.
    #[error("PayPal transmission time is outside the allowed window or malformed")]
    StaleTransmission,
    /// `PAYPAL-AUTH-ALGO` is not `SHA256withRSA`.
    #[error("unsupported PayPal auth algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The certificate URL is not under an allowed prefix (nothing was fetched).
    #[error("PayPal certificate URL not allowed: {0:?}")]
    CertUrlNotAllowed(String),
    /// Fetching the certificate failed (network, timeout, status, size).
    #[error("fetching the PayPal certificate failed: {0}")]
    CertFetch(String),
    /// The certificate chain did not parse or did not validate (untrusted, expired, weak key…).
    #[error("PayPal certificate invalid: {0}")]
    CertInvalid(String),
    /// The signature is not valid base64 or does not verify.
    #[error("PayPal webhook signature does not verify")]
    BadSignature,
    /// Too many certificate fetches in flight: try again (answered 503, so PayPal retries).
    #[error("too many PayPal certificate fetches in flight")]
    Busy,
}

/// A parsed certificate chain as served at a cert URL: leaf first, then intermediates.
struct CertChain {
    leaf: X509,
    intermediates: Vec<X509>,
}

/// Bounded URL → validated chain cache, evicting the oldest insertion.
struct CertCache {
    max: usize,
    map: HashMap<String, Arc<CertChain>>,
    order: VecDeque<String>,
}

impl CertCache {
    fn new(max: usize) -> Self {
        CertCache {
            max,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, url: &str) -> Option<Arc<CertChain>> {
        self.map.get(url).cloned()
    }

    fn insert(&mut self, url: &str, chain: Arc<CertChain>) {
        if self.max == 0 {
            return;
        }
        if let Some(slot) = self.map.get_mut(url) {
            *slot = chain;
            return;
        }
        while self.map.len() >= self.max {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.map.remove(&oldest);
                    tracing::debug!(cert_url = %oldest, "evicted PayPal certificate from cache");
                }
                None => break,
            }
        }
        self.map.insert(url.to_owned(), chain);
        self.order.push_back(url.to_owned());
    }

    fn remove(&mut self, url: &str) {
        if self.map.remove(url).is_some() {
            self.order.retain(|u| u != url);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

type InflightMap = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

/// Removes a URL's single-flight gate when the fetching task finishes or is cancelled.
struct InflightCleanup<'a> {
    map: &'a Mutex<InflightMap>,
    url: &'a str,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for InflightCleanup<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        if map
            .get(self.url)
            .is_some_and(|g| Arc::ptr_eq(g, &self.gate))
        {
            map.remove(self.url);
        }
    }
}

/// Verifies PayPal webhook transmissions offline (no postback to PayPal).
///
/// Cheap to share: wrap it in an `Arc` (or actix `web::Data`) and call
/// [`verify`](Self::verify) concurrently.
pub struct PaypalVerifier {
    webhook_id: String,
    allowed_prefixes: Vec<String>,
    store: X509Store,
    http: reqwest::Client,
    cache: Mutex<CertCache>,
    inflight: Mutex<InflightMap>,
    /// Certificate fetches in flight at most: unauthenticated requests trigger them, so their
    /// number must not grow with the requests (beyond: `Busy`, answered 503).
    fetches: tokio::sync::Semaphore,
    tolerance_s: i64,
}

/// Certificate fetches in flight at once.
pub const CERT_FETCHES_IN_FLIGHT_MAX: usize = 8;

impl fmt::Debug for PaypalVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaypalVerifier")
            .field("webhook_id", &"<redacted>")
            .field("allowed_prefixes", &self.allowed_prefixes)
            .field("cached_certs", &self.cache.lock().map.len())
            .field("tolerance_s", &self.tolerance_s)
            .finish_non_exhaustive()
    }
}

impl PaypalVerifier {
    /// Creates a verifier.
    ///
    /// * `webhook_id`: our configured PayPal webhook id (sandbox and live differ).
    /// * `allowed_prefixes`: a cert URL must start with one of these, e.g.
    ///   `https://api.paypal.com/v1/notifications/certs/` and
    ///   `https://api.sandbox.paypal.com/v1/notifications/certs/`. Each prefix
    ///   must be a canonical `https://` (or, for tests, `http://`) URL that
    ///   includes a path after the host (at least `/`), so that a prefix can
    ///   never match a longer host name.
    /// * `extra_ca_pem`: extra trust roots (PEM, one or more certificates)
    ///   added to the system default trust store.
    /// * `cert_cache_max`: bound of the URL → certificate cache (oldest evicted;
    ///   0 disables caching).
    /// * `tolerance_s`: allowed distance between the transmission time and now
    ///   (300 = ±5 min).
    pub fn new(
        webhook_id: String,
        allowed_prefixes: Vec<String>,
        extra_ca_pem: Option<Vec<u8>>,
        cert_cache_max: usize,
        tolerance_s: i64,
    ) -> Result<PaypalVerifier, String> {
        if webhook_id.is_empty() {
            return Err("PayPal webhook_id is empty".to_owned());
        }
        if webhook_id.trim() != webhook_id
            || webhook_id.contains('|')
            || webhook_id.chars().any(char::is_control)
        {
            return Err(
                "PayPal webhook_id has surrounding whitespace, control characters or '|'"
                    .to_owned(),
            );
        }
        if tolerance_s < 0 {
            return Err(format!(
                "PayPal tolerance_s must not be negative (got {tolerance_s})"
            ));
        }
        if allowed_prefixes.is_empty() {
            return Err("no allowed PayPal cert URL prefixes configured".to_owned());
        }
        for prefix in &allowed_prefixes {
            validate_prefix(prefix)?;
        }

        let mut builder =
            X509StoreBuilder::new().map_err(|e| format!("creating X509 store: {e}"))?;
        builder
            .set_default_paths()
            .map_err(|e| format!("loading system trust roots: {e}"))?;
        if let Some(pem) = extra_ca_pem {
            let certs =
                X509::stack_from_pem(&pem).map_err(|e| format!("parsing extra_ca_pem: {e}"))?;
            if certs.is_empty() {
                return Err("extra_ca_pem holds no certificate".to_owned());
            }
            for cert in certs {
                builder
                    .add_cert(cert)
                    .map_err(|e| format!("adding extra CA certificate: {e}"))?;
            }
        }
        let store = builder.build();

        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            // A redirect could lead outside the allow-list: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "creativeflow-paypal-verify/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| format!("building HTTP client: {e}"))?;

        Ok(PaypalVerifier {
            webhook_id,
            allowed_prefixes,
            store,
            http,
            cache: Mutex::new(CertCache::new(cert_cache_max)),
            inflight: Mutex::new(HashMap::new()),
            fetches: tokio::sync::Semaphore::new(CERT_FETCHES_IN_FLIGHT_MAX),
            tolerance_s,
        })
    }

    /// Verifies one transmission over the RAW body bytes (exactly as received,
    /// never re-serialized JSON). `now_unix`: current unix time in seconds.
    ///
    /// Certificate validity dates are checked against the system clock by OpenSSL.
    pub async fn verify(
        &self,
        headers: &PaypalHeaders,
        raw_body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        if !headers.auth_algo.eq_ignore_ascii_case(SUPPORTED_ALGO) {
            return Err(VerifyError::UnsupportedAlgorithm(echo(&headers.auth_algo)));
        }

        let sent_at =
            parse_rfc3339(&headers.transmission_time).ok_or(VerifyError::StaleTransmission)?;
        let skew = (i128::from(now_unix) - i128::from(sent_at)).abs();
        if skew > i128::from(self.tolerance_s) {
            return Err(VerifyError::StaleTransmission);
        }

        let url = self.check_cert_url(&headers.cert_url)?;
        let key = self.validated_leaf_key(&url).await?;

        let message = signed_message(
            &headers.transmission_id,
            &headers.transmission_time,
            &self.webhook_id,
            raw_body,
        );
        let result = verify_signature(&key, message.as_bytes(), &headers.transmission_sig);
        if result.is_err() {
            tracing::debug!(cert_url = %url, "PayPal webhook signature rejected");
        }
        result
    }

    /// The allow-list check; runs before any network access.
    fn check_cert_url(&self, url: &str) -> Result<reqwest::Url, VerifyError> {
        let refuse = || VerifyError::CertUrlNotAllowed(echo(url));

        if url.is_empty() || url.len() > MAX_URL_LEN {
            return Err(refuse());
        }
        // Printable ASCII only: no whitespace, control or non-ASCII characters
        // that URL parsers strip or normalize.
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse());
        }
        // No userinfo, query, fragment, percent-encoding (hides `..`) or backslashes.
        if url.contains(['@', '?', '#', '%', '\\']) {
            return Err(refuse());
        }
        let after_scheme = if let Some(rest) = url.strip_prefix("https://") {
            rest
        } else if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else {
            return Err(refuse());
        };
        let path = match after_scheme.find('/') {
            Some(i) => &after_scheme[i..],
            None => return Err(refuse()),
        };
        if path.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(refuse());
        }
        let prefix = self
            .allowed_prefixes
            .iter()
            .find(|p| url.len() > p.len() && url.starts_with(p.as_str()))
            .ok_or_else(refuse)?;

        let parsed = reqwest::Url::parse(url).map_err(|_| refuse())?;
        // The URL must already be in canonical form, so what is fetched is
        // exactly the string that matched the prefix.
        if parsed.as_str() != url
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(refuse());
        }
        let scheme_ok = match parsed.scheme() {
            "https" => true,
            "http" => prefix.starts_with("http://"),
            _ => false,
        };
        if !scheme_ok {
            return Err(refuse());
        }
        Ok(parsed)
    }

    /// Returns the leaf public key of the validated chain for `url`, from the
    /// cache or freshly fetched. Only validated chains enter the cache.
    async fn validated_leaf_key(&self, url: &reqwest::Url) -> Result<PKey<Public>, VerifyError> {
        let key = url.as_str();
        if let Some(key_from_cache) = self.try_cached(key) {
            return key_from_cache;
        }

        // Single-flight per URL: concurrent first requests for one URL fetch it once.
        let gate = self
            .inflight
            .lock()
            .entry(key.to_owned())
            .or_default()
            .clone();
        let _cleanup = InflightCleanup {
            map: &self.inflight,
            url: key,
            gate: gate.clone(),
        };
        let _permit = gate.lock().await;

        if let Some(key_from_cache) = self.try_cached(key) {
            return key_from_cache;
        }

        tracing::debug!(cert_url = %url, "fetching PayPal certificate");
        let pem = self.fetch_pem(url).await?;
        let chain = parse_chain(&pem)?;
        let public_key = self.validate_chain(&chain).inspect_err(|e| {
            tracing::warn!(cert_url = %url, error = %e, "PayPal certificate rejected");
        })?;
        self.cache.lock().insert(key, Arc::new(chain));
        Ok(public_key)
    }

    /// `Some(result)` when `url` is cached; a cached chain that no longer
    /// validates (e.g. expired) is dropped from the cache.
    fn try_cached(&self, url: &str) -> Option<Result<PKey<Public>, VerifyError>> {
        let chain = self.cache.lock().get(url)?;
        let result = self.validate_chain(&chain);
        if let Err(e) = &result {
            tracing::warn!(cert_url = %url, error = %e, "cached PayPal certificate no longer valid");
            self.cache.lock().remove(url);
        }
        Some(result)
    }

    async fn fetch_pem(&self, url: &reqwest::Url) -> Result<Vec<u8>, VerifyError> {
        let _permit = self.fetches.try_acquire().map_err(|_| VerifyError::Busy)?;
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_pem_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(VerifyError::CertFetch("timed out".to_owned())),
        }
    }

    async fn fetch_pem_inner(&self, url: &reqwest::Url) -> Result<Vec<u8>, VerifyError> {
        let fetch_err = |e: reqwest::Error| {
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "request failed"
            };
            VerifyError::CertFetch(format!("{what}: {}", e.without_url()))
        };
        let mut response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/x-pem-file, */*")
            .send()
            .await
            .map_err(fetch_err)?;
        let status = response.status();
        if !status.is_success() {
            return Err(VerifyError::CertFetch(format!("HTTP status {status}")));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_CERT_BYTES as u64)
        {
            return Err(VerifyError::CertFetch(format!(
                "certificate larger than {MAX_CERT_BYTES} bytes"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_err)? {
            if body.len() + chunk.len() > MAX_CERT_BYTES {
                return Err(VerifyError::CertFetch(format!(
                    "certificate larger than {MAX_CERT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Validates the chain against the trust store (signatures, validity
    /// dates, CA constraints) and returns the leaf's RSA public key.
    fn validate_chain(&self, chain: &CertChain) -> Result<PKey<Public>, VerifyError> {
        let ssl_err = |what: &str, e: openssl::error::ErrorStack| {
            VerifyError::CertInvalid(format!("{what}: {e}"))
        };
        let mut untrusted = Stack::new().map_err(|e| ssl_err("allocating chain", e))?;
        for cert in &chain.intermediates {
            untrusted
                .push(cert.clone())
                .map_err(|e| ssl_err("building chain", e))?;
        }
        let mut ctx = X509StoreContext::new().map_err(|e| ssl_err("allocating context", e))?;
        let failure = ctx
            .init(&self.store, &chain.leaf, &untrusted, |c| {
                Ok(if c.verify_cert()? {
                    None
                } else {
                    Some(format!(
                        "{} (depth {})",
                        c.error().error_string(),
                        c.error_depth()
                    ))
                })
            })
            .map_err(|e| ssl_err("chain verification error", e))?;
        if let Some(reason) = failure {
            return Err(VerifyError::CertInvalid(reason));
        }
        // PayPal's own SDK also pins the leaf's name: a certificate any public CA issued for
        // another name must not sign PayPal transmissions.
        let cn = chain
            .leaf
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok());
        if !cn.as_deref().is_some_and(leaf_name_ok) {
            return Err(VerifyError::CertInvalid(format!(
                "leaf certificate name {cn:?} is not a PayPal message verification name"
            )));
        }

        let public_key = chain
            .leaf
            .public_key()
            .map_err(|e| ssl_err("reading leaf public key", e))?;
        if public_key.id() != Id::RSA {
            return Err(VerifyError::CertInvalid(
                "leaf key is not an RSA key".to_owned(),
            ));
        }
        if public_key.bits() < MIN_RSA_BITS {
            return Err(VerifyError::CertInvalid(format!(
                "leaf RSA key has {} bits, fewer than {MIN_RSA_BITS}",
                public_key.bits()
            )));
        }
        Ok(public_key)
    }
}

/// `messageverificationcerts…paypal.com`, as PayPal's Java SDK requires of the signing leaf.
fn leaf_name_ok(cn: &str) -> bool {
    cn.starts_with("messageverificationcerts") && cn.ends_with(".paypal.com")
}

#[cfg(test)]
mod leaf_name_tests {
    #[test]
    fn only_paypal_message_verification_names_sign() {
        assert!(super::leaf_name_ok("messageverificationcerts.paypal.com"));
        assert!(super::leaf_name_ok(
            "messageverificationcerts.sandbox.paypal.com"
        ));
        for bad in [
            "evil.example.com",
            "messageverificationcerts.paypal.com.evil.net",
            "api.paypal.com",
        ] {
            assert!(!super::leaf_name_ok(bad), "{bad}");
        }
    }
}

/// The prefix rules enforced at construction time.
fn validate_prefix(prefix: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("allowed PayPal cert URL prefix {prefix:?}: {why}"));
    let after_scheme = if let Some(rest) = prefix.strip_prefix("https://") {
        rest
    } else if let Some(rest) = prefix.strip_prefix("http://") {
        rest
    } else {
        return bad("must start with https:// (or http:// for tests)");
    };
    if !prefix.bytes().all(|b| b.is_ascii_graphic()) || prefix.contains(['@', '?', '#', '%', '\\'])
    {
        return bad("must not contain whitespace, non-ASCII, '@', '?', '#', '%' or '\\'");
    }
    let path = match after_scheme.find('/') {
        Some(0) => return bad("has no host"),
        Some(i) => &after_scheme[i..],
        None => return bad("must include a path after the host (at least a trailing '/')"),
    };
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return bad("must not contain '.' or '..' path segments");
    }
    match reqwest::Url::parse(prefix) {
        Ok(parsed) if parsed.as_str() == prefix => Ok(()),
        Ok(parsed) => bad(&format!(
            "is not canonical (canonical form: {:?})",
            parsed.as_str()
        )),
        Err(e) => bad(&format!("is not a valid URL: {e}")),
    }
}

fn parse_chain(pem: &[u8]) -> Result<CertChain, VerifyError> {
    let mut certs = X509::stack_from_pem(pem)
        .map_err(|e| VerifyError::CertInvalid(format!("PEM does not parse: {e}")))?;
    if certs.is_empty() {
        return Err(VerifyError::CertInvalid("no certificate in PEM".to_owned()));
    }
    if certs.len() > MAX_CHAIN_LEN {
        return Err(VerifyError::CertInvalid(format!(
            "chain longer than {MAX_CHAIN_LEN} certificates"
        )));
    }
    let leaf = certs.remove(0);
    Ok(CertChain {
        leaf,
        intermediates: certs,
    })
}

/// The exact string PayPal signs; the CRC32 of the raw body is an unsigned decimal.
fn signed_message(
    transmission_id: &str,
    transmission_time: &str,
    webhook_id: &str,
    raw_body: &[u8],
) -> String {
    format!(
        "{}|{}|{}|{}",
        transmission_id,
        transmission_time,
        webhook_id,
        crc32fast::hash(raw_body)
    )
}

fn verify_signature(key: &PKey<Public>, message: &[u8], sig_b64: &str) -> Result<(), VerifyError> {
    let signature = base64::engine::general_purpose::STANDARD
        .decode(sig_b64)
        .map_err(|_| VerifyError::BadSignature)?;
    if signature.is_empty() {
        return Err(VerifyError::BadSignature);
    }
    let mut verifier =
        Verifier::new(MessageDigest::sha256(), key).map_err(|_| VerifyError::BadSignature)?;
    verifier
        .set_rsa_padding(Padding::PKCS1)
        .map_err(|_| VerifyError::BadSignature)?;
    verifier
        .update(message)
        .map_err(|_| VerifyError::BadSignature)?;
    match verifier.verify(&signature) {
        Ok(true) => Ok(()),
        _ => Err(VerifyError::BadSignature),
    }
}

/// Truncates an attacker-supplied value before it goes into an error.
fn echo(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// An RFC 3339 timestamp (`2026-11-25T17:10:19Z`, optional fractional seconds, `Z` or
/// `±HH:MM` offset) as unix seconds (fraction truncated).
fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::pkey::Private;
    use openssl::rsa::Rsa;
    use openssl::sign::Signer;
    use openssl::x509::extension::{
        AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
    };
    use openssl::x509::{X509Builder, X509NameBuilder};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const WEBHOOK_ID: &str = "1JE4291016473214C";
    const TX_ID: &str = "69cd13f0-d67a-11e5-baa3-778b53f4ae55";
    /// PayPal's format; 1795626619 per `python3 -c "import datetime; ..."`.
    const TX_TIME: &str = "2026-11-25T17:10:19Z";
    const TX_UNIX: i64 = 1_795_626_619;
    const BODY: &[u8] = br#"{"id":"WH-2WR32451HC0233532-67976317FL4543714","event_type":"PAYMENT.CAPTURE.COMPLETED"}"#;
    /// `python3 -c "import zlib; print(zlib.crc32(b'<BODY>'))"` (above 2^31: proves unsigned).
    const BODY_CRC32: u32 = 3_863_852_516;
    const CERTS_PATH: &str = "/v1/notifications/certs/";

    // ---------- PKI fixture ----------

    struct Pki {
        /// Trust roots handed to the verifier: a decoy root followed by the real test root.
        trusted_roots_pem: Vec<u8>,
        leaf_key: PKey<Private>,
        leaf_pem: Vec<u8>,
        expired_key: PKey<Private>,
        expired_pem: Vec<u8>,
        rogue_key: PKey<Private>,
        rogue_pem: Vec<u8>,
        /// Leaf issued by an intermediate under the trusted root.
        chained_key: PKey<Private>,
        /// Leaf first, then the intermediate.
        chained_full_pem: Vec<u8>,
        /// The same leaf without its intermediate.
        chained_leaf_only_pem: Vec<u8>,
        /// A key with no certificate at all.
        stray_key: PKey<Private>,
    }

    fn unix_now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn rsa_key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    // `time_t` is i64 on 64-bit Unix but not everywhere.
    #[allow(clippy::useless_conversion)]
    fn asn1_time(unix: i64) -> Asn1Time {
        Asn1Time::from_unix(unix.try_into().unwrap()).unwrap()
    }

    /// A v3 certificate builder with subject `cn`; also returns the subject name.
    fn cert_builder(
        cn: &str,
        key: &PKey<Private>,
        not_before: i64,
        not_after: i64,
    ) -> (X509Builder, openssl::x509::X509Name) {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("O", "CreativeFlow test").unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut serial = BigNum::new().unwrap();
        serial.rand(120, MsbOption::MAYBE_ZERO, false).unwrap();

        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&asn1_time(not_before)).unwrap();
        b.set_not_after(&asn1_time(not_after)).unwrap();
        (b, name)
    }

    /// A CA: self-signed root when `issuer` is None, else an intermediate.
    fn make_ca(cn: &str, issuer: Option<(&X509, &PKey<Private>)>) -> (X509, PKey<Private>) {
        let key = rsa_key();
        let now = unix_now();
        let (mut b, own_name) = cert_builder(cn, &key, now - 86_400, now + 365 * 86_400);
        match issuer {
            Some((issuer_cert, _)) => b.set_issuer_name(issuer_cert.subject_name()).unwrap(),
            None => b.set_issuer_name(&own_name).unwrap(),
        }
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(ski).unwrap();
        if let Some((issuer_cert, _)) = issuer {
            let aki = AuthorityKeyIdentifier::new()
                .keyid(false)
                .build(&b.x509v3_context(Some(issuer_cert), None))
                .unwrap();
            b.append_extension(aki).unwrap();
        }
        let signing_key = issuer.map_or(&key, |(_, k)| k);
        b.sign(signing_key, MessageDigest::sha256()).unwrap();
        (b.build(), key)
    }

    fn make_leaf(
        issuer: &X509,
        issuer_key: &PKey<Private>,
        not_before: i64,
        not_after: i64,
    ) -> (X509, PKey<Private>) {
        let key = rsa_key();
        let (mut b, _) = cert_builder(
            "messageverificationcerts.sandbox.paypal.com",
            &key,
            not_before,
            not_after,
        );
        b.set_issuer_name(issuer.subject_name()).unwrap();
        b.append_extension(BasicConstraints::new().critical().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .build()
                .unwrap(),
        )
        .unwrap();
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(Some(issuer), None))
            .unwrap();
        b.append_extension(ski).unwrap();
        let aki = AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&b.x509v3_context(Some(issuer), None))
            .unwrap();
        b.append_extension(aki).unwrap();
        b.sign(issuer_key, MessageDigest::sha256()).unwrap();
        (b.build(), key)
    }

    fn pki() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| {
            let now = unix_now();
            let (root, root_key) = make_ca("CreativeFlow Test Root", None);
            let (decoy_root, _) = make_ca("CreativeFlow Decoy Root", None);
            let (untrusted_root, untrusted_key) = make_ca("Untrusted Root", None);
            let (inter, inter_key) =
                make_ca("CreativeFlow Test Intermediate", Some((&root, &root_key)));

            let (leaf, leaf_key) = make_leaf(&root, &root_key, now - 3600, now + 30 * 86_400);
            let (expired, expired_key) =
                make_leaf(&root, &root_key, now - 30 * 86_400, now - 86_400);
            let (rogue, rogue_key) = make_leaf(
                &untrusted_root,
                &untrusted_key,
                now - 3600,
                now + 30 * 86_400,
            );
            let (chained, chained_key) =
                make_leaf(&inter, &inter_key, now - 3600, now + 30 * 86_400);

            let mut trusted_roots_pem = decoy_root.to_pem().unwrap();
            trusted_roots_pem.extend(root.to_pem().unwrap());
            let mut chained_full_pem = chained.to_pem().unwrap();
            chained_full_pem.extend(inter.to_pem().unwrap());

            Pki {
                trusted_roots_pem,
                leaf_key,
                leaf_pem: leaf.to_pem().unwrap(),
                expired_key,
                expired_pem: expired.to_pem().unwrap(),
                rogue_key,
                rogue_pem: rogue.to_pem().unwrap(),
                chained_key,
                chained_full_pem,
                chained_leaf_only_pem: chained.to_pem().unwrap(),
                stray_key: rsa_key(),
            }
        })
    }

    // ---------- tiny HTTP server ----------

    #[derive(Clone)]
    enum Reply {
        /// 200 with Content-Length.
        Body(Vec<u8>),
        /// 200 without Content-Length, body delimited by connection close.
        Unsized(Vec<u8>),
        /// 302 to the given location.
        Redirect(String),
        /// Never answers.
        Hang,
    }

    struct TestServer {
        port: u16,
        hits: Arc<AtomicUsize>,
        paths: Arc<Mutex<Vec<String>>>,
    }

    impl TestServer {
        fn url(&self, name: &str) -> String {
            format!("http://127.0.0.1:{}{CERTS_PATH}{name}", self.port)
        }
        fn prefix(&self) -> String {
            format!("http://127.0.0.1:{}{CERTS_PATH}", self.port)
        }
        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// Serves `routes` (path → reply); everything else is 404. Counts every request.
    async fn serve(routes: Vec<(&str, Reply)>) -> TestServer {
        let routes: Arc<HashMap<String, Reply>> = Arc::new(
            routes
                .into_iter()
                .map(|(path, reply)| (path.to_owned(), reply))
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (hits2, paths2) = (hits.clone(), paths.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (routes, hits, paths) = (routes.clone(), hits2.clone(), paths2.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let mut parts = head.lines().next().unwrap_or("").split(' ');
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    hits.fetch_add(1, Ordering::SeqCst);
                    paths.lock().push(path.to_owned());
                    let reply = if method == "GET" {
                        routes.get(path).cloned()
                    } else {
                        None
                    };
                    let response = match reply {
                        Some(Reply::Body(body)) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend(body);
                            r
                        }
                        Some(Reply::Unsized(body)) => {
                            let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\nConnection: close\r\n\r\n".to_vec();
                            r.extend(body);
                            r
                        }
                        Some(Reply::Redirect(location)) => format!(
                            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .into_bytes(),
                        Some(Reply::Hang) => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = sock.write_all(&response).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TestServer { port, hits, paths }
    }

    fn cert_path(name: &str) -> String {
        format!("{CERTS_PATH}{name}")
    }

    // ---------- helpers ----------

    fn verifier_for(server: &TestServer, cache_max: usize) -> PaypalVerifier {
        PaypalVerifier::new(
            WEBHOOK_ID.to_owned(),
            vec![server.prefix()],
            Some(pki().trusted_roots_pem.clone()),
            cache_max,
            300,
        )
        .unwrap()
    }

    fn sign(key: &PKey<Private>, message: &str) -> String {
        let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
        signer.update(message.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(signer.sign_to_vec().unwrap())
    }

    /// Headers for BODY, signed by `key` for our webhook id.
    fn signed_headers(key: &PKey<Private>, cert_url: String) -> PaypalHeaders {
        let message = format!("{TX_ID}|{TX_TIME}|{WEBHOOK_ID}|{BODY_CRC32}");
        PaypalHeaders {
            transmission_id: TX_ID.to_owned(),
            transmission_time: TX_TIME.to_owned(),
            transmission_sig: sign(key, &message),
            cert_url,
            auth_algo: "SHA256withRSA".to_owned(),
        }
    }

    fn now() -> i64 {
        TX_UNIX + 42
    }

    // ---------- tests ----------

    #[test]
    fn fixed_vector_signed_message_uses_unsigned_decimal_crc32() {
        assert_eq!(crc32fast::hash(BODY), BODY_CRC32);
        assert_eq!(
            signed_message(TX_ID, TX_TIME, WEBHOOK_ID, BODY),
            "69cd13f0-d67a-11e5-baa3-778b53f4ae55|2026-11-25T17:10:19Z|1JE4291016473214C|3863852516"
        );
        // python3 -c "import zlib; print(zlib.crc32(b'hello paypal'))" -> 380000457
        assert_eq!(
            signed_message("a", "b", "c", b"hello paypal"),
            "a|b|c|380000457"
        );
        // CRC32 of the empty body is 0.
        assert_eq!(signed_message("a", "b", "c", b""), "a|b|c|0");
    }

    #[test]
    fn rfc3339_parsing_matches_python() {
        // Values from python3 datetime.fromisoformat(...).timestamp().
        let cases = [
            ("2026-11-25T17:10:19Z", 1_795_626_619),
            ("2026-11-25T17:10:19.123456Z", 1_795_626_619),
            ("2026-11-25T19:10:19+02:00", 1_795_626_619),
            ("2026-11-25T12:40:19-04:30", 1_795_626_619),
            ("2026-11-25t17:10:19z", 1_795_626_619),
            ("2024-02-29T00:00:00Z", 1_709_164_800),
            ("1970-01-01T00:00:00Z", 0),
            ("2000-03-01T23:59:59Z", 951_955_199),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_rfc3339(input), Some(expected), "{input}");
        }
        for bad in [
            "",
            "2026-11-25",
            "2026-11-25T17:10:19",
            "2026-11-25T17:10:19.Z",
            "2026-11-25T17:10:19+0200",
            "2026-11-25T17:10:19Zjunk",
            "2026-13-25T17:10:19Z",
            "2025-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T17:60:00Z",
            "2026-11-25T17:10:19+24:00",
            "+026-11-25T17:10:19Z",
            "2026-11-25T17:10:1Z",
            "Wed, 25 Nov 2026 17:10:19 GMT",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn good_signature_passes_then_cache_is_used() {
        let p = pki();
        let server = serve(vec![(&cert_path("leaf"), Reply::Body(p.leaf_pem.clone()))]).await;
        let v = verifier_for(&server, 16);
        let h = signed_headers(&p.leaf_key, server.url("leaf"));

        v.verify(&h, BODY, now()).await.unwrap();
        assert_eq!(server.hits(), 1);
        // Second and third verification of the same URL come from the cache.
        v.verify(&h, BODY, now()).await.unwrap();
        v.verify(&h, BODY, now() - 100).await.unwrap();
        assert_eq!(server.hits(), 1);
        assert_eq!(server.paths.lock().as_slice(), [cert_path("leaf")]);
    }

    #[tokio::test]
    async fn signature_by_another_key_is_rejected() {
        let p = pki();
        let server = serve(vec![(&cert_path("leaf"), Reply::Body(p.leaf_pem.clone()))]).await;
        let v = verifier_for(&server, 16);
        let h = signed_headers(&p.stray_key, server.url("leaf"));
        assert!(matches!(
            v.verify(&h, BODY, now()).await,
            Err(VerifyError::BadSignature)
        ));
    }

    #[tokio::test]
    async fn tampered_body_and_other_fields_are_rejected() {
        let p = pki();
        let server = serve(vec![(&cert_path("leaf"), Reply::Body(p.leaf_pem.clone()))]).await;
        let v = verifier_for(&server, 16);
        let good = signed_headers(&p.leaf_key, server.url("leaf"));
        v.verify(&good, BODY, now()).await.unwrap();

        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert!(matches!(
            v.verify(&good, &tampered, now()).await,
            Err(VerifyError::BadSignature)
        ));

        let mut other_id = good.clone();
        other_id.transmission_id = "69cd13f0-d67a-11e5-baa3-778b53f4ae56".to_owned();
        assert!(matches!(
            v.verify(&other_id, BODY, now()).await,
            Err(VerifyError::BadSignature)
        ));

        // Same instant, different spelling: the signed string is the header text.
        let mut other_time = good.clone();
        other_time.transmission_time = "2026-11-25T17:10:19.000Z".to_owned();
        assert!(matches!(
            v.verify(&other_time, BODY, now()).await,
            Err(VerifyError::BadSignature)
        ));

        // Signed for another webhook id (e.g. sandbox vs live mix-up).
        let mut other_hook = good.clone();
        other_hook.transmission_sig = sign(
            &p.leaf_key,
            &format!("{TX_ID}|{TX_TIME}|SOMEOTHERHOOK|{BODY_CRC32}"),
        );
        assert!(matches!(
            v.verify(&other_hook, BODY, now()).await,
            Err(VerifyError::BadSignature)
        ));

        // CRC as a signed integer or hex is wrong.
        let mut signed_crc = good.clone();
        signed_crc.transmission_sig = sign(
            &p.leaf_key,
            &format!("{TX_ID}|{TX_TIME}|{WEBHOOK_ID}|{}", BODY_CRC32 as i32),
        );
        assert!(matches!(
            v.verify(&signed_crc, BODY, now()).await,
            Err(VerifyError::BadSignature)
        ));

        for sig in ["not base64!!", "", "AAAA"] {
            let mut bad_sig = good.clone();
            bad_sig.transmission_sig = sig.to_owned();
            assert!(matches!(
                v.verify(&bad_sig, BODY, now()).await,
                Err(VerifyError::BadSignature)
            ));
        }
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn url_outside_allowed_prefixes_is_refused_without_fetching() {
        let p = pki();
        let leaf = Reply::Body(p.leaf_pem.clone());
        let server = serve(vec![
            (&cert_path("leaf"), leaf.clone()),
            ("/evil/leaf", leaf.clone()),
            ("/v1/notifications/certsX/leaf", leaf),
        ])
        .await;
        let v = verifier_for(&server, 16);
        let port = server.port;
        let bad_urls = [
            format!("http://127.0.0.1:{port}/evil/leaf"),
            format!("http://127.0.0.1:{port}/v1/notifications/certsX/leaf"),
            format!("http://127.0.0.1:{port}/v1/notifications/certs/../../../evil/leaf"),
            format!("http://127.0.0.1:{port}/v1/notifications/certs/./leaf"),
            format!(
                "http://127.0.0.1:{port}/v1/notifications/certs/%2e%2e/%2e%2e/%2e%2e/evil/leaf"
            ),
            format!("http://127.0.0.1:{port}/v1/notifications/certs/leaf?x=/evil/leaf"),
            format!("http://127.0.0.1:{port}/v1/notifications/certs/leaf#frag"),
            format!("http://127.0.0.1:{port}/v1/notifications/certs/..\\..\\..\\evil\\leaf"),
            format!("http://127.0.0.1:{port}/v1/notifications/certs/le af"),
            format!("http://127.0.0.1:{port}/v1/notifications/certs/"),
            format!("http://user@127.0.0.1:{port}/v1/notifications/certs/leaf"),
            format!("http://127.0.0.1:{port}@127.0.0.1:{port}/v1/notifications/certs/leaf"),
            format!("https://127.0.0.1:{port}/v1/notifications/certs/leaf"),
            format!("HTTP://127.0.0.1:{port}/v1/notifications/certs/leaf"),
            format!("http://localhost:{port}/v1/notifications/certs/leaf"),
            format!(
                "http://127.0.0.1:{}/v1/notifications/certs/leaf",
                port.wrapping_add(1)
            ),
            "file:///etc/passwd".to_owned(),
            String::new(),
        ];
        for url in bad_urls {
            let h = signed_headers(&p.leaf_key, url.clone());
            let result = v.verify(&h, BODY, now()).await;
            assert!(
                matches!(result, Err(VerifyError::CertUrlNotAllowed(_))),
                "{url}: {result:?}"
            );
        }
        assert_eq!(server.hits(), 0, "no request may reach the server");

        // Control: the allowed URL is fetched.
        v.verify(
            &signed_headers(&p.leaf_key, server.url("leaf")),
            BODY,
            now(),
        )
        .await
        .unwrap();
        assert_eq!(server.hits(), 1);
    }

    #[test]
    fn production_prefixes_are_matched_exactly() {
        let v = PaypalVerifier::new(
            WEBHOOK_ID.to_owned(),
            vec![
                "https://api.paypal.com/v1/notifications/certs/".to_owned(),
                "https://api.sandbox.paypal.com/v1/notifications/certs/".to_owned(),
            ],
            None,
            16,
            300,
        )
        .unwrap();
        for good in [
            "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
            "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-bc4f6e3c",
        ] {
            assert!(v.check_cert_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
            "https://evil.example/https://api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com@evil.example/v1/notifications/certs/CERT-1",
            "https://API.PAYPAL.COM/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:443/v1/notifications/certs/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/CERT-1\t",
            "https://api.paypal.com/v1/notifications/certs/CERT-1\n",
            "https://api.paypal.com/v1/notifications/certs/../../../evil",
            "https://api.paypal.com/v1/notifications/certs/CERT-1?redirect=https://evil",
            "https://api.paypal.com/v1/notifications/certs/CERT-\u{0131}",
            "https://api.paypal.com/v1/notifications/",
        ] {
            assert!(
                matches!(
                    v.check_cert_url(bad),
                    Err(VerifyError::CertUrlNotAllowed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn expired_certificate_is_invalid_and_not_cached() {
        let p = pki();
        let server = serve(vec![(
            &cert_path("expired"),
            Reply::Body(p.expired_pem.clone()),
        )])
        .await;
        let v = verifier_for(&server, 16);
        let h = signed_headers(&p.expired_key, server.url("expired"));
        for attempt in 1..=2 {
            match v.verify(&h, BODY, now()).await {
                Err(VerifyError::CertInvalid(reason)) => {
                    assert!(reason.contains("expired"), "{reason}")
                }
                other => panic!("expected CertInvalid, got {other:?}"),
            }
            // Not cached: every attempt fetches again.
            assert_eq!(server.hits(), attempt);
        }
        assert_eq!(v.cache.lock().len(), 0);
    }

    #[tokio::test]
    async fn certificate_from_untrusted_ca_is_invalid() {
        let p = pki();
        let server = serve(vec![(
            &cert_path("rogue"),
            Reply::Body(p.rogue_pem.clone()),
        )])
        .await;
        let v = verifier_for(&server, 16);
        let h = signed_headers(&p.rogue_key, server.url("rogue"));
        assert!(matches!(
            v.verify(&h, BODY, now()).await,
            Err(VerifyError::CertInvalid(_))
        ));
        assert_eq!(v.cache.lock().len(), 0);

        // Without the extra root, our own test leaf is untrusted too (system roots only).
        let server2 = serve(vec![(&cert_path("leaf"), Reply::Body(p.leaf_pem.clone()))]).await;
        let system_only =
            PaypalVerifier::new(WEBHOOK_ID.to_owned(), vec![server2.prefix()], None, 16, 300)
                .unwrap();
        assert!(matches!(
            system_only
                .verify(
                    &signed_headers(&p.leaf_key, server2.url("leaf")),
                    BODY,
                    now()
                )
                .await,
            Err(VerifyError::CertInvalid(_))
        ));
    }

    #[tokio::test]
    async fn chain_with_intermediate_validates_and_needs_the_intermediate() {
        let p = pki();
        let server = serve(vec![
            (&cert_path("chain"), Reply::Body(p.chained_full_pem.clone())),
            (
                &cert_path("leafonly"),
                Reply::Body(p.chained_leaf_only_pem.clone()),
            ),
        ])
        .await;
        let v = verifier_for(&server, 16);
        v.verify(
            &signed_headers(&p.chained_key, server.url("chain")),
            BODY,
            now(),
        )
        .await
        .unwrap();
        assert!(matches!(
            v.verify(
                &signed_headers(&p.chained_key, server.url("leafonly")),
                BODY,
                now()
            )
            .await,
            Err(VerifyError::CertInvalid(_))
        ));
    }

    #[tokio::test]
    async fn stale_or_future_transmission_is_rejected_before_fetching() {
        let p = pki();
        let server = serve(vec![(&cert_path("leaf"), Reply::Body(p.leaf_pem.clone()))]).await;
        let v = verifier_for(&server, 16);
        let h = signed_headers(&p.leaf_key, server.url("leaf"));
        for now_unix in [
            TX_UNIX + 301,
            TX_UNIX - 301,
            TX_UNIX + 86_400,
            i64::MIN,
            i64::MAX,
        ] {
            assert!(matches!(
                v.verify(&h, BODY, now_unix).await,
                Err(VerifyError::StaleTransmission)
            ));
        }
        let mut garbled = h.clone();
        garbled.transmission_time = "yesterday".to_owned();
        assert!(matches!(
            v.verify(&garbled, BODY, TX_UNIX).await,
            Err(VerifyError::StaleTransmission)
        ));
        assert_eq!(server.hits(), 0);
        // The window edges are inclusive.
        v.verify(&h, BODY, TX_UNIX + 300).await.unwrap();
        v.verify(&h, BODY, TX_UNIX - 300).await.unwrap();
    }

    #[tokio::test]
    async fn wrong_algorithm_is_rejected_before_fetching() {
        let p = pki();
        let server = serve(vec![(&cert_path("leaf"), Reply::Body(p.leaf_pem.clone()))]).await;
        let v = verifier_for(&server, 16);
        for algo in ["SHA1withRSA", "HmacSHA256", "SHA256withECDSA", "none", ""] {
            let mut h = signed_headers(&p.leaf_key, server.url("leaf"));
            h.auth_algo = algo.to_owned();
            assert!(matches!(
                v.verify(&h, BODY, now()).await,
                Err(VerifyError::UnsupportedAlgorithm(a)) if a == algo
            ));
        }
        assert_eq!(server.hits(), 0);
        let mut h = signed_headers(&p.leaf_key, server.url("leaf"));
        h.auth_algo = "sha256WITHrsa".to_owned();
        v.verify(&h, BODY, now()).await.unwrap();
    }

    #[test]
    fn headers_from_lookup() {
        let full: HashMap<String, String> = [
            ("paypal-transmission-id", TX_ID),
            ("paypal-transmission-time", TX_TIME),
            ("paypal-transmission-sig", "c2ln"),
            (
                "paypal-cert-url",
                "https://api.paypal.com/v1/notifications/certs/CERT-1",
            ),
            ("paypal-auth-algo", "SHA256withRSA"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

        // A lookup keyed by lower-case names.
        let h = PaypalHeaders::from_lookup(|n| full.get(n).cloned()).unwrap();
        assert_eq!(h.transmission_id, TX_ID);
        assert_eq!(h.transmission_time, TX_TIME);
        assert_eq!(h.transmission_sig, "c2ln");
        assert_eq!(
            h.cert_url,
            "https://api.paypal.com/v1/notifications/certs/CERT-1"
        );
        assert_eq!(h.auth_algo, "SHA256withRSA");

        // A lookup keyed by Title-Case names, and a case-insensitive one.
        let title: HashMap<String, String> = full
            .iter()
            .map(|(k, v)| (title_case(k), v.clone()))
            .collect();
        assert_eq!(
            PaypalHeaders::from_lookup(|n| title.get(n).cloned()).unwrap(),
            h
        );
        let ci = |n: &str| full.get(&n.to_ascii_lowercase()).cloned();
        assert_eq!(PaypalHeaders::from_lookup(ci).unwrap(), h);

        let names = [
            ("paypal-transmission-id", "PAYPAL-TRANSMISSION-ID"),
            ("paypal-transmission-time", "PAYPAL-TRANSMISSION-TIME"),
            ("paypal-transmission-sig", "PAYPAL-TRANSMISSION-SIG"),
            ("paypal-cert-url", "PAYPAL-CERT-URL"),
            ("paypal-auth-algo", "PAYPAL-AUTH-ALGO"),
        ];
        for (key, canonical) in names {
            let mut missing = full.clone();
            missing.remove(key);
            assert!(matches!(
                PaypalHeaders::from_lookup(|n| missing.get(n).cloned()),
                Err(VerifyError::MissingHeader(name)) if name == canonical
            ));
            let mut empty = full.clone();
            empty.insert(key.to_owned(), "  ".to_owned());
            assert!(matches!(
                PaypalHeaders::from_lookup(|n| empty.get(n).cloned()),
                Err(VerifyError::MissingHeader(name)) if name == canonical
            ));
        }
    }

    #[tokio::test]
    async fn headers_from_lookup_feed_verify() {
        let p = pki();
        let server = serve(vec![(&cert_path("leaf"), Reply::Body(p.leaf_pem.clone()))]).await;
        let v = verifier_for(&server, 16);
        let signed = signed_headers(&p.leaf_key, server.url("leaf"));
        let map: HashMap<&str, String> = [
            ("PAYPAL-TRANSMISSION-ID", signed.transmission_id.clone()),
            (
                "PAYPAL-TRANSMISSION-TIME",
                format!(" {} ", signed.transmission_time),
            ),
            ("PAYPAL-TRANSMISSION-SIG", signed.transmission_sig.clone()),
            ("PAYPAL-CERT-URL", signed.cert_url.clone()),
            ("PAYPAL-AUTH-ALGO", signed.auth_algo.clone()),
        ]
        .into_iter()
        .collect();
        let h = PaypalHeaders::from_lookup(|n| map.get(n).cloned()).unwrap();
        v.verify(&h, BODY, now()).await.unwrap();
    }

    #[tokio::test]
    async fn cache_is_bounded_and_evicts_oldest() {
        let p = pki();
        let leaf = Reply::Body(p.leaf_pem.clone());
        let server = serve(vec![
            (&cert_path("a"), leaf.clone()),
            (&cert_path("b"), leaf.clone()),
        ])
        .await;
        let v = verifier_for(&server, 1);
        let a = signed_headers(&p.leaf_key, server.url("a"));
        let b = signed_headers(&p.leaf_key, server.url("b"));
        v.verify(&a, BODY, now()).await.unwrap();
        v.verify(&a, BODY, now()).await.unwrap();
        assert_eq!(server.hits(), 1);
        v.verify(&b, BODY, now()).await.unwrap(); // evicts a
        assert_eq!(server.hits(), 2);
        assert_eq!(v.cache.lock().len(), 1);
        v.verify(&a, BODY, now()).await.unwrap(); // refetched
        assert_eq!(server.hits(), 3);

        // cert_cache_max = 0 disables caching.
        let uncached = verifier_for(&server, 0);
        uncached.verify(&a, BODY, now()).await.unwrap();
        uncached.verify(&a, BODY, now()).await.unwrap();
        assert_eq!(server.hits(), 5);
    }

    #[tokio::test]
    async fn concurrent_first_requests_fetch_once() {
        let p = pki();
        let server = serve(vec![(&cert_path("leaf"), Reply::Body(p.leaf_pem.clone()))]).await;
        let v = Arc::new(verifier_for(&server, 16));
        let h = signed_headers(&p.leaf_key, server.url("leaf"));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (v, h) = (v.clone(), h.clone());
                tokio::spawn(async move { v.verify(&h, BODY, now()).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(server.hits(), 1);
        assert!(v.inflight.lock().is_empty());
    }

    #[tokio::test]
    async fn fetch_failures_are_cert_fetch_errors() {
        let p = pki();
        let server = serve(vec![
            (
                &cert_path("big"),
                Reply::Body(vec![b'A'; MAX_CERT_BYTES + 1]),
            ),
            (
                &cert_path("bigunsized"),
                Reply::Unsized(vec![b'A'; 4 * MAX_CERT_BYTES]),
            ),
            (
                &cert_path("redirect"),
                Reply::Redirect("/evil/leaf".to_owned()),
            ),
            ("/evil/leaf", Reply::Body(p.leaf_pem.clone())),
            (
                &cert_path("garbage"),
                Reply::Body(b"-----BEGIN CERTIFICATE-----\nnope\n".to_vec()),
            ),
            (&cert_path("empty"), Reply::Body(Vec::new())),
        ])
        .await;
        let v = verifier_for(&server, 16);
        for name in ["big", "bigunsized", "redirect", "missing"] {
            let result = v
                .verify(&signed_headers(&p.leaf_key, server.url(name)), BODY, now())
                .await;
            assert!(
                matches!(result, Err(VerifyError::CertFetch(_))),
                "{name}: {result:?}"
            );
        }
        assert!(
            !server.paths.lock().iter().any(|path| path == "/evil/leaf"),
            "redirect must not be followed"
        );
        for name in ["garbage", "empty"] {
            let result = v
                .verify(&signed_headers(&p.leaf_key, server.url(name)), BODY, now())
                .await;
            assert!(
                matches!(result, Err(VerifyError::CertInvalid(_))),
                "{name}: {result:?}"
            );
        }
        assert_eq!(v.cache.lock().len(), 0);
    }

    #[tokio::test]
    async fn hanging_server_times_out() {
        let p = pki();
        let server = serve(vec![(&cert_path("hang"), Reply::Hang)]).await;
        let v = verifier_for(&server, 16);
        let started = tokio::time::Instant::now();
        let result = v
            .verify(
                &signed_headers(&p.leaf_key, server.url("hang")),
                BODY,
                now(),
            )
            .await;
        let elapsed = started.elapsed();
        assert!(
            matches!(result, Err(VerifyError::CertFetch(_))),
            "{result:?}"
        );
        assert!(
            elapsed >= Duration::from_secs(4) && elapsed < Duration::from_secs(8),
            "{elapsed:?}"
        );
        assert!(v.inflight.lock().is_empty());
    }

    #[tokio::test]
    async fn certificate_fetches_in_flight_are_bounded() {
        let p = pki();
        let names: Vec<String> = (0..CERT_FETCHES_IN_FLIGHT_MAX + 3)
            .map(|i| format!("hang{i}"))
            .collect();
        let paths: Vec<String> = names.iter().map(|n| cert_path(n)).collect();
        let routes = paths.iter().map(|p| (p.as_str(), Reply::Hang)).collect();
        let server = serve(routes).await;
        let v = verifier_for(&server, 16);
        let headers: Vec<PaypalHeaders> = names
            .iter()
            .map(|n| signed_headers(&p.leaf_key, server.url(n)))
            .collect();
        let results =
            futures_util::future::join_all(headers.iter().map(|h| v.verify(h, BODY, now()))).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(VerifyError::Busy)))
            .count();
        assert_eq!(busy, 3, "{results:?}");
        assert!(v.inflight.lock().is_empty());
    }

    #[test]
    fn constructor_rejects_bad_configuration() {
        let ok_prefix = || vec!["https://api.paypal.com/v1/notifications/certs/".to_owned()];
        let new = |id: &str, prefixes: Vec<String>, ca: Option<Vec<u8>>, tol: i64| {
            PaypalVerifier::new(id.to_owned(), prefixes, ca, 16, tol)
        };
        assert!(new(WEBHOOK_ID, ok_prefix(), None, 300).is_ok());
        assert!(new(
            WEBHOOK_ID,
            ok_prefix(),
            Some(pki().trusted_roots_pem.clone()),
            300
        )
        .is_ok());
        assert!(new("", ok_prefix(), None, 300).is_err());
        assert!(new("ID\n", ok_prefix(), None, 300).is_err());
        assert!(new(WEBHOOK_ID, ok_prefix(), None, -1).is_err());
        assert!(new(WEBHOOK_ID, vec![], None, 300).is_err());
        assert!(new(WEBHOOK_ID, ok_prefix(), Some(b"not a pem".to_vec()), 300).is_err());
        for bad_prefix in [
            "https://api.paypal.com",
            "https://api.paypal.com.",
            "ftp://api.paypal.com/",
            "https:///v1/",
            "https://user@api.paypal.com/",
            "https://API.paypal.com/",
            "https://api.paypal.com:443/",
            "https://api.paypal.com/v1/../certs/",
            "https://api.paypal.com/v1/?q=",
            " https://api.paypal.com/",
        ] {
            assert!(
                new(WEBHOOK_ID, vec![bad_prefix.to_owned()], None, 300).is_err(),
                "{bad_prefix}"
            );
        }
    }

    #[test]
    fn verifier_is_shareable_and_its_future_is_send() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_send<T: Send>(_: &T) {}
        assert_send_sync::<PaypalVerifier>();
        let v = PaypalVerifier::new(
            WEBHOOK_ID.to_owned(),
            vec!["https://api.paypal.com/v1/notifications/certs/".to_owned()],
            None,
            16,
            300,
        )
        .unwrap();
        let h = signed_headers(&pki().leaf_key, "https://x/".to_owned());
        let fut = v.verify(&h, BODY, now());
        assert_send(&fut);
        // Debug output never shows the webhook id.
        assert!(!format!("{v:?}").contains(WEBHOOK_ID));
    }
}
