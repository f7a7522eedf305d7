//! The dashboard: four charts drawn on the server as SVG (plotters), each with its numbers as a
//! table for screen readers.
//!
//! The day charts read the stored day rollups (a year is 365 small records) and count only the
//! days not rolled up yet (the last two) from their key range, at most [`ROWS_READ_MAX`]
//! records; a chart says so when it stopped there. So the page does not grow with the ledger.

use std::collections::BTreeMap;

use maud::{html, Markup};
use plotters::prelude::*;
use storage::records::*;
use storage::rollup::{self, DayRollup};
use storage::{now_us, Direction, Reader};

use super::layout::{self, Menu};
use super::{PageResult, Staff};
use crate::error::AppError;
use crate::services::rollups;

/// Records the page counts live at most (days not rolled up yet).
const ROWS_READ_MAX: usize = 200_000;
/// Tickets the open-ticket chart reads at most (newest first).
const TICKETS_READ_MAX: usize = 50_000;
const STEP: usize = 1_000;
const DAYS: i64 = 30;
const YEAR_DAYS: i64 = 365;
const PALETTE: [RGBColor; 6] = [
    RGBColor(108, 63, 180),
    RGBColor(214, 96, 77),
    RGBColor(44, 160, 101),
    RGBColor(31, 119, 180),
    RGBColor(201, 161, 0),
    RGBColor(120, 120, 120),
];

/// Named series over labelled points.
struct Chart {
    title: &'static str,
    labels: Vec<String>,
    series: Vec<(String, Vec<f64>)>,
    bars: bool,
    /// Whether the read bound ended the count early.
    partial: bool,
}

/// `GET /admin/`.
pub async fn show(staff: Staff) -> PageResult {
    let reads = &*staff.reads;
    let now = now_us();
    let today = rollup::day_of(now);
    // A year of days: stored rollups, except the last days (counted live, bounded).
    let first = today - YEAR_DAYS + 1;
    let year = rollups::days(reads, first, today, ROWS_READ_MAX)?;
    let month = &year.days[year.days.len().saturating_sub(DAYS as usize)..];
    let charts = [
        credits(month, year.partial),
        generations(month, year.partial),
        revenue(&year.days, year.partial),
        tickets(reads, now)?,
    ];
    let body = html! {
        div.charts { @for c in &charts { (figure(c)?) } }
    };
    Ok(layout::page(&staff, Menu::Dashboard, "Dashboard", body))
}

fn day_label(day: i64) -> String {
    crate::views::rfc3339(day * rollup::DAY_US)[5..10].to_string()
}

fn credits(days: &[DayRollup], partial: bool) -> Chart {
    Chart {
        title: "Credits granted vs spent per day (30 days)",
        labels: days.iter().map(|d| day_label(d.day)).collect(),
        series: vec![
            (
                "granted".into(),
                days.iter().map(|d| d.granted as f64).collect(),
            ),
            (
                "spent".into(),
                days.iter().map(|d| d.spent as f64).collect(),
            ),
        ],
        bars: false,
        partial,
    }
}

fn generations(days: &[DayRollup], partial: bool) -> Chart {
    Chart {
        title: "Generation requests per status per day (30 days)",
        labels: days.iter().map(|d| day_label(d.day)).collect(),
        series: rollup::GEN_STATUSES
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.as_str().to_string(),
                    days.iter().map(|d| d.generations[i] as f64).collect(),
                )
            })
            .collect(),
        bars: false,
        partial,
    }
}

/// Gross invoiced amounts per month, one series per provider and currency (amounts in different
/// currencies are never added together).
fn revenue(days: &[DayRollup], partial: bool) -> Chart {
    let month = |day: i64| crate::views::rfc3339(day * rollup::DAY_US)[..7].to_string();
    let labels: Vec<String> = days
        .iter()
        .map(|d| month(d.day))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut series: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for d in days {
        let at = labels
            .iter()
            .position(|l| *l == month(d.day))
            .unwrap_or_default();
        for r in &d.revenue {
            for (p, provider) in rollup::PROVIDERS.iter().enumerate() {
                let name = format!("{} {}", provider.as_str(), r.currency.to_uppercase());
                let values = series
                    .entry(name)
                    .or_insert_with(|| vec![0.0; labels.len()]);
                values[at] += r.minor[p] as f64 / 100.0;
            }
        }
    }
    if series.is_empty() {
        for p in rollup::PROVIDERS {
            series.insert(p.as_str().to_string(), vec![0.0; labels.len()]);
        }
    }
    Chart {
        title: "Invoiced per month by provider (gross)",
        labels,
        series: series.into_iter().collect(),
        bars: false,
        partial,
    }
}

/// Visits tickets newest first, at most [`TICKETS_READ_MAX`]; true when it stopped there.
fn recent_tickets(
    reads: &impl Reader,
    mut visit: impl FnMut(TicketRecord),
) -> Result<bool, AppError> {
    let mut after: Option<Vec<u8>> = None;
    let mut read = 0;
    loop {
        let rows = reads.scan::<TicketRecord>(&[], after.as_deref(), Direction::Backward, STEP)?;
        let done = rows.len() < STEP;
        for (k, t) in rows {
            read += 1;
            visit(t);
            after = Some(k);
            if read >= TICKETS_READ_MAX {
                return Ok(true);
            }
        }
        if done {
            return Ok(false);
        }
    }
}

fn tickets(reads: &impl Reader, now: i64) -> Result<Chart, AppError> {
    let open: Vec<TicketStage> = TicketStage::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .collect();
    let mut counts = vec![0.0; open.len() + 1];
    let partial = recent_tickets(reads, |t| {
        if let Some(i) = open.iter().position(|s| *s == t.stage) {
            counts[i] += 1.0;
        }
        if t.sla_status(now) == SlaStatus::Breached {
            counts[open.len()] += 1.0;
        }
    })?;
    let mut labels: Vec<String> = open.iter().map(|s| s.as_str().to_string()).collect();
    labels.push("SLA breached".into());
    Ok(Chart {
        title: "Open tickets per stage, and SLA breaches",
        labels,
        series: vec![("tickets".into(), counts)],
        bars: true,
        partial,
    })
}

fn figure(c: &Chart) -> Result<Markup, AppError> {
    let svg = draw(c).map_err(|e| AppError::internal(format!("chart: {e}")))?;
    Ok(html! {
        figure {
            (layout::trusted(svg))
            figcaption { (c.title) @if c.partial { " (partly counted: the read bound was reached)" } }
            details.sr-table { summary { "Table" }
                table {
                    caption { (c.title) }
                    thead { tr { th scope="col" { "" } @for (name, _) in &c.series { th scope="col" { (name) } } } }
                    tbody { @for (i, l) in c.labels.iter().enumerate() { tr { th scope="row" { (l) }
                        @for (_, v) in &c.series { td { (v.get(i).copied().unwrap_or_default()) } } } } }
                }
            }
        }
    })
}

fn draw(c: &Chart) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 300)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = c
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(1.0_f64, f64::max)
            * 1.1;
        let n = c.labels.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(0..n, 0.0..max)?;
        let labels = c.labels.clone();
        chart
            .configure_mesh()
            .x_labels(n.min(10))
            .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
            .draw()?;
        for (k, (name, values)) in c.series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            if c.bars {
                chart.draw_series(
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| Rectangle::new([(i, 0.0), (i + 1, *v)], color.filled())),
                )?;
            } else {
                chart
                    .draw_series(LineSeries::new(
                        values.iter().enumerate().map(|(i, v)| (i, *v)),
                        color.stroke_width(2),
                    ))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
            }
        }
        if !c.bars {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    Ok(svg)
}
