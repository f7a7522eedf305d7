//! A submitted form (`application/x-www-form-urlencoded`), read by name.

use actix_web::web::Bytes;

use crate::error::AppError;

/// Fields a form may carry; more is not a form of ours.
const FIELDS_MAX: usize = 64;

pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub fn parse(body: &Bytes) -> Result<Form, AppError> {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| AppError::validation("form", format!("not a form body: {e}")))?;
        if fields.len() > FIELDS_MAX {
            return Err(AppError::validation("form", "too many fields"));
        }
        Ok(Form { fields })
    }

    /// The first value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or a 422 naming it.
    pub fn require(&self, name: &str) -> Result<&str, AppError> {
        self.get(name)
            .ok_or_else(|| AppError::validation(name, "is required"))
    }

    /// `name` if given, not blank, and not what the form showed (`{name}_was`).
    pub fn changed(&self, name: &str) -> Option<&str> {
        let was = self.get(&format!("{name}_was"));
        self.non_blank(name)
            .filter(|v| Some(*v) != was.map(str::trim))
    }

    /// `name` if given and not blank.
    pub fn non_blank(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }
}
