//! The REST API under `/api/v1/`: Quay's immutability policy, tag and log
//! endpoints, and tagguard's own (`/api/v1/tagguard/`). Repository paths are
//! parsed from the right, as on `/v2/`, so names of any depth work.

use crate::app::{Caller, Shared, WriteError, blocking};
use crate::errors::ApiError;
use crate::inspect::{self, Verification};
use crate::oci::route::Name;
use crate::policies::{self, Owner};
use crate::store::LogQuery;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use tagguard_engine::audit::{ChainedEntry, quay_log_line};
use tagguard_engine::{
    DeleteOutcome, EngineError, Policy, Removal, RemovalAction, SwapOutcome, Tag,
};

type Result<T> = std::result::Result<T, ApiError>;

/// Entries per page of the logs API.
const LOG_PAGE: usize = 100;

/// Largest JSON body accepted.
const MAX_JSON: usize = 1 << 20;

/// Largest plugin component accepted by a swap.
const MAX_PLUGIN: usize = 64 << 20;

/// Every `/api/v1/` request.
pub async fn handle(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    match dispatch(app, peer, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// One request: who, how, the path segments after `/api/v1/`, the query and the body.
struct Call {
    app: Shared,
    caller: Caller,
    method: Method,
    query: HashMap<String, String>,
    body: Body,
}

async fn dispatch(app: Shared, peer: SocketAddr, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let caller = app
        .caller(&parts.headers, Some(peer))
        .ok_or_else(ApiError::unauthorized)?;
    let path = parts.uri.path().trim_start_matches("/api/v1/").to_string();
    let query = query_map(parts.uri.query());
    let call = Call {
        app,
        caller,
        method: parts.method,
        query,
        body,
    };
    let path = path.trim_end_matches('/');
    if let Some(rest) = path.strip_prefix("organization/") {
        return organization(call, rest).await;
    }
    if let Some(rest) = path.strip_prefix("repository/") {
        return repository(call, rest).await;
    }
    if let Some(rest) = path.strip_prefix("tagguard/") {
        return tagguard(call, rest).await;
    }
    Err(ApiError::not_found(format!("no API route /api/v1/{path}")))
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2F", "/")))
        .collect()
}

fn require_admin(caller: &Caller, what: &str) -> Result<()> {
    if caller.account.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{what} needs an admin account; {} is not one",
            caller.account.name
        )))
    }
}

async fn body_bytes(body: Body, limit: usize) -> Result<Bytes> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::invalid(format!("body: larger than {limit} bytes")))
}

async fn json_body<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T> {
    let bytes = body_bytes(body, MAX_JSON).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("body: {e}")))
}

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        format!("method {method} is not allowed here"),
    )
}

/// A Quay policy body: `tagPattern`, and `tagPatternMatches` (default true).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyBody {
    tag_pattern: String,
    #[serde(default = "yes")]
    tag_pattern_matches: bool,
}

fn yes() -> bool {
    true
}

/// A policy as Quay's API shows it.
fn policy_view(p: &Policy) -> Value {
    json!({
        "uuid": p.uuid,
        "tagPattern": p.tag_pattern,
        "tagPatternMatches": p.tag_pattern_matches,
    })
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

async fn organization(call: Call, rest: &str) -> Result<Response> {
    let mut parts = rest.splitn(3, '/');
    let ns = parts.next().unwrap_or_default().to_string();
    tagguard_engine::names::check_namespace(&ns)
        .map_err(|e| ApiError::invalid(format!("organization {e}")))?;
    let owner = Owner {
        namespace: ns.clone(),
        repository: None,
    };
    match (parts.next(), parts.next()) {
        (Some("immutabilitypolicy"), uuid) => policy_endpoint(call, owner, uuid).await,
        (Some("logs"), None) => logs(call, ns, None).await,
        _ => Err(ApiError::not_found(format!(
            "no API route /api/v1/organization/{rest}"
        ))),
    }
}

async fn repository(call: Call, rest: &str) -> Result<Response> {
    // Parse from the right: the known suffixes, then the name.
    let (name, tail): (&str, Vec<&str>) = if let Some(n) = rest.strip_suffix("/logs") {
        (n, vec!["logs"])
    } else if let Some(n) = rest.strip_suffix("/immutabilitypolicy") {
        (n, vec!["immutabilitypolicy"])
    } else {
        let (head, last) = rest.rsplit_once('/').ok_or_else(|| {
            ApiError::not_found(format!("no API route /api/v1/repository/{rest}"))
        })?;
        if let Some(n) = head.strip_suffix("/immutabilitypolicy") {
            (n, vec!["immutabilitypolicy", last])
        } else if let Some(n) = head.strip_suffix("/tag") {
            (n, vec!["tag", last])
        } else {
            return Err(ApiError::not_found(format!(
                "no API route /api/v1/repository/{rest}"
            )));
        }
    };
    let name = Name::parse(name).map_err(ApiError::invalid)?;
    let store = call.app.store.clone();
    let n = name.clone();
    let exists = blocking(move || store.repository_exists(&n.namespace, &n.repository))
        .await
        .map_err(ApiError::internal)?;
    if !exists {
        return Err(ApiError::not_found(format!(
            "repository {} does not exist",
            name.full()
        )));
    }
    let owner = Owner {
        namespace: name.namespace.clone(),
        repository: Some(name.repository.clone()),
    };
    match tail.as_slice() {
        ["logs"] => logs(call, name.namespace, Some(name.repository)).await,
        ["immutabilitypolicy"] => policy_endpoint(call, owner, None).await,
        ["immutabilitypolicy", uuid] => policy_endpoint(call, owner, Some(uuid)).await,
        ["tag", tag] => tag_endpoint(call, name, tag.to_string()).await,
        _ => Err(ApiError::not_found("no such API route")),
    }
}

/// `immutabilitypolicy/` (list, create) and `immutabilitypolicy/{uuid}` (get, update, delete).
async fn policy_endpoint(call: Call, owner: Owner, uuid: Option<&str>) -> Result<Response> {
    let app = call.app.clone();
    let caller = call.caller.clone();
    match (call.method.clone(), uuid) {
        (Method::GET, None) => {
            let o = owner.clone();
            let policies = blocking(move || app.store.namespace_policies(&o.namespace))
                .await
                .map_err(ApiError::internal)?;
            let list: Vec<Value> = policies
                .iter()
                .filter(|p| owner.owns(p))
                .map(policy_view)
                .collect();
            Ok(json_response(StatusCode::OK, json!({"policies": list})))
        }
        (Method::POST, None) => {
            require_admin(&caller, "creating a policy")?;
            let body: PolicyBody = json_body(call.body).await?;
            let applied = blocking(move || {
                policies::create(
                    &app,
                    &caller,
                    &owner,
                    &body.tag_pattern,
                    body.tag_pattern_matches,
                )
            })
            .await?;
            Ok(json_response(
                StatusCode::CREATED,
                json!({"uuid": applied.policy.uuid, "run": run_view(&applied.run)}),
            ))
        }
        (method, Some(uuid)) => {
            let uuid = uuid.to_string();
            let a = app.clone();
            let policy = blocking(move || a.store.policy(&uuid))
                .await
                .map_err(ApiError::internal)?
                .filter(|p| owner.owns(p))
                .ok_or_else(|| ApiError::not_found("immutability policy not found"))?;
            match method {
                Method::GET => Ok(json_response(StatusCode::OK, policy_view(&policy))),
                Method::PUT => {
                    require_admin(&caller, "updating a policy")?;
                    let body: PolicyBody = json_body(call.body).await?;
                    let applied = blocking(move || {
                        policies::update(
                            &app,
                            &caller,
                            &policy,
                            &body.tag_pattern,
                            body.tag_pattern_matches,
                        )
                    })
                    .await?;
                    let mut view = policy_view(&applied.policy);
                    view["run"] = run_view(&applied.run);
                    Ok(json_response(StatusCode::OK, view))
                }
                Method::DELETE => {
                    require_admin(&caller, "deleting a policy")?;
                    blocking(move || policies::delete(&app, &caller, &policy)).await?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                other => Err(method_not_allowed(&other)),
            }
        }
        (other, None) => Err(method_not_allowed(&other)),
    }
}

/// A run as the API shows it.
fn run_view(run: &crate::store::RunRow) -> Value {
    let mut v = serde_json::to_value(run).unwrap_or(Value::Null);
    v["count"] = run.changed.into();
    v["run_id"] = run.engine_run_id.clone().into();
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    immutable: bool,
}

/// Decides on the alive tag `name:tag` with fresh state until a decision commits (a
/// `Conflict` means the state moved since it was read); 404 when there is no such tag.
fn on_alive_tag<T>(
    app: &crate::app::App,
    name: &Name,
    tag: &str,
    mut decide: impl FnMut(Tag) -> std::result::Result<T, WriteError>,
) -> Result<T> {
    for _ in 0..crate::app::DECIDE_ATTEMPTS {
        let current = app
            .store
            .alive_tag(&name.namespace, &name.repository, tag)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found(format!("tag {tag} does not exist")))?;
        match decide(current) {
            Err(WriteError::Engine(EngineError::Conflict { .. })) => continue,
            Err(WriteError::Engine(e)) => return Err(policies::engine_error(e)),
            Err(e) => return Err(ApiError::internal(e)),
            Ok(v) => return Ok(v),
        }
    }
    Err(ApiError::internal(
        "the tag kept changing while it was decided",
    ))
}

/// `PUT tag/{tag}` with `{"immutable": bool}`; `DELETE tag/{tag}`.
async fn tag_endpoint(call: Call, name: Name, tag: String) -> Result<Response> {
    let app = call.app.clone();
    let caller = call.caller.clone();
    match call.method {
        Method::PUT => {
            let body: TagBody = json_body(call.body).await?;
            if !body.immutable {
                require_admin(&caller, "clearing a tag's immutability")?;
            }
            let changed = blocking(move || {
                let changed = on_alive_tag(&app, &name, &tag, |current| {
                    Ok(app
                        .guard
                        .manual_change(&caller.actor(), &current, body.immutable)?)
                })?;
                if changed {
                    app.metrics.manual_change();
                }
                Ok::<_, ApiError>(changed)
            })
            .await?;
            Ok(json_response(
                StatusCode::OK,
                json!({"immutable": body.immutable, "changed": changed}),
            ))
        }
        Method::DELETE => {
            let outcome = blocking(move || {
                let outcome = on_alive_tag(&app, &name, &tag, |current| {
                    let (policies, _) = app
                        .store
                        .policies_in_scope(&name.namespace, Some(&name.repository))?;
                    let removal = Removal {
                        actor: caller.actor(),
                        tags: vec![current],
                        policies,
                        action: RemovalAction::DeleteTags,
                    };
                    Ok(app.guard.delete(&removal)?)
                })?;
                app.metrics
                    .delete(matches!(outcome, DeleteOutcome::Allowed));
                match outcome {
                    DeleteOutcome::Allowed => Ok(()),
                    _ => Err(ApiError::immutable("delete", &tag)),
                }
            })
            .await;
            outcome?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        other => Err(method_not_allowed(&other)),
    }
}

/// Quay's date format for logs: `Tue, 03 Nov 2026 10:00:00 -0000`.
fn quay_date(rfc3339: &str) -> String {
    let num = |r: std::ops::Range<usize>| rfc3339.get(r).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return rfc3339.to_string();
    };
    let time = rfc3339.get(11..19).unwrap_or("00:00:00");
    // Days since 1970-01-01 (proleptic Gregorian), for the weekday.
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y:04} {time} -0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m as usize).clamp(1, 12) - 1]
    )
}

/// A time bound: Quay's `MM/DD/YYYY` (a whole UTC day) or RFC 3339.
fn time_bound(text: &str, end: bool) -> Result<String> {
    let parts: Vec<&str> = text.split(['/', '%']).collect();
    if let [m, d, y] = parts.as_slice()
        && let (Ok(m), Ok(d), Ok(y)) = (m.parse::<u32>(), d.parse::<u32>(), y.parse::<u32>())
    {
        // "T24" sorts after every time of that day.
        let time = if end { "T24" } else { "T00:00:00" };
        return Ok(format!("{y:04}-{m:02}-{d:02}{time}"));
    }
    if text.len() >= 10 && text.as_bytes()[4] == b'-' {
        return Ok(text.to_string());
    }
    Err(ApiError::invalid(format!(
        "{}: {text:?} is not MM/DD/YYYY or an RFC 3339 time",
        if end { "endtime" } else { "starttime" }
    )))
}

/// One log as Quay's API shows it.
fn log_view(e: &ChainedEntry) -> Value {
    let line = quay_log_line(e);
    let metadata: Value = line["metadata_json"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let p = &e.entry.performer;
    json!({
        "kind": e.entry.kind,
        "metadata": metadata,
        "ip": p.ip,
        "datetime": quay_date(&e.entry.time),
        "performer": {"kind": p.kind, "name": p.name, "is_robot": p.kind == "robot"},
        "namespace": {"kind": "org", "name": e.entry.namespace},
    })
}

/// A page of a namespace's or a repository's log, in Quay's shape.
async fn logs(call: Call, ns: String, repo: Option<String>) -> Result<Response> {
    log_page(call, Some(ns), repo, log_view).await
}

/// One page of the log, newest first (`next_page`, `starttime`, `endtime`, `kind`);
/// `view` shapes each entry.
async fn log_page(
    call: Call,
    ns: Option<String>,
    repo: Option<String>,
    view: fn(&ChainedEntry) -> Value,
) -> Result<Response> {
    if call.method != Method::GET {
        return Err(method_not_allowed(&call.method));
    }
    let q = &call.query;
    let query =
        LogQuery {
            namespace: ns,
            repository: repo,
            kind: q.get("kind").cloned(),
            before_seq: match q.get("next_page") {
                Some(p) => Some(p.parse::<u64>().map_err(|_| {
                    ApiError::invalid(format!("next_page: {p:?} is not a page token"))
                })?),
                None => None,
            },
            start_time: q
                .get("starttime")
                .map(|t| time_bound(t, false))
                .transpose()?,
            end_time: q.get("endtime").map(|t| time_bound(t, true)).transpose()?,
            limit: LOG_PAGE + 1,
            ..LogQuery::default()
        };
    let store = call.app.store.clone();
    let mut entries = blocking(move || store.log(&query))
        .await
        .map_err(ApiError::internal)?;
    let more = entries.len() > LOG_PAGE;
    entries.truncate(LOG_PAGE);
    let mut body = json!({"logs": entries.iter().map(view).collect::<Vec<_>>()});
    if more && let Some(last) = entries.last() {
        body["next_page"] = last.seq.to_string().into();
    }
    Ok(json_response(StatusCode::OK, body))
}

/// tagguard's own API.
async fn tagguard(call: Call, rest: &str) -> Result<Response> {
    let app = call.app.clone();
    let caller = call.caller.clone();
    let segments: Vec<&str> = rest.split('/').collect();
    match (call.method.clone(), segments.as_slice()) {
        (Method::GET, ["verify"]) => {
            let report = blocking(move || inspect::verification(&app)).await?;
            Ok(json_response(StatusCode::OK, verification_view(&report)))
        }
        (Method::GET, ["repositories"]) => {
            let repositories = blocking(move || app.store.repositories())
                .await
                .map_err(ApiError::internal)?;
            Ok(json_response(
                StatusCode::OK,
                json!({"repositories": repositories}),
            ))
        }
        (Method::GET, ["runs"]) => {
            let runs = blocking(move || app.store.runs())
                .await
                .map_err(ApiError::internal)?;
            let list: Vec<Value> = runs.iter().map(run_view).collect();
            Ok(json_response(StatusCode::OK, json!({"runs": list})))
        }
        (Method::GET, ["runs", id]) => {
            let id: i64 = id
                .parse()
                .map_err(|_| ApiError::invalid(format!("run id {id:?} is not a number")))?;
            let run = blocking(move || app.store.run(id))
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::not_found(format!("run {id} does not exist")))?;
            Ok(json_response(StatusCode::OK, run_view(&run)))
        }
        (Method::POST, ["runs", id, "apply"]) => {
            require_admin(&caller, "finishing a run")?;
            let id: i64 = id
                .parse()
                .map_err(|_| ApiError::invalid(format!("run id {id:?} is not a number")))?;
            let run = blocking(move || policies::finish(&app, &caller, id)).await?;
            Ok(json_response(StatusCode::OK, run_view(&run)))
        }
        (Method::POST, ["organization", ns, "preview"]) => {
            let ns = ns.to_string();
            preview(call, ns).await
        }
        (Method::GET, ["logs"]) => {
            let ns = call.query.get("namespace").cloned();
            log_page(call, ns, None, |e| {
                serde_json::to_value(e).unwrap_or(Value::Null)
            })
            .await
        }
        (Method::GET, ["plugin"]) => Ok(json_response(StatusCode::OK, plugin_view(&app))),
        (Method::PUT, ["plugin"]) => {
            require_admin(&caller, "swapping the plugin")?;
            let bytes = body_bytes(call.body, MAX_PLUGIN).await?;
            let swapped = blocking(move || crate::plugins::swap(&app, &caller, &bytes)).await?;
            Ok(json_response(StatusCode::OK, swap_view(&swapped)))
        }
        (Method::POST, ["plugin", "rollback"]) => {
            require_admin(&caller, "rolling the plugin back")?;
            let back = blocking(move || crate::plugins::rollback(&app, &caller)).await?;
            Ok(json_response(StatusCode::OK, swap_view(&back)))
        }
        (Method::GET, ["repository", ..]) if rest.ends_with("/history") => {
            let inner = rest
                .trim_start_matches("repository/")
                .trim_end_matches("/history");
            let (name, tag) = inner.rsplit_once("/tag/").ok_or_else(|| {
                ApiError::not_found("expected repository/{ns}/{repo}/tag/{tag}/history")
            })?;
            let name = Name::parse(name).map_err(ApiError::invalid)?;
            history(call, name, tag.to_string()).await
        }
        (method, _) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no API route {method} /api/v1/tagguard/{rest}"),
        )),
    }
}

/// The verification status as the API shows it.
fn verification_view(v: &Verification) -> Value {
    match v {
        Verification::Verified {
            entries,
            last_seq,
            covered_through,
            uncovered,
        } => json!({
            "verified": true,
            "entries": entries,
            "last_seq": last_seq,
            "checkpoint_covers_through": covered_through,
            "uncovered": uncovered,
        }),
        Verification::Broken {
            entries,
            reason,
            first_broken,
        } => {
            let mut v = json!({"verified": false, "reason": reason, "first_broken": first_broken});
            if let Some(n) = entries {
                v["entries"] = (*n).into();
            }
            v
        }
    }
}

/// A swap or rollback as the API shows it.
fn swap_view(s: &SwapOutcome) -> Value {
    json!({"generation": s.generation, "old": s.old, "new": s.new})
}

fn plugin_view(app: &crate::app::App) -> Value {
    let info = app.guard.info();
    json!({
        "name": info.name,
        "version": info.version,
        "stamp": app.guard.stamp(),
        "generation": app.guard.generation_id(),
        "pooled_instances": app.guard.pooled_instances(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PreviewBody {
    tag_pattern: String,
    #[serde(default = "yes")]
    tag_pattern_matches: bool,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    sample_limit: Option<u32>,
}

async fn preview(call: Call, ns: String) -> Result<Response> {
    let body: PreviewBody = json_body(call.body).await?;
    let app = call.app.clone();
    let report = blocking(move || -> Result<Value> {
        let owner = Owner {
            namespace: ns,
            repository: body.repository,
        };
        let report = inspect::preview(
            &app,
            &owner,
            &body.tag_pattern,
            body.tag_pattern_matches,
            body.sample_limit.unwrap_or(10),
        )?;
        let sample: Vec<Value> = report
            .sample
            .iter()
            .map(|t| json!({"repository": t.repository, "tag": t.name, "manifest_digest": t.manifest_digest}))
            .collect();
        Ok(json!({"count": report.count, "sample": sample}))
    })
    .await?;
    Ok(json_response(StatusCode::OK, report))
}

async fn history(call: Call, name: Name, tag: String) -> Result<Response> {
    let app = call.app.clone();
    let view = blocking(move || -> Result<Value> {
        let report = inspect::tag_report(&app, &name, &tag)?;
        let mut v = serde_json::to_value(&report.history).map_err(ApiError::internal)?;
        v["immutable"] = report.current.as_ref().map(|t| t.immutable).into();
        v["exists"] = report.current.is_some().into();
        v["policies_firing"] = report
            .firing
            .iter()
            .map(|p| json!({"uuid": p.uuid, "tagPattern": p.tag_pattern}))
            .collect::<Vec<_>>()
            .into();
        Ok(v)
    })
    .await?;
    Ok(json_response(StatusCode::OK, view))
}
