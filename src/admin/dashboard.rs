//! The dashboard: four charts drawn on the server as SVG (plotters), each with its numbers as a
//! table for screen readers.
//!
//! Ids are time-ordered, so "the last 30 days" is a key range read from its start; each chart
//! reads at most [`ROWS_READ_MAX`] records and says so when it stopped there.

use std::collections::BTreeMap;

use maud::{html, Markup};
use plotters::prelude::*;
use storage::records::*;
use storage::{now_us, Direction, Reader, Record};

use super::layout::{self, Menu};
use super::{PageResult, Staff};
use crate::error::AppError;

/// Records one chart reads at most.
const ROWS_READ_MAX: usize = 200_000;
const STEP: usize = 1_000;
const DAY_US: i64 = 86_400_000_000;
const DAYS: i64 = 30;
const MONTHS: i64 = 12;
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
    let charts = [
        credits(reads, now)?,
        generations(reads, now)?,
        revenue(reads, now)?,
        tickets(reads, now)?,
    ];
    let body = html! {
        div.charts { @for c in &charts { (figure(c)?) } }
    };
    Ok(layout::page(&staff, Menu::Dashboard, "Dashboard", body))
}

/// The smallest key of a time-ordered (UUIDv7) table at `at_us`.
fn key_at(at_us: i64) -> Vec<u8> {
    let ms = u64::try_from(at_us / 1000).unwrap_or(0);
    let mut k = ms.to_be_bytes()[2..].to_vec();
    k.resize(16, 0);
    k
}

/// Visits the records of `R` created since `since_us`, oldest first, at most [`ROWS_READ_MAX`];
/// true when it stopped at the bound.
fn since<R: Record>(
    reads: &impl Reader,
    since_us: i64,
    mut visit: impl FnMut(R),
) -> Result<bool, AppError> {
    // Keys after the bound's millisecond with zero random bits: every record from then on.
    let mut after = (since_us > 0).then(|| key_at(since_us));
    let mut read = 0;
    loop {
        let rows = reads.scan::<R>(&[], after.as_deref(), Direction::Forward, STEP)?;
        let done = rows.len() < STEP;
        for (k, r) in rows {
            read += 1;
            visit(r);
            after = Some(k);
            if read >= ROWS_READ_MAX {
                return Ok(true);
            }
        }
        if done {
            return Ok(false);
        }
    }
}

fn day_labels(now: i64) -> Vec<String> {
    (0..DAYS)
        .rev()
        .map(|d| crate::views::rfc3339(now - d * DAY_US)[5..10].to_string())
        .collect()
}

/// Index of the day (0 = 29 days ago, 29 = today) of `at_us`.
fn day_index(now: i64, at_us: i64) -> Option<usize> {
    let ago = (now.div_euclid(DAY_US) - at_us.div_euclid(DAY_US)).max(0);
    (ago < DAYS).then(|| (DAYS - 1 - ago) as usize)
}

fn credits(reads: &impl Reader, now: i64) -> Result<Chart, AppError> {
    let mut granted = vec![0.0; DAYS as usize];
    let mut spent = vec![0.0; DAYS as usize];
    let partial = since::<LedgerEntry>(reads, now - DAYS * DAY_US, |e| {
        let Some(d) = day_index(now, e.created_at_us) else {
            return;
        };
        match e.kind {
            LedgerKind::GenerationCharge => spent[d] += (-e.amount) as f64,
            LedgerKind::GenerationRefund => spent[d] -= e.amount as f64,
            _ if e.amount > 0 => granted[d] += e.amount as f64,
            _ => {}
        }
    })?;
    Ok(Chart {
        title: "Credits granted vs spent per day (30 days)",
        labels: day_labels(now),
        series: vec![("granted".into(), granted), ("spent".into(), spent)],
        bars: false,
        partial,
    })
}

fn generations(reads: &impl Reader, now: i64) -> Result<Chart, AppError> {
    let statuses = [
        "pending",
        "queued",
        "processing",
        "completed",
        "failed",
        "cancelled",
    ];
    let mut counts = vec![vec![0.0; DAYS as usize]; statuses.len()];
    let partial = since::<GenerationRecord>(reads, now - DAYS * DAY_US, |g| {
        let Some(d) = day_index(now, g.created_at_us) else {
            return;
        };
        if let Some(s) = statuses.iter().position(|s| *s == g.status.as_str()) {
            counts[s][d] += 1.0;
        }
    })?;
    Ok(Chart {
        title: "Generation requests per status per day (30 days)",
        labels: day_labels(now),
        series: statuses.iter().map(|s| s.to_string()).zip(counts).collect(),
        bars: false,
        partial,
    })
}

fn revenue(reads: &impl Reader, now: i64) -> Result<Chart, AppError> {
    let month_of = |us: i64| crate::views::rfc3339(us)[..7].to_string();
    let labels: Vec<String> = (0..MONTHS)
        .rev()
        .map(|m| month_of(now - m * 30 * DAY_US))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut by: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for p in ["stripe", "paypal"] {
        by.insert(p, vec![0.0; labels.len()]);
    }
    let partial = since::<InvoiceRecord>(reads, now - MONTHS * 31 * DAY_US, |i| {
        let m = month_of(i.created_at_us);
        if let (Some(at), Some(v)) = (
            labels.iter().position(|l| *l == m),
            by.get_mut(i.provider.as_str()),
        ) {
            v[at] += i.amount_minor as f64 / 100.0;
        }
    })?;
    Ok(Chart {
        title: "Revenue per month by provider",
        labels,
        series: by.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        bars: false,
        partial,
    })
}

fn tickets(reads: &impl Reader, now: i64) -> Result<Chart, AppError> {
    let open: Vec<TicketStage> = TicketStage::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .collect();
    let mut counts = vec![0.0; open.len() + 1];
    let partial = since::<TicketRecord>(reads, 0, |t| {
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
            figcaption { (c.title) @if c.partial { " (first " (ROWS_READ_MAX) " records)" } }
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
