//! The policies pages of an organization and of a repository: the list, and for
//! admins the create (after an optional preview), edit and delete forms, through
//! the same `policies` and `inspect` functions as the REST API. A bad pattern
//! gets the engine's error with the position it names marked in the pattern.

use super::layout::{page, token};
use super::{ConsoleError, Viewer, acting, viewer};
use crate::app::{Shared, blocking};
use crate::errors::ApiError;
use crate::inspect;
use crate::oci::route::Name;
use crate::policies::{self, Owner, pattern_error_span};
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

/// The create, preview, edit and delete forms' fields.
#[derive(Deserialize)]
pub struct PolicyForm {
    token: String,
    /// `preview` or `create` (the create form), `update` or `delete` (a policy's form).
    action: String,
    /// On an organization's page: the repository of a new policy (empty for the organization).
    #[serde(default)]
    repository: String,
    #[serde(default)]
    pattern: String,
    /// Present (`on`) when the policy fires on names that do not match.
    #[serde(default)]
    negate: Option<String>,
}

/// Whose policies a page shows: an organization's, or a repository's.
#[derive(Clone, Debug)]
pub enum Place {
    /// `/console/organization/{ns}/policies`: every policy of the namespace.
    Organization(String),
    /// `/console/repository/{ns}/{repo}/policies`: the repository's own, and the
    /// organization's it inherits.
    Repository(Name),
}

impl Place {
    fn namespace(&self) -> &str {
        match self {
            Place::Organization(ns) => ns,
            Place::Repository(n) => &n.namespace,
        }
    }

    /// The page's path; forms post to it, and a policy's form to `{path}/{uuid}`.
    fn path(&self) -> String {
        match self {
            Place::Organization(ns) => format!("/console/organization/{ns}/policies"),
            Place::Repository(n) => format!("/console/repository/{}/policies", n.full()),
        }
    }

    fn title(&self) -> String {
        match self {
            Place::Organization(ns) => format!("Policies of {ns}"),
            Place::Repository(n) => format!("Policies of {}", n.full()),
        }
    }

    /// Whether this page may change `p`.
    fn holds(&self, p: &Policy) -> bool {
        match self {
            Place::Organization(ns) => p.namespace == *ns,
            Place::Repository(n) => Owner::from(n).owns(p),
        }
    }

    /// The owner of a new policy created here.
    fn owner(&self, repository_field: &str) -> Owner {
        match self {
            Place::Organization(ns) => {
                let r = repository_field.trim();
                Owner {
                    namespace: ns.clone(),
                    repository: (!r.is_empty()).then(|| r.to_string()),
                }
            }
            Place::Repository(n) => Owner::from(n),
        }
    }
}

impl From<&Name> for Owner {
    fn from(n: &Name) -> Self {
        Owner {
            namespace: n.namespace.clone(),
            repository: Some(n.repository.clone()),
        }
    }
}

/// The engine's refusal of a pattern, and where the pattern was typed.
struct Refusal {
    message: String,
    pattern: String,
    /// The id of the field that holds the pattern.
    field: String,
}

/// What the create form shows besides the list: a preview, or a refusal.
#[derive(Default)]
struct Outcome {
    preview: Option<PreviewReport>,
    refusal: Option<Refusal>,
    repository: String,
    pattern: String,
    negate: bool,
}

/// Checks the organization's name, and that a repository exists.
async fn check(app: &Shared, place: &Place) -> Result<(), ApiError> {
    tagguard_engine::names::check_namespace(place.namespace())
        .map_err(|e| ApiError::invalid(format!("organization {e}")))?;
    if let Place::Repository(n) = place {
        exists(app, &Owner::from(n)).await?;
    }
    Ok(())
}

/// Fails with 404 unless the owner's repository (if it names one) exists.
async fn exists(app: &Shared, owner: &Owner) -> Result<(), ApiError> {
    let Some(repo) = owner.repository.clone() else {
        return Ok(());
    };
    let (a, n, r) = (app.clone(), owner.namespace.clone(), repo.clone());
    let found = blocking(move || a.store.repository_exists(&n, &r))
        .await
        .map_err(ApiError::internal)?;
    if found {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "repository {}/{repo} does not exist",
            owner.namespace
        )))
    }
}

/// A policies page, with what the last form produced.
async fn render(
    app: Shared,
    v: Viewer,
    place: Place,
    status: StatusCode,
    outcome: Outcome,
) -> Result<Response, ConsoleError> {
    check(&app, &place).await?;
    let p = place.clone();
    let list = blocking(move || match &p {
        Place::Organization(ns) => app.store.namespace_policies(ns),
        Place::Repository(n) => app
            .store
            .policies_in_scope(&n.namespace, Some(&n.repository))
            .map(|(list, _)| list),
    })
    .await
    .map_err(ApiError::internal)?;
    let invalid = outcome.refusal.as_ref().map(|r| r.field.as_str());
    let body = html! {
        @if let Place::Repository(n) = &place {
            p {
                a href=(format!("/console/repository/{}", n.full())) { "Tags of " (n.full()) } " · "
                a href=(format!("/console/organization/{}/policies", n.namespace)) { "Policies of " (n.namespace) }
            }
        }
        @if list.is_empty() {
            p { "No immutability policy applies here." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Scope" } th scope="col" { "Pattern" } th scope="col" { "Fires on" }
                    th scope="col" { "Id" }
                    @if v.admin() { th scope="col" { "Change" } }
                } }
                tbody { @for p in &list { (row(&v, &place, p, invalid)) } }
            }
        }
        @if let Some(r) = &outcome.refusal { (refusal(r)) }
        @if v.admin() { (create_form(&v, &place, &outcome, invalid)) }
    };
    Ok((status, page(&place.title(), Some(&v), body)).into_response())
}

/// The engine's error, and the pattern with the position it names marked.
fn refusal(r: &Refusal) -> Markup {
    let span = pattern_error_span(&r.pattern, &r.message);
    html! {
        div class="bad" role="alert" id="policy-error" {
            p { "The pattern was refused:" }
            pre { (r.message) }
            @if let Some(span) = span { (marked(&r.pattern, span)) }
        }
    }
}

/// The trimmed pattern with the characters in `span` in a `<mark>`, a caret line
/// under them, and the position in words.
fn marked(pattern: &str, span: std::ops::Range<usize>) -> Markup {
    let chars: Vec<char> = pattern.trim().chars().collect();
    let (start, end) = (span.start.min(chars.len()), span.end.min(chars.len()));
    let before: String = chars[..start].iter().collect();
    let at: String = chars[start..end].iter().collect();
    let after: String = chars[end..].iter().collect();
    let carets = format!("{}{}", " ".repeat(start), "^".repeat((end - start).max(1)));
    html! {
        p id="pattern-position" {
            @if at.is_empty() {
                "At the end of the pattern (after character " (start) "):"
            } @else if end - start == 1 {
                "At character " (start + 1) " of the pattern:"
            } @else {
                "At characters " (start + 1) " to " (end) " of the pattern:"
            }
        }
        pre class="marked" aria-describedby="pattern-position" {
            code { (before) mark { @if at.is_empty() { "\u{a0}" } @else { (at) } } (after) }
            "\n"
            span aria-hidden="true" { (carets) }
        }
    }
}

/// `GET /console/organization/{ns}/policies`.
pub async fn show(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(ns): Path<String>,
) -> Result<Response, ConsoleError> {
    let v = viewer(&app, &headers, peer)?;
    render(
        app,
        v,
        Place::Organization(ns),
        StatusCode::OK,
        Outcome::default(),
    )
    .await
}

/// `GET /console/repository/{ns}/{repo}/policies`.
pub async fn show_repository(app: Shared, v: Viewer, name: Name) -> Result<Response, ConsoleError> {
    render(
        app,
        v,
        Place::Repository(name),
        StatusCode::OK,
        Outcome::default(),
    )
    .await
}

/// The `aria-invalid` and `aria-describedby` of a pattern field, when it holds the refused pattern.
fn invalid_attrs(id: &str, invalid: Option<&str>) -> (Option<&'static str>, Option<&'static str>) {
    if invalid == Some(id) {
        (Some("true"), Some("policy-error"))
    } else {
        (None, None)
    }
}

fn row(v: &Viewer, place: &Place, p: &Policy, invalid: Option<&str>) -> Markup {
    let id = format!("edit-{}", p.uuid);
    let negate = format!("negate-{}", p.uuid);
    let inherited = matches!(place, Place::Repository(_)) && p.repository.is_none();
    let (aria_invalid, described) = invalid_attrs(&id, invalid);
    html! {
        tr {
            td {
                (p.namespace) @if let Some(r) = &p.repository { "/" (r) }
                @if inherited {
                    " (inherited from "
                    a href=(format!("/console/organization/{}/policies", p.namespace)) { "the organization" }
                    ")"
                }
            }
            td { code { (p.tag_pattern) } }
            td { @if p.tag_pattern_matches { "matching names" } @else { "names that do not match" } }
            td { code { (p.uuid) } }
            @if v.admin() {
                td {
                    @if place.holds(p) && !inherited {
                        form method="post" action=(format!("{}/{}", place.path(), p.uuid)) {
                            (token(v))
                            label for=(id) { "Pattern" }
                            input id=(id) name="pattern" type="text" value=(p.tag_pattern) required
                                aria-invalid=[aria_invalid] aria-describedby=[described];
                            input id=(negate) name="negate" type="checkbox" checked[!p.tag_pattern_matches];
                            label for=(negate) { " fire on names that do not match" }
                            button type="submit" name="action" value="update" { "Save" }
                            button type="submit" name="action" value="delete" { "Delete" }
                        }
                    } @else {
                        "Change it on the organization's page."
                    }
                }
            }
        }
    }
}

fn create_form(v: &Viewer, place: &Place, o: &Outcome, invalid: Option<&str>) -> Markup {
    let (aria_invalid, described) = invalid_attrs("pattern", invalid);
    html! {
        h2 { "New policy" }
        form method="post" action=(place.path()) {
            (token(v))
            @if let Place::Organization(_) = place {
                p {
                    label for="repository" { "Repository (empty for the whole organization)" }
                    input id="repository" name="repository" type="text" value=(o.repository);
                }
            }
            p {
                label for="pattern" { "Tag pattern" }
                input id="pattern" name="pattern" type="text" value=(o.pattern) required
                    aria-invalid=[aria_invalid] aria-describedby=[described];
            }
            p {
                input id="negate" name="negate" type="checkbox" checked[o.negate];
                label for="negate" { " fire on names that do not match" }
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

/// `POST /console/organization/{ns}/policies`: preview or create.
pub async fn submit(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Form(form): Form<PolicyForm>,
) -> Result<Response, ConsoleError> {
    create_or_preview(app, peer, headers, Place::Organization(ns), form).await
}

/// `POST /console/organization/{ns}/policies/{uuid}`: update or delete.
pub async fn change(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((ns, uuid)): Path<(String, String)>,
    Form(form): Form<PolicyForm>,
) -> Result<Response, ConsoleError> {
    change_one(app, peer, headers, Place::Organization(ns), uuid, form).await
}

/// `POST /console/repository/{ns}/{repo}/policies` (preview or create) and
/// `.../policies/{uuid}` (update or delete).
pub async fn repository_post(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(rest): Path<String>,
    Form(form): Form<PolicyForm>,
) -> Result<Response, ConsoleError> {
    let rest = rest.trim_end_matches('/');
    if let Some(name) = rest.strip_suffix("/policies") {
        let name = Name::parse(name).map_err(ApiError::invalid)?;
        return create_or_preview(app, peer, headers, Place::Repository(name), form).await;
    }
    match rest.rsplit_once("/policies/") {
        Some((name, uuid)) if !uuid.contains('/') => {
            let name = Name::parse(name).map_err(ApiError::invalid)?;
            let uuid = uuid.to_string();
            change_one(app, peer, headers, Place::Repository(name), uuid, form).await
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only a repository's policies page takes forms",
        )
        .into()),
    }
}

async fn create_or_preview(
    app: Shared,
    peer: SocketAddr,
    headers: HeaderMap,
    place: Place,
    form: PolicyForm,
) -> Result<Response, ConsoleError> {
    let admin_for = (form.action != "preview").then_some("creating a policy");
    let v = acting(&app, &headers, peer, &form.token, admin_for)?;
    check(&app, &place).await?;
    let owner = place.owner(&form.repository);
    exists(&app, &owner).await?;
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
        Ok(()) if form.action == "create" => Ok(Redirect::to(&place.path()).into_response()),
        Ok(()) => render(app, v, place, StatusCode::OK, outcome).await,
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            outcome.refusal = Some(Refusal {
                message: e.detail,
                pattern: form.pattern,
                field: "pattern".into(),
            });
            render(app, v, place, StatusCode::BAD_REQUEST, outcome).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn change_one(
    app: Shared,
    peer: SocketAddr,
    headers: HeaderMap,
    place: Place,
    uuid: String,
    form: PolicyForm,
) -> Result<Response, ConsoleError> {
    let v = acting(&app, &headers, peer, &form.token, Some("changing a policy"))?;
    let (a, u) = (app.clone(), uuid.clone());
    let policy = blocking(move || a.store.policy(&u))
        .await
        .map_err(ApiError::internal)?
        .filter(|p| place.holds(p))
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
        Ok(()) => Ok(Redirect::to(&place.path()).into_response()),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let outcome = Outcome {
                refusal: Some(Refusal {
                    message: e.detail,
                    pattern: form.pattern,
                    field: format!("edit-{uuid}"),
                }),
                ..Outcome::default()
            };
            render(app, v, place, StatusCode::BAD_REQUEST, outcome).await
        }
        Err(e) => Err(e.into()),
    }
}
