//! The console's reading pages: repositories, a repository's tags, a tag's
//! history, the plugin, and the retroactive runs.

use super::layout::{lock, page, token};
use super::{ConsoleError, Viewer, viewer};
use crate::app::{Shared, blocking};
use crate::errors::ApiError;
use crate::inspect;
use crate::oci::route::Name;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use std::net::SocketAddr;
use tagguard_engine::PLUGIN_SWAPPED;
use tagguard_engine::audit::TagEvent;

type Page = Result<Html<String>, ConsoleError>;

/// `GET /console`: to `/console/`.
pub async fn to_index() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET /console/`: every repository with its tag and immutable counts.
pub async fn index(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Page {
    let v = viewer(&app, &headers, peer)?;
    let repositories = blocking(move || app.store.repositories())
        .await
        .map_err(ApiError::internal)?;
    Ok(page(
        "Repositories",
        Some(&v),
        html! {
            @if repositories.is_empty() {
                p { "No repository yet: push an image to create one." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Repository" } th scope="col" { "Tags" } th scope="col" { "Immutable" } th scope="col" { "Policies" } } }
                    tbody {
                        @for r in &repositories {
                            tr {
                                td { a href=(format!("/console/repository/{}/{}", r.namespace, r.repository)) { (r.namespace) "/" (r.repository) } }
                                td { (r.tags) }
                                td { (r.immutable) }
                                td { a href=(format!("/console/organization/{}/policies", r.namespace)) { "Policies of " (r.namespace) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /console/repository/{ns}/{repo}` (tags), `.../tag/{tag}` (a tag's history)
/// and `.../policies` (the repository's policies).
pub async fn repository(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(rest): Path<String>,
) -> Result<Response, ConsoleError> {
    let v = viewer(&app, &headers, peer)?;
    let rest = rest.trim_end_matches('/');
    if let Some(name) = rest.strip_suffix("/policies") {
        let name = Name::parse(name).map_err(ApiError::invalid)?;
        return super::policies::show_repository(app, v, name).await;
    }
    Ok(match rest.rsplit_once("/tag/") {
        Some((name, tag)) => {
            let name = Name::parse(name).map_err(ApiError::invalid)?;
            history(app, v, name, tag.to_string()).await?
        }
        None => {
            let name = Name::parse(rest).map_err(ApiError::invalid)?;
            tags(app, v, name).await?
        }
    }
    .into_response())
}

async fn tags(app: Shared, v: Viewer, name: Name) -> Page {
    let n = name.clone();
    let tags = blocking(move || {
        if !app.store.repository_exists(&n.namespace, &n.repository)? {
            return Ok(None);
        }
        app.store.alive_tags(&n.namespace, &n.repository).map(Some)
    })
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found(format!("repository {} does not exist", name.full())))?;
    Ok(page(
        &format!("Repository {}", name.full()),
        Some(&v),
        html! {
            p {
                a href=(format!("/console/repository/{}/policies", name.full())) { "Immutability policies of " (name.full()) }
                " · "
                a href=(format!("/console/organization/{}/policies", name.namespace)) { "Immutability policies of " (name.namespace) }
            }
            @if tags.is_empty() {
                p { "No tag." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Tag" } th scope="col" { "State" } th scope="col" { "Manifest" } } }
                    tbody {
                        @for t in &tags {
                            tr {
                                td { a href=(format!("/console/repository/{}/tag/{}", name.full(), t.name)) { (t.name) } }
                                td { @if t.immutable { (lock()) } @else { "mutable" } }
                                td { code { (t.manifest_digest) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

fn event_row(e: &TagEvent) -> Markup {
    let refused = e.outcome.as_deref() == Some("denied");
    html! {
        tr {
            td { (e.seq) }
            td { (e.time) }
            td { @if refused { span class="refused" { (e.kind) } } @else { (e.kind) } }
            td { (e.performer) }
            td { (e.trigger.as_deref().unwrap_or("")) }
            td {
                @if let Some(p) = &e.policy_uuid {
                    code { (p) }
                    @if let Some(pattern) = &e.policy_pattern { " (" code { (pattern) } ")" }
                }
            }
            td { (e.run_id.as_deref().unwrap_or("")) }
            td { (e.outcome.as_deref().unwrap_or("")) }
            td { (e.plugin) br; code { (e.plugin_digest) } }
        }
    }
}

async fn history(app: Shared, v: Viewer, name: Name, tag: String) -> Page {
    let (n, t) = (name.clone(), tag.clone());
    let report = blocking(move || inspect::tag_report(&app, &n, &t)).await?;
    let title = format!("Tag {}:{tag}", name.full());
    Ok(page(
        &title,
        Some(&v),
        html! {
            p { a href=(format!("/console/repository/{}", name.full())) { "All tags of " (name.full()) } }
            h2 { "Now" }
            @match &report.current {
                None => p { "The tag does not exist now." },
                Some(t) => p {
                    @if t.immutable { (lock()) } @else { "mutable" }
                    " on " code { (t.manifest_digest) }
                },
            }
            @if let Some(cause) = &report.history.cause {
                h2 { "Why it is immutable" }
                p {
                    @if let Some(p) = &cause.policy_uuid {
                        "Policy " code { (p) }
                        @if let Some(pattern) = &cause.policy_pattern { " (pattern " code { (pattern) } ")" }
                    } @else {
                        "Made immutable by " strong { (cause.performer) } " by hand"
                    }
                    ", trigger " strong { (cause.trigger.as_deref().unwrap_or("manual")) }
                    @if let Some(run) = &cause.run_id { ", run " code { (run) } }
                    ", performed by " strong { (cause.performer) }
                    " at " (cause.time)
                    ", plugin " (cause.plugin) " (log entry " (cause.seq) ")."
                }
            }
            @if !report.firing.is_empty() {
                h2 { "Policies that fire on this name" }
                ul { @for p in &report.firing { li { code { (p.tag_pattern) } " (" code { (p.uuid) } ")" } } }
            }
            h2 { "History" }
            @if report.history.events.is_empty() {
                p { "No recorded event." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Entry" } th scope="col" { "Time" } th scope="col" { "Kind" }
                        th scope="col" { "Performer" } th scope="col" { "Trigger" } th scope="col" { "Policy" }
                        th scope="col" { "Run" } th scope="col" { "Outcome" } th scope="col" { "Plugin" }
                    } }
                    tbody { @for e in &report.history.events { (event_row(e)) } }
                }
            }
        },
    ))
}

/// `GET /console/plugin`: the serving plugin, its swaps and rollbacks, and the
/// swap and rollback forms for admins.
pub async fn plugin(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Page {
    let v = viewer(&app, &headers, peer)?;
    let info = app.guard.info();
    let stamp = app.guard.stamp();
    let generation = app.guard.generation_id();
    let a = app.clone();
    let swaps = blocking(move || {
        a.store.log(&crate::store::LogQuery {
            kind: Some(PLUGIN_SWAPPED.into()),
            limit: 200,
            ..Default::default()
        })
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(page(
        "Plugin",
        Some(&v),
        html! {
            dl {
                dt { "Name" } dd { (info.name) }
                dt { "Version" } dd { (info.version) }
                dt { "Digest" } dd { code { (stamp.digest) } }
                dt { "Generation" } dd { (generation) }
            }
            h2 { "Swaps and rollbacks" }
            @if swaps.is_empty() {
                p { "The plugin has not been swapped." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Entry" } th scope="col" { "Time" } th scope="col" { "Performer" } th scope="col" { "Details" } } }
                    tbody {
                        @for e in &swaps {
                            tr {
                                td { (e.seq) }
                                td { (e.entry.time) }
                                td { (e.entry.performer.name) }
                                td { code { (serde_json::Value::Object(e.entry.metadata.clone())) } }
                            }
                        }
                    }
                }
            }
            @if v.admin() {
                h2 { "Swap" }
                form method="post" action="/console/plugin/swap" enctype="multipart/form-data" {
                    (token(&v))
                    label for="plugin" { "Plugin component (.wasm)" }
                    input id="plugin" name="plugin" type="file" accept=".wasm" required;
                    button type="submit" { "Swap in" }
                }
                h2 { "Rollback" }
                form method="post" action="/console/plugin/rollback" {
                    (token(&v))
                    button type="submit" { "Roll back to the previous plugin" }
                }
            }
        },
    ))
}

/// `GET /console/runs`: retroactive runs, newest first, with a finish button for
/// stopped ones (admins).
pub async fn runs(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Page {
    let v = viewer(&app, &headers, peer)?;
    let runs = blocking(move || app.store.runs())
        .await
        .map_err(ApiError::internal)?;
    Ok(page(
        "Retroactive runs",
        Some(&v),
        html! {
            @if runs.is_empty() {
                p { "No run yet: a run starts when a policy is created or updated." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Run" } th scope="col" { "Policy" } th scope="col" { "Scope" }
                        th scope="col" { "Trigger" } th scope="col" { "Performer" } th scope="col" { "Status" }
                        th scope="col" { "Tags made immutable" } th scope="col" { "Started" } th scope="col" { "Ended" }
                        th scope="col" { "Notes" }
                    } }
                    tbody {
                        @for r in &runs {
                            tr {
                                td { (r.id) }
                                td { code { (r.policy_uuid) } }
                                td { (r.namespace) @if let Some(repo) = &r.repository { "/" (repo) } }
                                td { (r.trigger) }
                                td { (r.performer) }
                                td { strong { (r.status) } }
                                td { (r.changed) }
                                td { (r.started) }
                                td { (r.finished.as_deref().unwrap_or("")) }
                                td {
                                    @if let Some(e) = &r.error { (e) }
                                    @if let Some(by) = r.finished_by { " Finished by run " (by) "." }
                                    @if v.admin() && r.finished_by.is_none() && matches!(r.status.as_str(), "incomplete" | "failed") {
                                        (super::actions::finish_button(&v, r.id))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}
