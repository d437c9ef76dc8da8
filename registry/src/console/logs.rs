//! The audit log page: filters, the chain's verification status, and exports as
//! Quay rows or CloudEvents.

use super::layout::page;
use super::{ConsoleError, viewer};
use crate::app::{App, Shared, blocking};
use crate::errors::ApiError;
use crate::inspect::{self, Verification};
use crate::oci::route::Name;
use crate::store::LogQuery;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use tagguard_engine::audit::{ChainedEntry, ExportFormat, export as export_entries};

/// Entries shown on a page unless `limit` asks for fewer or more.
const SHOWN: usize = 100;

/// The most entries one page may show.
const MOST_SHOWN: usize = 500;

/// At most this many entries are exported.
const EXPORTED: usize = 100_000;

/// The filters, as the form sends them (empty fields are no filter).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Filters {
    kind: String,
    repository: String,
    tag: String,
    performer: String,
    start: String,
    end: String,
    /// Only entries older than this seq (the "Older entries" page).
    #[serde(skip_serializing)]
    before: String,
    /// Only entries newer than this seq (the "Newer entries" page).
    #[serde(skip_serializing)]
    after: String,
    /// Entries per page (1 to 500; 100 when empty).
    limit: String,
    /// For exports: `quay`, `cloudevents` or `json`.
    #[serde(skip_serializing)]
    format: String,
}

/// A page's position in the log: older than a seq, newer than one, or the newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    Newest,
    Before(u64),
    After(u64),
}

fn some(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// A time bound from a date field (`YYYY-MM-DD`, a whole UTC day) or RFC 3339.
fn bound(text: &str, end: bool) -> Result<Option<String>, ApiError> {
    let Some(t) = some(text) else { return Ok(None) };
    let b = t.as_bytes();
    if t.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(ApiError::invalid(format!(
            "{}: {t:?} is not a date (YYYY-MM-DD) or an RFC 3339 time",
            if end { "end" } else { "start" }
        )));
    }
    // "T24" sorts after every time of that day.
    Ok(Some(if t.len() == 10 && end {
        format!("{t}T24")
    } else {
        t
    }))
}

/// A seq from a paging field.
fn seq(name: &str, text: &str) -> Result<Option<u64>, ApiError> {
    some(text)
        .map(|t| {
            t.parse::<u64>()
                .map_err(|_| ApiError::invalid(format!("{name}: {t:?} is not an entry number")))
        })
        .transpose()
}

impl Filters {
    fn query(&self, position: Position, limit: usize) -> Result<LogQuery, ApiError> {
        let (namespace, repository) = match some(&self.repository) {
            None => (None, None),
            Some(r) if !r.contains('/') => (Some(r), None),
            Some(r) => {
                let n = Name::parse(&r).map_err(ApiError::invalid)?;
                (Some(n.namespace), Some(n.repository))
            }
        };
        Ok(LogQuery {
            namespace,
            repository,
            kind: some(&self.kind),
            before_seq: match position {
                Position::Before(s) => Some(s),
                _ => None,
            },
            after_seq: match position {
                Position::After(s) => Some(s),
                _ => None,
            },
            start_time: bound(&self.start, false)?,
            end_time: bound(&self.end, true)?,
            tag: some(&self.tag),
            performer: some(&self.performer),
            limit,
        })
    }

    /// Where the page starts: `before` wins over `after`.
    fn position(&self) -> Result<Position, ApiError> {
        Ok(
            match (seq("before", &self.before)?, seq("after", &self.after)?) {
                (Some(b), _) => Position::Before(b),
                (None, Some(a)) => Position::After(a),
                (None, None) => Position::Newest,
            },
        )
    }

    /// Entries per page.
    fn shown(&self) -> Result<usize, ApiError> {
        match some(&self.limit) {
            None => Ok(SHOWN),
            Some(t) => t
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MOST_SHOWN).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "limit: {t:?} is not a number from 1 to {MOST_SHOWN}"
                    ))
                }),
        }
    }

    /// The matching entries, newest first, at most `max`, from the newest on.
    fn entries(&self, app: &App, max: usize) -> Result<Vec<ChainedEntry>, ApiError> {
        app.store
            .log(&self.query(Position::Newest, max)?)
            .map_err(ApiError::internal)
    }

    /// One page: its entries (newest first), and whether older and newer
    /// matching entries exist.
    fn page(&self, app: &App) -> Result<LogPage, ApiError> {
        let (position, shown) = (self.position()?, self.shown()?);
        let mut entries = app
            .store
            .log(&self.query(position, shown + 1)?)
            .map_err(ApiError::internal)?;
        let more = entries.len() > shown;
        let (older, newer) = match position {
            Position::Newest => (more, false),
            Position::Before(_) => (more, true),
            Position::After(_) => (true, more),
        };
        if more {
            // The extra entry is the one past the page's far end.
            match position {
                Position::After(_) => {
                    entries.remove(0);
                }
                _ => entries.truncate(shown),
            }
        }
        Ok(LogPage {
            entries,
            older,
            newer,
        })
    }
}

/// One page of the log.
struct LogPage {
    entries: Vec<ChainedEntry>,
    older: bool,
    newer: bool,
}

fn status(v: &Verification) -> Markup {
    match v {
        Verification::Verified {
            entries,
            last_seq,
            covered_through,
            ..
        } => html! {
            p class="ok" role="status" id="verification" {
                strong { "Verified" } ": the chain is intact up to entry " strong { (last_seq) }
                " (" (entries) " entries)"
                @if let Some(c) = covered_through { "; the signed checkpoint covers entries up to " (c) }
                "."
            }
        },
        Verification::Broken {
            reason,
            first_broken,
            ..
        } => html! {
            p class="bad" role="alert" id="verification" {
                strong { "Verification failed" }
                @if let Some(n) = first_broken { " at entry " strong { (n) } }
                ": " (reason)
            }
        },
    }
}

fn field(id: &str, label: &str, value: &str, kind: &str) -> Markup {
    html! {
        label for=(id) { (label) " " input id=(id) name=(id) type=(kind) value=(value); }
    }
}

/// `GET /console/logs`.
pub async fn show(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Result<Html<String>, ConsoleError> {
    let v = viewer(&app, &headers, peer)?;
    let f = filters.clone();
    let (
        verification,
        LogPage {
            entries,
            older,
            newer,
        },
    ) = blocking(move || -> Result<_, ApiError> {
        Ok((inspect::verification(&app)?, f.page(&app)?))
    })
    .await?;
    let query = filter_query(&filters);
    let paging = html! {
        @if older || newer {
            nav aria-label="Log pages" {
                @if let (true, Some(e)) = (newer, entries.first()) {
                    a rel="prev" href=(format!("/console/logs?{}after={}", and(&query), e.seq)) { "← Newer entries" }
                }
                @if older && newer { " · " }
                @if let (true, Some(e)) = (older, entries.last()) {
                    a rel="next" href=(format!("/console/logs?{}before={}", and(&query), e.seq)) { "Older entries →" }
                }
            }
        }
    };
    Ok(page(
        "Audit log",
        Some(&v),
        html! {
            (status(&verification))
            form method="get" action="/console/logs" {
                fieldset {
                    legend { "Filters" }
                    (field("kind", "Kind", &filters.kind, "text"))
                    (field("repository", "Organization or repository", &filters.repository, "text"))
                    (field("tag", "Tag", &filters.tag, "text"))
                    (field("performer", "Performer", &filters.performer, "text"))
                    (field("start", "From (UTC day)", &filters.start, "date"))
                    (field("end", "To (UTC day)", &filters.end, "date"))
                    button type="submit" { "Filter" }
                }
            }
            p {
                "Export every matching entry: "
                a href=(format!("/console/logs/export?format=quay&{query}")) { "Quay log rows (JSON lines)" } " · "
                a href=(format!("/console/logs/export?format=cloudevents&{query}")) { "CloudEvents (JSON lines)" }
            }
            @if entries.is_empty() {
                p { "No entry matches." }
                (paging)
            } @else {
                p { "Newest first; entries " (entries.last().map_or(0, |e| e.seq)) " to " (entries.first().map_or(0, |e| e.seq)) "." }
                table {
                    thead { tr {
                        th scope="col" { "Entry" } th scope="col" { "Time" } th scope="col" { "Kind" }
                        th scope="col" { "Repository" } th scope="col" { "Tag" } th scope="col" { "Performer" }
                        th scope="col" { "Details" } th scope="col" { "Plugin" }
                    } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td { (e.seq) }
                                td { (e.entry.time) }
                                td { (e.entry.kind) }
                                td { (e.entry.namespace) @if let Some(r) = &e.entry.repository { "/" (r) } }
                                td { (e.entry.tag.as_deref().unwrap_or("")) }
                                td { (e.entry.performer.name) " (" (e.entry.performer.kind) ")" }
                                td { code { (serde_json::Value::Object(e.entry.metadata.clone())) } }
                                td { (e.entry.plugin.name) "@" (e.entry.plugin.version) ", generation " (e.entry.plugin.generation) }
                            }
                        }
                    }
                }
                (paging)
            }
        },
    ))
}

/// `query` followed by `&` when it is not empty.
fn and(query: &str) -> String {
    if query.is_empty() {
        String::new()
    } else {
        format!("{query}&")
    }
}

/// The filters (and the page size) as a query string for the export and paging links.
fn filter_query(f: &Filters) -> String {
    let pairs = [
        ("kind", &f.kind),
        ("repository", &f.repository),
        ("tag", &f.tag),
        ("performer", &f.performer),
        ("start", &f.start),
        ("end", &f.end),
        ("limit", &f.limit),
    ];
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /console/logs/export?format=quay|cloudevents|json` with the page's filters,
/// oldest first.
pub async fn export(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Result<Response, ConsoleError> {
    viewer(&app, &headers, peer)?;
    let format: ExportFormat =
        filters
            .format
            .parse()
            .map_err(|e: tagguard_engine::audit::UnknownExportFormat| {
                ApiError::invalid(e.to_string())
            })?;
    let name = filters.format.clone();
    let text = blocking(move || -> Result<String, ApiError> {
        let mut entries = filters.entries(&app, EXPORTED)?;
        entries.reverse();
        Ok(export_entries(&entries, format, "tagguard-registry"))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"tagguard-log-{name}.jsonl\""),
            ),
        ],
        text,
    )
        .into_response())
}
