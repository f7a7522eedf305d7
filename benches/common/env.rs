//! The run's environment: numeric and text variables, `BENCH_SKIP`, temporary directories.

use std::path::Path;

use super::Res;

pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Res<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

pub fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// The parts `BENCH_SKIP` (a comma list) leaves out; an unknown part is an error, not a no-op,
/// so a typo cannot silently run the part it meant to skip.
pub struct Skip {
    known: &'static [&'static str],
    parts: Vec<String>,
}

impl Skip {
    pub fn from_env(known: &'static [&'static str]) -> Res<Skip> {
        let parts = std::env::var("BENCH_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>();
        if let Some(s) = parts.iter().find(|s| !known.contains(&s.as_str())) {
            return Err(format!(
                "BENCH_SKIP: unknown part {s:?} (known: {})",
                known.join(",")
            ));
        }
        Ok(Skip { known, parts })
    }

    pub fn runs(&self, part: &str) -> bool {
        !self.parts.iter().any(|s| s == part)
    }

    /// The known parts that run, in their order.
    pub fn running(&self) -> Vec<&'static str> {
        self.known
            .iter()
            .copied()
            .filter(|p| self.runs(p))
            .collect()
    }

    pub fn skipped(&self) -> &[String] {
        &self.parts
    }
}

/// A fresh directory `creativeflow-bench-{name}-…` under `base`, or the system temp dir.
pub fn temp_dir(name: &str, base: Option<&Path>) -> Res<tempfile::TempDir> {
    let prefix = format!("creativeflow-bench-{name}-");
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix);
    match base {
        Some(base) => b.tempdir_in(base),
        None => b.tempdir(),
    }
    .map_err(|e| format!("cannot create a temporary dir: {e}"))
}
