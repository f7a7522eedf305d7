//! PLACEHOLDER until the verifier lands: refuses every transmission.

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("stale")]
    StaleTransmission,
    #[error("unsupported {0}")]
    UnsupportedAlgorithm(String),
    #[error("not allowed {0}")]
    CertUrlNotAllowed(String),
    #[error("fetch {0}")]
    CertFetch(String),
    #[error("invalid {0}")]
    CertInvalid(String),
    #[error("bad signature")]
    BadSignature,
}

pub struct PaypalHeaders {
    pub transmission_id: String,
    pub transmission_time: String,
    pub transmission_sig: String,
    pub cert_url: String,
    pub auth_algo: String,
}

impl PaypalHeaders {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, VerifyError> {
        let h = |n: &'static str| {
            get(n)
                .filter(|v| !v.is_empty())
                .ok_or(VerifyError::MissingHeader(n))
        };
        Ok(PaypalHeaders {
            transmission_id: h("PAYPAL-TRANSMISSION-ID")?,
            transmission_time: h("PAYPAL-TRANSMISSION-TIME")?,
            transmission_sig: h("PAYPAL-TRANSMISSION-SIG")?,
            cert_url: h("PAYPAL-CERT-URL")?,
            auth_algo: h("PAYPAL-AUTH-ALGO")?,
        })
    }
}

pub struct PaypalVerifier;

impl PaypalVerifier {
    pub fn new(
        _webhook_id: String,
        _allowed_prefixes: Vec<String>,
        _extra_ca_pem: Option<Vec<u8>>,
        _cert_cache_max: usize,
        _tolerance_s: i64,
    ) -> Result<PaypalVerifier, String> {
        Ok(PaypalVerifier)
    }

    pub async fn verify(
        &self,
        _headers: &PaypalHeaders,
        _raw_body: &[u8],
        _now_unix: i64,
    ) -> Result<(), VerifyError> {
        Err(VerifyError::BadSignature)
    }
}
