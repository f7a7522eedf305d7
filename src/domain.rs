//! Domain newtypes: parsed once at the edge, fields private, so code past the handler never sees
//! an unchecked value.

use crate::error::AppError;

/// A normalized (trimmed, lower-cased) email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const LEN_MAX: usize = 254;

    pub fn parse(raw: &str) -> Result<Email, AppError> {
        let e = raw.trim().to_lowercase();
        let bad = || AppError::validation("email", "not a valid email address");
        if e.is_empty()
            || e.len() > Self::LEN_MAX
            || e.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
        let (local, domain) = e.split_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        Ok(Email(e))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed: at least 10 characters; bounded so hashing cannot be made a weapon.
pub struct Password(String);

impl Password {
    pub const LEN_MIN: usize = 10;
    pub const LEN_MAX: usize = 1024;

    pub fn parse(raw: String, field: &str) -> Result<Password, AppError> {
        let n = raw.chars().count();
        if n < Self::LEN_MIN {
            return Err(AppError::validation(
                field,
                "the password must have at least 10 characters",
            ));
        }
        if raw.len() > Self::LEN_MAX {
            return Err(AppError::validation(
                field,
                "the password must have at most 1024 bytes",
            ));
        }
        Ok(Password(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A display name: trimmed, 1..200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub const LEN_MAX: usize = 200;

    pub fn parse(raw: &str, field: &str) -> Result<Name, AppError> {
        let n = raw.trim();
        let count = n.chars().count();
        if count == 0 || count > Self::LEN_MAX {
            return Err(AppError::validation(field, "must be 1 to 200 characters"));
        }
        if n.chars().any(char::is_control) {
            return Err(AppError::validation(
                field,
                "must not contain control characters",
            ));
        }
        Ok(Name(n.to_string()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A free-text description of a credit movement: 1..500 characters.
#[derive(Debug, Clone)]
pub struct Description(String);

impl Description {
    pub const LEN_MAX: usize = 500;

    pub fn parse(raw: &str) -> Result<Description, AppError> {
        let d = raw.trim();
        let count = d.chars().count();
        if count == 0 || count > Self::LEN_MAX {
            return Err(AppError::validation(
                "description",
                "must be 1 to 500 characters",
            ));
        }
        Ok(Description(d.to_string()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A non-zero credit amount within the ledger's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditDelta(i64);

impl CreditDelta {
    /// Admin adjustments are bounded well below the ledger's own bound.
    pub const ABS_MAX: i64 = 1_000_000_000;

    pub fn parse(raw: i64) -> Result<CreditDelta, AppError> {
        if raw == 0 || raw.unsigned_abs() > Self::ABS_MAX.unsigned_abs() {
            return Err(AppError::validation(
                "amount",
                "must be a non-zero integer of at most 1000000000 in absolute value",
            ));
        }
        Ok(CreditDelta(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// An `Idempotency-Key` header value: 1..255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKeyValue(String);

impl IdempotencyKeyValue {
    pub fn parse(raw: &str) -> Result<IdempotencyKeyValue, AppError> {
        if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(AppError::validation(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ));
        }
        Ok(IdempotencyKeyValue(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@@example.com",
            "ann@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_need_ten_characters_and_are_not_printed() {
        assert!(Password::parse("short".into(), "password").is_err());
        let p = Password::parse("long enough!".into(), "password").unwrap();
        assert!(!format!("{p:?}").contains("long"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Ann ", "name").unwrap().into_inner(), "Ann");
        assert!(Name::parse("   ", "name").is_err());
        assert!(Name::parse(&"x".repeat(201), "name").is_err());
    }

    #[test]
    fn credit_deltas_are_non_zero_and_bounded() {
        assert!(CreditDelta::parse(0).is_err());
        assert!(CreditDelta::parse(1_000_000_001).is_err());
        assert_eq!(CreditDelta::parse(-5).unwrap().get(), -5);
    }
}
