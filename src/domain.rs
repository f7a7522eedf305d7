//! Domain newtypes: parsed once at the edge, fields private, so code past the handler never sees
//! an unchecked value.

use std::borrow::Cow;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use crate::error::AppError;

/// Characters that are invisible or reorder text: zero-width spaces and joiners, bidi
/// overrides, isolates and marks, word joiners, the BOM, and fillers that render as nothing.
/// Text carrying them can look exactly like other text (a second account for the same-looking
/// email, an empty-looking name).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}')
}

/// Text as stored: Unicode NFC, trimmed, without control or invisible characters (newlines and
/// tabs allowed where `multiline`). The error names `field`.
pub fn clean_text(raw: &str, field: &str, multiline: bool) -> Result<String, AppError> {
    // The quick check answers Yes for most text (all ASCII) without composing it again: a
    // prompt is checked on every create.
    let text = match is_nfc_quick(raw.chars()) {
        IsNormalized::Yes => Cow::Borrowed(raw),
        IsNormalized::No | IsNormalized::Maybe => Cow::Owned(raw.nfc().collect()),
    };
    let allowed_control = |c: char| multiline && matches!(c, '\n' | '\t' | '\r');
    if let Some(c) = text
        .chars()
        .find(|&c| (c.is_control() && !allowed_control(c)) || is_invisible(c))
    {
        return Err(AppError::validation(
            field,
            format!(
                "must not contain control or invisible characters (U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(text.trim().to_string())
}

/// A normalized (trimmed, lower-cased) email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const LEN_MAX: usize = 254;

    /// Normalized (NFC, lower case) before comparing, so two addresses that look alike are one.
    pub fn parse(raw: &str) -> Result<Email, AppError> {
        let e = clean_text(raw, "email", false)?.to_lowercase();
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
        let n = clean_text(raw, field, false)?;
        let count = n.chars().count();
        if count == 0 || count > Self::LEN_MAX {
            return Err(AppError::validation(field, "must be 1 to 200 characters"));
        }
        Ok(Name(n))
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
        let d = clean_text(raw, "description", false)?;
        let count = d.chars().count();
        if count == 0 || count > Self::LEN_MAX {
            return Err(AppError::validation(
                "description",
                "must be 1 to 500 characters",
            ));
        }
        Ok(Description(d))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Multi-line text a person writes (a ticket's description, a message): 1..10,000 characters.
#[derive(Debug, Clone)]
pub struct LongText(String);

impl LongText {
    pub const LEN_MAX: usize = 10_000;

    pub fn parse(raw: &str, field: &str) -> Result<LongText, AppError> {
        let t = clean_text(raw, field, true)?;
        let count = t.chars().count();
        if count == 0 || count > Self::LEN_MAX {
            return Err(AppError::validation(field, "must be 1 to 10000 characters"));
        }
        Ok(LongText(t))
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
    fn text_is_stored_composed_whether_or_not_it_came_composed() {
        let composed = "Caf\u{00E9} \u{AC00} plain";
        let decomposed = "Cafe\u{0301} \u{1100}\u{1161} plain";
        assert_eq!(clean_text(composed, "f", false).unwrap(), composed);
        assert_eq!(clean_text(decomposed, "f", false).unwrap(), composed);
        assert_eq!(
            clean_text(" ascii only ", "f", false).unwrap(),
            "ascii only"
        );
        assert!(clean_text("zero\u{200B}width", "f", false).is_err());
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

// --- Workspace fields ---------------------------------------------------------------------------

use storage::records::{BrandColor, BrandFont};

pub const COLORS_MAX: usize = 50;
pub const FONTS_MAX: usize = 20;
pub const LOGOS_MAX: usize = 20;
const LABEL_LEN_MAX: usize = 100;

/// A brand color as clients send it: `"#RRGGBB"` or `{"hex": "#RRGGBB", "name": "Primary"}`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ColorInput {
    Hex(String),
    Named { hex: String, name: Option<String> },
}

fn label(raw: &str, field: &str) -> Result<String, AppError> {
    let t = clean_text(raw, field, false)?;
    let n = t.chars().count();
    if n == 0 || n > LABEL_LEN_MAX {
        return Err(AppError::validation(field, "must be 1 to 100 characters"));
    }
    Ok(t)
}

pub fn parse_colors(input: Vec<ColorInput>) -> Result<Vec<BrandColor>, AppError> {
    if input.len() > COLORS_MAX {
        return Err(AppError::validation("colors", "at most 50 colors"));
    }
    input
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let field = format!("colors[{i}]");
            let (hex, name) = match c {
                ColorInput::Hex(h) => (h, None),
                ColorInput::Named { hex, name } => (hex, name),
            };
            let ok = hex.len() == 7
                && hex.starts_with('#')
                && hex[1..].chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                return Err(AppError::validation(&field, "a color is #RRGGBB"));
            }
            Ok(BrandColor {
                hex: hex.to_ascii_uppercase(),
                name: name.map(|n| label(&n, &field)).transpose()?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FontInput {
    #[schema(min_length = 1, max_length = 100)]
    pub family: String,
    /// 100..900.
    #[schema(minimum = 100, maximum = 900)]
    pub weight: Option<u16>,
    #[schema(min_length = 1, max_length = 100)]
    pub usage: Option<String>,
}

pub fn parse_fonts(input: Vec<FontInput>) -> Result<Vec<BrandFont>, AppError> {
    if input.len() > FONTS_MAX {
        return Err(AppError::validation("fonts", "at most 20 fonts"));
    }
    input
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let field = format!("fonts[{i}]");
            if f.weight.is_some_and(|w| !(100..=900).contains(&w)) {
                return Err(AppError::validation(
                    &format!("{field}.weight"),
                    "weight is 100..900",
                ));
            }
            Ok(BrandFont {
                family: label(&f.family, &format!("{field}.family"))?,
                weight: f.weight,
                usage: f
                    .usage
                    .map(|u| label(&u, &format!("{field}.usage")))
                    .transpose()?,
            })
        })
        .collect()
}

/// An object-store path: relative, `/`-separated segments of letters, digits, `.`, `_`, `-`;
/// no `..`, no empty segment, no scheme (absolute URLs to other hosts are refused).
pub fn parse_object_path(raw: &str, field: &str) -> Result<String, AppError> {
    let bad = || {
        AppError::validation(
            field,
            "must be a relative object-store path without '..' or a scheme",
        )
    };
    if !actors::workspace_reads::object_path_ok(raw) {
        return Err(bad());
    }
    Ok(raw.to_string())
}

pub fn parse_logos(input: Vec<String>) -> Result<Vec<String>, AppError> {
    if input.len() > LOGOS_MAX {
        return Err(AppError::validation("logos", "at most 20 logos"));
    }
    input
        .iter()
        .enumerate()
        .map(|(i, p)| parse_object_path(p, &format!("logos[{i}]")))
        .collect()
}

pub const ASSET_KINDS: [&str; 5] = ["image", "video", "audio", "document", "other"];
pub use actors::workspace_reads::ASSET_SIZE_MAX;

pub fn parse_asset_kind(raw: &str) -> Result<String, AppError> {
    ASSET_KINDS
        .contains(&raw)
        .then(|| raw.to_string())
        .ok_or_else(|| {
            AppError::validation("kind", "must be image, video, audio, document or other")
        })
}

/// `type/subtype` in the token characters of RFC 6838.
pub fn parse_mime(raw: &str) -> Result<String, AppError> {
    if actors::workspace_reads::mime_ok(raw) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(AppError::validation(
            "mime",
            "must be a media type like image/png",
        ))
    }
}

#[cfg(test)]
mod workspace_field_tests {
    use super::*;

    #[test]
    fn colors_accept_both_forms_and_refuse_bad_hex() {
        let ok = parse_colors(vec![
            ColorInput::Hex("#ff00aa".into()),
            ColorInput::Named {
                hex: "#000000".into(),
                name: Some(" Ink ".into()),
            },
        ])
        .unwrap();
        assert_eq!(ok[0].hex, "#FF00AA");
        assert_eq!(ok[1].name.as_deref(), Some("Ink"));
        for bad in ["ff00aa", "#ff00a", "#gg0000", "#ff00aa0"] {
            assert!(
                parse_colors(vec![ColorInput::Hex(bad.into())]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn object_paths_refuse_traversal_and_other_hosts() {
        assert!(parse_object_path("brand/acme/logo-1.png", "p").is_ok());
        for bad in [
            "../etc/passwd",
            "a/../b",
            "/abs/path",
            "https://evil.example/x.png",
            "a//b",
            "",
            "a\\b",
        ] {
            assert!(parse_object_path(bad, "p").is_err(), "{bad}");
        }
    }

    #[test]
    fn font_weights_are_100_to_900() {
        let f = |w| FontInput {
            family: "Inter".into(),
            weight: Some(w),
            usage: None,
        };
        assert!(parse_fonts(vec![f(400)]).is_ok());
        assert!(parse_fonts(vec![f(50)]).is_err());
        assert!(parse_fonts(vec![f(1000)]).is_err());
    }
}
