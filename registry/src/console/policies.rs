//! The policies page of an organization: the list, and for admins the create
//! (after an optional preview), edit and delete forms, through the same
//! `policies` functions as the REST API.

use super::layout::{page, token};
use super::{ConsoleError, Viewer, acting, viewer};
use crate::app::{Shared, blocking};
use crate::errors::ApiError;
use crate::inspect;
use crate::policies::{self, Owner};
use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::net::SocketAddr;
use tagguard_engine::{Policy, PreviewReport};

/// Tags shown in a preview's sample.
const SAMPLE: u32 = 10;

/// The create and preview form.
#[derive(Deserialize)]
pub struct PolicyForm {
    token: String,
    /// `preview` or `create`.
    action: String,
    #[serde(default)]
    repository: String,
    pattern: String,
    /// Present (`on`) when the policy fires on names that do not match.
    #[serde(default)]
    negate: Option<String>,
}

/// The edit and delete form of one policy.
#[derive(Deserialize)]
pub struct ChangeForm {
    token: String,
    /// `update` or `delete`.
    action: String,
    #[serde(default)]
    pattern: String,
    #[serde(default)]
    negate: Option<String>,
}

/// What the create form shows besides the list: a preview, or an error.
#[derive(Default)]
struct Outcome {
    preview: Option<PreviewReport>,
    error: Option<String>,
    repository: String,
    pattern: String,
    negate: bool,
}

/// The policies page, with what the last form produced.
async fn render(
    app: Shared,
    v: Viewer,
    ns: String,
    status: StatusCode,
    outcome: Outcome,
) -> Result<Response, ConsoleError> {
    tagguard_engine::names::check_namespace(&ns)
        .map_err(|e| ApiError::invalid(format!("organization {e}")))?;
    let n = ns.clone();
    let list = blocking(move || app.store.namespace_policies(&n))
        .await
        .map_err(ApiError::internal)?;
    let body = html! {
        @if list.is_empty() {
            p { "No immutability policy in " (ns) "." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Scope" } th scope="col" { "Pattern" } th scope="col" { "Fires on" }
                    th scope="col" { "Id" }
                    @if v.admin() { th scope="col" { "Change" } }
                } }
                tbody { @for p in &list { (row(&v, &ns, p)) } }
            }
        }
        @if let Some(e) = &outcome.error {
            div class="bad" role="alert" { p { "The policy was not saved:" } pre { (e) } }
        }
        @if v.admin() { (create_form(&v, &ns, &outcome)) }
    };
    Ok((status, page(&format!("Policies of {ns}"), Some(&v), body)).into_response())
}

/// `GET /console/organization/{ns}/policies`.
pub async fn show(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(ns): Path<String>,
) -> Result<Response, ConsoleError> {
    let v = viewer(&app, &headers, peer)?;
    render(app, v, ns, StatusCode::OK, Outcome::default()).await
}

fn row(v: &Viewer, ns: &str, p: &Policy) -> Markup {
    let id = format!("edit-{}", p.uuid);
    html! {
        tr {
            td { (ns) @if let Some(r) = &p.repository { "/" (r) } }
            td { code { (p.tag_pattern) } }
            td { @if p.tag_pattern_matches { "matching names" } @else { "names that do not match" } }
            td { code { (p.uuid) } }
            @if v.admin() {
                td {
                    form method="post" action=(format!("/console/organization/{ns}/policies/{}", p.uuid)) {
                        (token(v))
                        label for=(id) { "Pattern" }
                        input id=(id) name="pattern" type="text" value=(p.tag_pattern) required;
                        label {
                            input name="negate" type="checkbox" checked[!p.tag_pattern_matches];
                            " fire on names that do not match"
                        }
                        button type="submit" name="action" value="update" { "Save" }
                        button type="submit" name="action" value="delete" { "Delete" }
                    }
                }
            }
        }
    }
}

fn create_form(v: &Viewer, ns: &str, o: &Outcome) -> Markup {
    html! {
        h2 { "New policy" }
        form method="post" action=(format!("/console/organization/{ns}/policies")) {
            (token(v))
            p {
                label for="repository" { "Repository (empty for the whole organization)" }
                input id="repository" name="repository" type="text" value=(o.repository);
            }
            p {
                label for="pattern" { "Tag pattern" }
                input id="pattern" name="pattern" type="text" value=(o.pattern) required;
            }
            p {
                label {
                    input name="negate" type="checkbox" checked[o.negate];
                    " fire on names that do not match"
                }
            }
            button type="submit" name="action" value="preview" { "Preview" }
            " "
            button type="submit" name="action" value="create" { "Create" }
        }
        @if let Some(p) = &o.preview {
            section aria-labelledby="preview" class="ok" role="status" {
                h3 id="preview" { "Preview" }
                p { "This pattern would make " strong id="preview-count" { (p.count) } " mutable tags immutable." }
                @if !p.sample.is_empty() {
                    ul { @for t in &p.sample { li { (t.namespace) "/" (t.repository) ":" (t.name) } } }
                }
            }
        }
    }
}

fn owner(ns: &str, repository: &str) -> Owner {
    let r = repository.trim();
    Owner {
        namespace: ns.to_string(),
        repository: (!r.is_empty()).then(|| r.to_string()),
    }
}

/// `POST /console/organization/{ns}/policies`: preview or create.
pub async fn submit(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Form(form): Form<PolicyForm>,
) -> Result<Response, ConsoleError> {
    let admin_for = (form.action != "preview").then_some("creating a policy");
    let v = acting(&app, &headers, peer, &form.token, admin_for)?;
    tagguard_engine::names::check_namespace(&ns)
        .map_err(|e| ApiError::invalid(format!("organization {e}")))?;
    let owner = owner(&ns, &form.repository);
    if let Some(repo) = &owner.repository {
        let (a, n, r) = (app.clone(), ns.clone(), repo.clone());
        let exists = blocking(move || a.store.repository_exists(&n, &r))
            .await
            .map_err(ApiError::internal)?;
        if !exists {
            return Err(
                ApiError::not_found(format!("repository {ns}/{repo} does not exist")).into(),
            );
        }
    }
    let matches = form.negate.is_none();
    let mut outcome = Outcome {
        repository: form.repository.clone(),
        pattern: form.pattern.clone(),
        negate: !matches,
        ..Outcome::default()
    };
    let (a, c, pattern) = (app.clone(), v.caller.clone(), form.pattern.clone());
    let result = match form.action.as_str() {
        "preview" => blocking(move || inspect::preview(&a, &owner, &pattern, matches, SAMPLE))
            .await
            .map(|p| outcome.preview = Some(p)),
        "create" => blocking(move || policies::create(&a, &c, &owner, &pattern, matches))
            .await
            .map(|_| ()),
        other => {
            return Err(
                ApiError::invalid(format!("action: {other:?} is not preview or create")).into(),
            );
        }
    };
    match result {
        Ok(()) if form.action == "create" => {
            Ok(Redirect::to(&format!("/console/organization/{ns}/policies")).into_response())
        }
        Ok(()) => render(app, v, ns, StatusCode::OK, outcome).await,
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            outcome.error = Some(e.detail);
            render(app, v, ns, StatusCode::BAD_REQUEST, outcome).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /console/organization/{ns}/policies/{uuid}`: update or delete.
pub async fn change(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((ns, uuid)): Path<(String, String)>,
    Form(form): Form<ChangeForm>,
) -> Result<Response, ConsoleError> {
    let v = acting(&app, &headers, peer, &form.token, Some("changing a policy"))?;
    let (a, u, n) = (app.clone(), uuid.clone(), ns.clone());
    let policy = blocking(move || a.store.policy(&u))
        .await
        .map_err(ApiError::internal)?
        .filter(|p| p.namespace == n)
        .ok_or_else(|| ApiError::not_found("immutability policy not found"))?;
    let (a, c) = (app.clone(), v.caller.clone());
    let matches = form.negate.is_none();
    let result = match form.action.as_str() {
        "update" => {
            let pattern = form.pattern.clone();
            blocking(move || policies::update(&a, &c, &policy, &pattern, matches).map(|_| ())).await
        }
        "delete" => blocking(move || policies::delete(&a, &c, &policy)).await,
        other => {
            return Err(
                ApiError::invalid(format!("action: {other:?} is not update or delete")).into(),
            );
        }
    };
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/console/organization/{ns}/policies")).into_response()),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let outcome = Outcome {
                error: Some(e.detail),
                ..Outcome::default()
            };
            render(app, v, ns, StatusCode::BAD_REQUEST, outcome).await
        }
        Err(e) => Err(e.into()),
    }
}
