//! The report's frame: phase headings and the final Markdown table.

use std::fmt::Display;

use super::Skip;

/// Opens the report of a phase: a blank line, then `== {title}`.
pub fn heading(title: impl Display) {
    println!();
    println!("== {title}");
}

/// The rows of the final Markdown table.
#[derive(Default)]
pub struct Summary {
    pub rows: Vec<(String, String)>,
    pub notes: Vec<String>,
}

impl Summary {
    pub fn row(&mut self, measure: impl Into<String>, value: impl Into<String>) {
        self.rows.push((measure.into(), value.into()));
    }

    /// Prints the table of `cargo bench --bench {bench}`; `setting` ends the machine line with
    /// what the bench ran against.
    pub fn print(&self, bench: &str, setting: &str, skip: &Skip) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!();
        println!("## CreativeFlow {bench} benchmark");
        println!();
        println!(
            "Machine: {cores} cores, {}. `cargo bench --bench {bench}` (release){setting}",
            std::env::consts::ARCH
        );
        println!();
        println!("| Measure | Value |");
        println!("|---|---|");
        for (m, v) in &self.rows {
            println!("| {m} | {v} |");
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("- {n}");
            }
        }
        if !skip.skipped().is_empty() {
            println!();
            println!("Skipped: {}.", skip.skipped().join(", "));
        }
    }
}
