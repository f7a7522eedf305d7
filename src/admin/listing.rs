//! List views: the query (`q`, `cursor`, `order` and named filters), a bounded window over a
//! table or an index, and the page around the rows.
//!
//! A page never reads the whole table: rows come in key order (ids are time-ordered, so key
//! order is creation order) from the cursor on, and a filter no index serves examines at most
//! [`EXAMINED_PER_PAGE_MAX`] keys before it shows what it found with a cursor to go on.

use actix_web::HttpRequest;
use maud::{html, Markup};
use storage::Record;
use storage::{keys, Direction, Reader};
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::{decode_cursor, encode_cursor};

/// Rows on one page.
pub const ROWS_PER_PAGE: usize = 50;
/// Keys one page may examine for filters no index serves.
pub const EXAMINED_PER_PAGE_MAX: usize = 5_000;
/// Keys read per step of a window.
const STEP: usize = 256;
/// Longest text search accepted.
const Q_CHARS_MAX: usize = 200;

/// A list's order: creation time either way (ids are time-ordered keys), or email (users).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Newest,
    Oldest,
    Email,
}

impl Order {
    fn as_str(self) -> &'static str {
        match self {
            Order::Newest => "newest",
            Order::Oldest => "oldest",
            Order::Email => "email",
        }
    }
}

/// The parsed query string of a list page. Empty values mean "no filter" (what a submitted
/// filter form sends for an untouched field).
pub struct ListQuery {
    pub q: Option<String>,
    pub cursor: Option<Vec<u8>>,
    pub order: Order,
    /// Whether this list offers `order=email` (the users list, through the email index).
    email_order: bool,
    filters: Vec<(String, String)>,
    /// Rows on this page ([`ROWS_PER_PAGE`] unless a view shows fewer).
    rows_max: usize,
}

impl ListQuery {
    pub fn parse(req: &HttpRequest, allowed: &[&str]) -> Result<ListQuery, AppError> {
        let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| AppError::validation("query", e.to_string()))?
            .into_inner();
        let mut out = ListQuery {
            q: None,
            cursor: None,
            order: Order::Newest,
            email_order: allowed.contains(&"order=email"),
            filters: Vec::new(),
            rows_max: ROWS_PER_PAGE,
        };
        for (k, v) in pairs {
            let v = v.trim().to_string();
            match k.as_str() {
                _ if v.is_empty() => {}
                "q" if v.chars().count() > Q_CHARS_MAX => {
                    return Err(AppError::validation("q", "at most 200 characters"))
                }
                "q" => out.q = Some(v),
                "cursor" | "page" => out.cursor = Some(decode_cursor(&v, "cursor")?),
                "order" => {
                    out.order = match v.as_str() {
                        "newest" => Order::Newest,
                        "oldest" => Order::Oldest,
                        "email" if out.email_order => Order::Email,
                        _ => return Err(AppError::validation("order", "unknown order")),
                    }
                }
                other if allowed.contains(&other) => out.filters.push((k, v)),
                other => return Err(AppError::validation(other, "unknown filter")),
            }
        }
        Ok(out)
    }

    /// The first page, newest first, no filter (the linked lists on a form view).
    pub fn first_page() -> ListQuery {
        ListQuery {
            q: None,
            cursor: None,
            order: Order::Newest,
            email_order: false,
            filters: Vec::new(),
            rows_max: ROWS_PER_PAGE,
        }
    }

    pub fn rows_max(&self) -> usize {
        self.rows_max
    }

    /// The same query showing at most `rows` rows a page (a kanban's columns).
    pub fn with_rows_max(self, rows: usize) -> ListQuery {
        ListQuery {
            rows_max: rows.clamp(1, ROWS_PER_PAGE),
            ..self
        }
    }

    pub fn filter(&self, name: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A filter that must be one of the values `parse` knows.
    pub fn pick<T>(&self, name: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>, AppError> {
        self.filter(name)
            .map(|v| parse(v).ok_or_else(|| AppError::validation(name, "unknown value")))
            .transpose()
    }

    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, AppError> {
        self.filter(name)
            .map(|v| Uuid::parse_str(v).map_err(|_| AppError::validation(name, "not an id")))
            .transpose()
    }

    pub fn direction(&self) -> Direction {
        match self.order {
            Order::Newest => Direction::Backward,
            Order::Oldest | Order::Email => Direction::Forward,
        }
    }

    /// `q`, lower-cased, for substring matches.
    pub fn needle(&self) -> Option<String> {
        self.q.as_ref().map(|q| q.to_lowercase())
    }

    /// This page's query string with another cursor (filters kept).
    pub fn with_cursor(&self, cursor: &str) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .filters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(q) = &self.q {
            pairs.push(("q", q));
        }
        if self.order != Order::Newest {
            pairs.push(("order", self.order.as_str()));
        }
        pairs.push(("cursor", cursor));
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// One page of rows and where the next one starts.
pub struct Window<R> {
    pub rows: Vec<R>,
    pub next: Option<String>,
    /// Whether the examination bound ended the page before it was full.
    pub cut: bool,
}

/// Up to a page of records of `R` under `prefix` that `keep` accepts, from the cursor
/// on, examining at most [`EXAMINED_PER_PAGE_MAX`] keys.
pub fn window<R: Record>(
    reads: &impl Reader,
    prefix: &[u8],
    query: &ListQuery,
    mut keep: impl FnMut(&R) -> bool,
) -> Result<Window<R>, AppError> {
    window_by_key(reads, prefix, query, |_, _, r: R| Ok(keep(&r).then_some(r)))
}

/// The same over an index of (`parent`, child) keys: each child is read from its table.
pub fn window_by_index<I: Record, R: Record>(
    reads: &impl Reader,
    parent: Uuid,
    query: &ListQuery,
    mut keep: impl FnMut(&R) -> bool,
) -> Result<Window<R>, AppError> {
    window_by_key(reads, &keys::id(parent), query, |reads, k, _: I| {
        let Some(child) = keys::pair_child(k) else {
            return Ok(None);
        };
        Ok(reads.get::<R>(&keys::id(child))?.filter(|r| keep(r)))
    })
}

/// The general window: the keys of `S` under `prefix`, each turned into a row (or skipped) by
/// `take`.
pub fn window_by_key<S: Record, R, Rd: Reader>(
    reads: &Rd,
    prefix: &[u8],
    query: &ListQuery,
    mut take: impl FnMut(&Rd, &[u8], S) -> Result<Option<R>, AppError>,
) -> Result<Window<R>, AppError> {
    if query
        .cursor
        .as_ref()
        .is_some_and(|c| !c.starts_with(prefix))
    {
        return Err(AppError::validation(
            "cursor",
            "the cursor is not one we issued",
        ));
    }
    let mut after = query.cursor.clone();
    let mut rows = Vec::new();
    let mut examined = 0;
    loop {
        let step = reads.scan::<S>(prefix, after.as_deref(), query.direction(), STEP)?;
        let exhausted = step.len() < STEP;
        for (k, s) in step {
            examined += 1;
            if let Some(r) = take(reads, &k, s)? {
                rows.push(r);
            }
            let full = rows.len() == query.rows_max;
            if full || examined >= EXAMINED_PER_PAGE_MAX {
                return Ok(Window {
                    rows,
                    next: Some(encode_cursor(&k)),
                    cut: !full,
                });
            }
            after = Some(k);
        }
        if exhausted {
            return Ok(Window {
                rows,
                next: None,
                cut: false,
            });
        }
    }
}

/// The text-search and order controls plus `extra` filter fields, as a GET form.
pub fn filter_form(path: &str, query: &ListQuery, extra: Markup) -> Markup {
    html! {
        form.filters method="get" action=(path) role="search" {
            label { "Search" input type="search" name="q" value=[query.q.as_deref()]; }
            (extra)
            label { "Order"
                select name="order" {
                    option value="newest" selected[query.order == Order::Newest] { "Newest first" }
                    option value="oldest" selected[query.order == Order::Oldest] { "Oldest first" }
                    @if query.email_order { option value="email" selected[query.order == Order::Email] { "Email A–Z" } }
                }
            }
            button type="submit" { "Filter" }
            a href=(path) { "Clear" }
        }
    }
}

/// A select filter over fixed values.
pub fn select(name: &str, label: &str, values: &[&str], query: &ListQuery) -> Markup {
    let current = query.filter(name);
    html! {
        label { (label)
            select name=(name) {
                option value="" { "any" }
                @for v in values { option value=(v) selected[current == Some(*v)] { (v) } }
            }
        }
    }
}

/// The count line and the link to the next page.
pub fn pager<R>(path: &str, query: &ListQuery, window: &Window<R>, total: Option<u64>) -> Markup {
    html! {
        div.pager {
            span.count {
                (window.rows.len()) " shown"
                @if let Some(t) = total { " of " (t) }
                @if window.cut { " (" (EXAMINED_PER_PAGE_MAX) " records examined; go on for more matches)" }
            }
            @if query.cursor.is_some() { a href=(path) { "First page" } }
            @if let Some(next) = &window.next { a rel="next" href={ (path) "?" (query.with_cursor(next)) } { "Next page" } }
        }
    }
}
