//! The OCI Distribution Spec v1.1 API under `/v2/`. Every tag write goes
//! through the engine: a push is decided by `TagGuard::push`, a delete by
//! `TagGuard::delete`, and a refusal answers 409 `TAG_IMMUTABLE`.

pub mod manifest;
pub mod route;

use crate::app::{Caller, Shared, WriteError, blocking};
use crate::blobs::BlobError;
use crate::digest::Digest;
use crate::errors::OciError;
use crate::store::ManifestRow;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use route::{Name, Reference, Route, RouteError};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use tagguard_engine::{DeleteOutcome, EngineError, PushOutcome, Removal, RemovalAction};

type Result<T> = std::result::Result<T, OciError>;

/// The most entries one `tags/list` or `_catalog` page returns.
const MAX_PAGE: usize = 10_000;

/// Every `/v2/` request: authenticate, parse the path from the right, dispatch.
pub async fn handle(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let mut response = match dispatch(app, peer, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn dispatch(app: Shared, peer: SocketAddr, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let Some(caller) = app.caller(&parts.headers, Some(peer)) else {
        return Err(OciError::unauthorized());
    };
    let path = parts.uri.path();
    let rest = path
        .strip_prefix("/v2/")
        .or_else(|| (path == "/v2").then_some(""));
    let route = match rest.map(route::parse) {
        Some(Ok(route)) => route,
        Some(Err(RouteError::InvalidName(why))) => {
            return Err(OciError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", why));
        }
        _ => {
            return Err(OciError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("no API route {path}"),
            ));
        }
    };
    let query = query_map(parts.uri.query());
    let headers = parts.headers;
    let method = parts.method;
    let x = Ctx {
        app,
        caller,
        query,
        headers,
    };
    let unsupported = || {
        Err(OciError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the operation is unsupported",
        ))
    };
    let mut response = match (route, &method) {
        (Route::Base, &Method::GET | &Method::HEAD) => Ok(axum::Json(json!({})).into_response()),
        (Route::Catalog, &Method::GET) => catalog(&x).await,
        (Route::Tags(name), &Method::GET) => tags(&x, name).await,
        (Route::Manifest(name, r), &Method::GET | &Method::HEAD) => {
            get_manifest(&x, name, &r, method == Method::HEAD).await
        }
        (Route::Manifest(name, r), &Method::PUT) => put_manifest(&x, name, &r, body).await,
        (Route::Manifest(name, r), &Method::DELETE) => delete_manifest(&x, name, &r).await,
        (Route::Blob(name, d), &Method::GET | &Method::HEAD) => {
            get_blob(&x, name, &d, method == Method::HEAD).await
        }
        (Route::Blob(name, d), &Method::DELETE) => delete_blob(&x, name, &d).await,
        (Route::UploadStart(name), &Method::POST) => start_upload(&x, name, body).await,
        (Route::Upload(name, id), &Method::GET) => upload_status(&x, name, &id).await,
        (Route::Upload(name, id), &Method::PATCH) => patch_upload(&x, name, &id, body).await,
        (Route::Upload(name, id), &Method::PUT) => finish_upload(&x, name, &id, body).await,
        (Route::Upload(name, id), &Method::DELETE) => cancel_upload(&x, name, &id).await,
        (Route::Referrers(name, d), &Method::GET) => referrers(&x, name, &d).await,
        _ => unsupported(),
    }?;
    if let Ok(v) = HeaderValue::from_str(&x.caller.request_id) {
        response.headers_mut().insert("X-Request-Id", v);
    }
    Ok(response)
}

/// One request's context.
struct Ctx {
    app: Shared,
    caller: Caller,
    query: HashMap<String, String>,
    headers: HeaderMap,
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (a query string's encoding).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn storage(e: impl std::fmt::Display) -> OciError {
    OciError::internal(e)
}

fn digest_param(text: &str, code: &'static str) -> Result<Digest> {
    Digest::parse(text).map_err(|why| OciError::new(StatusCode::BAD_REQUEST, code, why))
}

fn header(response: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

fn empty(status: StatusCode) -> Response {
    let mut r = status.into_response();
    header(&mut r, header::CONTENT_LENGTH, "0");
    r
}

/// `n` and `last` of a listing.
fn page(x: &Ctx) -> Result<(usize, Option<String>)> {
    let n = match x.query.get("n") {
        None => MAX_PAGE,
        Some(n) => n.parse::<usize>().map_err(|_| {
            OciError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("n: {n:?} is not a number"),
            )
        })?,
    };
    Ok((n.min(MAX_PAGE), x.query.get("last").cloned()))
}

/// A listing response, with a `Link` to the next page when there is one.
fn listing(
    path: &str,
    n: usize,
    key: &str,
    name: Option<&str>,
    mut items: Vec<String>,
) -> Response {
    let more = items.len() > n;
    items.truncate(n);
    let body = match name {
        Some(name) => json!({"name": name, key: items}),
        None => json!({key: items}),
    };
    let next = items.last().cloned();
    let mut r = axum::Json(body).into_response();
    if let (true, Some(last)) = (more, next) {
        header(
            &mut r,
            header::LINK,
            &format!("<{path}?n={n}&last={last}>; rel=\"next\""),
        );
    }
    r
}

async fn catalog(x: &Ctx) -> Result<Response> {
    let (n, last) = page(x)?;
    let store = x.app.store.clone();
    let items = blocking(move || store.catalog(last.as_deref(), n + 1))
        .await
        .map_err(storage)?;
    Ok(listing("/v2/_catalog", n, "repositories", None, items))
}

async fn tags(x: &Ctx, name: Name) -> Result<Response> {
    let (n, last) = page(x)?;
    let store = x.app.store.clone();
    let full = name.full();
    let (exists, items) = blocking(move || {
        Ok::<_, crate::store::StorageError>((
            store.repository_exists(&name.namespace, &name.repository)?,
            store.tag_names(&name.namespace, &name.repository, last.as_deref(), n + 1)?,
        ))
    })
    .await
    .map_err(storage)?;
    if !exists {
        return Err(OciError::name_unknown(&full));
    }
    Ok(listing(
        &format!("/v2/{full}/tags/list"),
        n,
        "tags",
        Some(&full),
        items,
    ))
}

fn manifest_unknown(reference: &str) -> OciError {
    OciError::new(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        format!("manifest {reference} is not known to the registry"),
    )
}

/// The manifest a reference names: a tag's current manifest, or one by digest.
async fn resolve(x: &Ctx, name: &Name, reference: &str) -> Result<ManifestRow> {
    let parsed = Reference::parse(reference)
        .map_err(|why| OciError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", why))?;
    let store = x.app.store.clone();
    let name = name.clone();
    let found = blocking(move || {
        let digest = match parsed {
            Reference::Digest(d) => d.to_string(),
            Reference::Tag(t) => match store.alive_tag(&name.namespace, &name.repository, &t)? {
                Some(tag) => tag.manifest_digest,
                None => return Ok(None),
            },
        };
        store.manifest(&name.namespace, &name.repository, &digest)
    })
    .await
    .map_err(storage)?;
    found.ok_or_else(|| manifest_unknown(reference))
}

async fn get_manifest(x: &Ctx, name: Name, reference: &str, head: bool) -> Result<Response> {
    let m = resolve(x, &name, reference).await?;
    let len = m.bytes.len();
    let mut r = if head {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::OK, m.bytes).into_response()
    };
    header(&mut r, header::CONTENT_TYPE, &m.media_type);
    header(&mut r, header::CONTENT_LENGTH, &len.to_string());
    header(
        &mut r,
        HeaderName::from_static("docker-content-digest"),
        &m.digest,
    );
    header(&mut r, header::ETAG, &format!("\"{}\"", m.digest));
    Ok(r)
}

fn immutable_refusal(tag: &str) -> OciError {
    OciError::immutable(tag)
}

fn write_error(e: WriteError) -> OciError {
    match e {
        WriteError::Engine(EngineError::InvalidRequest { field, reason, .. }) => OciError::new(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("{field}: {reason}"),
        ),
        other => OciError::internal(other),
    }
}

async fn put_manifest(x: &Ctx, name: Name, reference: &str, body: Body) -> Result<Response> {
    let reference = Reference::parse(reference).map_err(|why| {
        let code = if reference.contains(':') {
            "DIGEST_INVALID"
        } else {
            "TAG_INVALID"
        };
        OciError::new(StatusCode::BAD_REQUEST, code, why)
    })?;
    let bytes = axum::body::to_bytes(body, manifest::MAX_MANIFEST_BYTES)
        .await
        .map_err(|_| {
            OciError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "MANIFEST_INVALID",
                format!(
                    "the manifest exceeds {} bytes",
                    manifest::MAX_MANIFEST_BYTES
                ),
            )
        })?;
    let digest = Digest::of(&bytes);
    if let Reference::Digest(d) = &reference
        && *d != digest
    {
        return Err(OciError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("the manifest's digest is {digest}, not {d}"),
        ));
    }
    let content_type = x
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let checked = manifest::check(&bytes, content_type)
        .map_err(|why| OciError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", why))?;
    let subject = checked.subject.as_ref().map(Digest::to_string);
    let row = ManifestRow {
        digest: digest.to_string(),
        media_type: checked.media_type.clone(),
        bytes: bytes.to_vec(),
        subject: subject.clone(),
        artifact_type: checked.artifact_type.clone(),
    };
    let app = x.app.clone();
    let caller = x.caller.clone();
    let n = name.clone();
    let outcome = blocking(move || -> Result<Option<PushOutcome>> {
        let (ns, repo) = (&n.namespace, &n.repository);
        let missing = |what: &str, d: &Digest| {
            OciError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!("{what} {d} is not in {}", n.full()),
            )
            .detail(json!({"digest": d.as_str()}))
        };
        for blob in &checked.blobs {
            let found = app.store.blob_in_repository(ns, repo, blob.as_str());
            if found.map_err(storage)?.is_none() {
                return Err(missing("blob", blob));
            }
        }
        for child in &checked.manifests {
            let found = app.store.manifest(ns, repo, child.as_str());
            if found.map_err(storage)?.is_none() {
                return Err(missing("manifest", child));
            }
        }
        let created = app.store.put_manifest(ns, repo, &row).map_err(storage)?;
        let Reference::Tag(tag) = &reference else {
            return Ok(None);
        };
        let outcome = app.push_tag(&caller, ns, repo, tag, &row.digest);
        let refused = !matches!(outcome, Ok(PushOutcome::Created { .. }));
        if refused && created {
            // The manifest came with this push only: nothing stays of a refused one.
            app.store
                .delete_untagged_manifest(ns, repo, &row.digest)
                .map_err(storage)?;
        }
        match outcome {
            Ok(PushOutcome::Denied { .. }) => Err(immutable_refusal(tag)),
            Ok(created) => Ok(Some(created)),
            Err(e) => Err(write_error(e)),
        }
    })
    .await?;
    tracing::info!(
        repository = %name.full(), digest = %digest, performer = %x.caller.account.name,
        immutable = matches!(outcome, Some(PushOutcome::Created { immutable: true, .. })),
        "manifest pushed"
    );
    let mut r = created_at(&format!("/v2/{}/manifests/{digest}", name.full()), &digest);
    if let Some(subject) = &subject {
        header(&mut r, HeaderName::from_static("oci-subject"), subject);
    }
    Ok(r)
}

async fn delete_manifest(x: &Ctx, name: Name, reference: &str) -> Result<Response> {
    let reference = Reference::parse(reference)
        .map_err(|why| OciError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", why))?;
    let app = x.app.clone();
    let caller = x.caller.clone();
    let shown = match &reference {
        Reference::Tag(t) => t.clone(),
        Reference::Digest(d) => d.to_string(),
    };
    let full = name.full();
    blocking(move || -> Result<()> {
        let (ns, repo) = (&name.namespace, &name.repository);
        for _ in 0..crate::app::DECIDE_ATTEMPTS {
            let (tags, action, digest) = match &reference {
                Reference::Tag(t) => match app.store.alive_tag(ns, repo, t).map_err(storage)? {
                    Some(tag) => (vec![tag], RemovalAction::DeleteTags, None),
                    None => return Err(manifest_unknown(t)),
                },
                Reference::Digest(d) => {
                    if app
                        .store
                        .manifest(ns, repo, d.as_str())
                        .map_err(storage)?
                        .is_none()
                    {
                        return Err(manifest_unknown(d.as_str()));
                    }
                    let tags = app
                        .store
                        .tags_on_manifest(ns, repo, d.as_str())
                        .map_err(storage)?;
                    (tags, RemovalAction::DeleteManifest, Some(d.to_string()))
                }
            };
            if tags.is_empty() {
                let digest = digest.unwrap_or_default();
                if app
                    .store
                    .delete_untagged_manifest(ns, repo, &digest)
                    .map_err(storage)?
                {
                    return Ok(());
                }
                continue; // a tag arrived meanwhile: decide again
            }
            let (policies, _) = app
                .store
                .policies_in_scope(ns, Some(repo))
                .map_err(storage)?;
            let removal = Removal {
                actor: caller.actor(),
                tags: tags.clone(),
                policies,
                action,
            };
            match app.guard.delete(&removal) {
                Ok(DeleteOutcome::Allowed) => {
                    app.metrics.delete(true);
                    return Ok(());
                }
                Ok(DeleteOutcome::Denied { tag_ids }) => {
                    app.metrics.delete(false);
                    let blocked = tags
                        .iter()
                        .find(|t| tag_ids.contains(&t.id))
                        .map_or_else(|| tags[0].name.clone(), |t| t.name.clone());
                    return Err(immutable_refusal(&blocked));
                }
                Err(EngineError::Conflict { .. }) => continue,
                Err(e) => {
                    app.metrics.failure();
                    return Err(write_error(e.into()));
                }
            }
        }
        Err(OciError::internal(
            "the manifest's tags kept changing while its delete was decided",
        ))
    })
    .await?;
    tracing::info!(repository = %full, reference = %shown, performer = %x.caller.account.name, "manifest deleted");
    Ok(empty(StatusCode::ACCEPTED))
}

fn blob_unknown(digest: &str) -> OciError {
    OciError::new(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        format!("blob {digest} is not known to the registry"),
    )
    .detail(json!({"digest": digest}))
}

async fn get_blob(x: &Ctx, name: Name, digest: &str, head: bool) -> Result<Response> {
    let digest = digest_param(digest, "DIGEST_INVALID")?;
    let store = x.app.store.clone();
    let d = digest.to_string();
    let size = blocking(move || store.blob_in_repository(&name.namespace, &name.repository, &d))
        .await
        .map_err(storage)?
        .ok_or_else(|| blob_unknown(digest.as_str()))?;
    let mut r = if head {
        StatusCode::OK.into_response()
    } else {
        let (blobs, d) = (x.app.blobs.clone(), digest.clone());
        let reader = blocking(move || blobs.read(&d))
            .await
            .map_err(|e| OciError::internal(format!("blob {digest}: {e}")))?;
        let stream = tokio_util::io::ReaderStream::new(reader);
        (StatusCode::OK, Body::from_stream(stream)).into_response()
    };
    header(&mut r, header::CONTENT_TYPE, "application/octet-stream");
    header(&mut r, header::CONTENT_LENGTH, &size.to_string());
    header(
        &mut r,
        HeaderName::from_static("docker-content-digest"),
        digest.as_str(),
    );
    header(&mut r, header::ETAG, &format!("\"{digest}\""));
    Ok(r)
}

async fn delete_blob(x: &Ctx, name: Name, digest: &str) -> Result<Response> {
    let digest = digest_param(digest, "DIGEST_INVALID")?;
    let store = x.app.store.clone();
    let d = digest.to_string();
    let unlinked = blocking(move || store.unlink_blob(&name.namespace, &name.repository, &d))
        .await
        .map_err(storage)?;
    if !unlinked {
        return Err(blob_unknown(digest.as_str()));
    }
    Ok(empty(StatusCode::ACCEPTED))
}

/// The `202 Accepted` answer for an open upload.
fn upload_open(name: &Name, id: &str, size: u64, status: StatusCode) -> Response {
    let mut r = empty(status);
    header(
        &mut r,
        header::LOCATION,
        &format!("/v2/{}/blobs/uploads/{id}", name.full()),
    );
    header(
        &mut r,
        header::RANGE,
        &format!("0-{}", size.saturating_sub(1)),
    );
    header(&mut r, HeaderName::from_static("docker-upload-uuid"), id);
    r
}

/// `201 Created` for what now lives at `location`, with its digest.
fn created_at(location: &str, digest: &Digest) -> Response {
    let mut r = empty(StatusCode::CREATED);
    header(&mut r, header::LOCATION, location);
    header(
        &mut r,
        HeaderName::from_static("docker-content-digest"),
        digest.as_str(),
    );
    r
}

fn blob_created(name: &Name, digest: &Digest) -> Response {
    created_at(&format!("/v2/{}/blobs/{digest}", name.full()), digest)
}

fn blob_error(e: BlobError) -> OciError {
    match e {
        BlobError::UnknownUpload(id) => OciError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            format!("upload {id} is not known to the registry"),
        ),
        BlobError::DigestMismatch { .. } => {
            OciError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string())
        }
        BlobError::OutOfOrder { .. } => OciError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            e.to_string(),
        ),
        BlobError::Io(_) => OciError::internal(e),
    }
}

/// How much of a request body is gathered before it is appended to its upload.
const APPEND_CHUNK: usize = 1 << 20;

/// Appends a request body to an upload that holds `size` bytes, a chunk at a time;
/// returns the upload's new size.
async fn append_body(x: &Ctx, name: &Name, id: &str, size: u64, mut body: Body) -> Result<u64> {
    let append = |chunk: Vec<u8>| {
        let (blobs, n, id) = (x.app.blobs.clone(), name.clone(), id.to_string());
        blocking(move || blobs.append(&n.namespace, &n.repository, &id, &chunk))
    };
    let mut size = size;
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            OciError::new(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("the body could not be read: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            pending.extend_from_slice(&data);
            if pending.len() >= APPEND_CHUNK {
                size = append(std::mem::take(&mut pending))
                    .await
                    .map_err(blob_error)?;
            }
        }
    }
    if !pending.is_empty() {
        size = append(pending).await.map_err(blob_error)?;
    }
    Ok(size)
}

/// The bytes an upload of this repository holds so far.
async fn upload_size(x: &Ctx, name: &Name, id: &str) -> Result<u64> {
    let (blobs, n, id) = (x.app.blobs.clone(), name.clone(), id.to_string());
    blocking(move || blobs.upload_size(&n.namespace, &n.repository, &id))
        .await
        .map_err(blob_error)
}

/// Ends an upload session.
async fn cancel(x: &Ctx, name: &Name, id: &str) -> std::result::Result<(), BlobError> {
    let (blobs, n, id) = (x.app.blobs.clone(), name.clone(), id.to_string());
    blocking(move || blobs.cancel(&n.namespace, &n.repository, &id)).await
}

/// Verifies an upload and links the blob into the repository.
async fn complete(x: &Ctx, name: &Name, id: &str, digest: &Digest) -> Result<Response> {
    let app = x.app.clone();
    let (n, id, d) = (name.clone(), id.to_string(), digest.clone());
    blocking(move || {
        let size = app
            .blobs
            .finish(&n.namespace, &n.repository, &id, &d)
            .map_err(blob_error)?;
        app.store
            .link_blob(&n.namespace, &n.repository, d.as_str(), size)
            .map_err(storage)
    })
    .await?;
    Ok(blob_created(name, digest))
}

async fn start_upload(x: &Ctx, name: Name, body: Body) -> Result<Response> {
    if let (Some(mount), from) = (x.query.get("mount"), x.query.get("from")) {
        let digest = digest_param(mount, "DIGEST_INVALID")?;
        if let Some(from) = from.and_then(|f| Name::parse(f).ok()) {
            let store = x.app.store.clone();
            let (d, n) = (digest.to_string(), name.clone());
            let mounted = blocking(move || {
                match store.blob_in_repository(&from.namespace, &from.repository, &d)? {
                    Some(size) => store
                        .link_blob(&n.namespace, &n.repository, &d, size)
                        .map(|_| true),
                    None => Ok(false),
                }
            })
            .await
            .map_err(storage)?;
            if mounted {
                return Ok(blob_created(&name, &digest));
            }
        }
    }
    let (blobs, n) = (x.app.blobs.clone(), name.clone());
    let id = blocking(move || blobs.start(&n.namespace, &n.repository))
        .await
        .map_err(blob_error)?;
    if let Some(digest) = x.query.get("digest") {
        let digest = digest_param(digest, "DIGEST_INVALID")?;
        let done = match append_body(x, &name, &id, 0, body).await {
            Ok(_) => complete(x, &name, &id, &digest).await,
            Err(e) => Err(e),
        };
        if done.is_err() {
            let _ = cancel(x, &name, &id).await;
        }
        return done;
    }
    Ok(upload_open(&name, &id, 0, StatusCode::ACCEPTED))
}

async fn upload_status(x: &Ctx, name: Name, id: &str) -> Result<Response> {
    let size = upload_size(x, &name, id).await?;
    Ok(upload_open(&name, id, size, StatusCode::NO_CONTENT))
}

/// `Content-Range: <start>-<end>`: the chunk must start where the upload ends.
fn check_range(headers: &HeaderMap, size: u64) -> Result<()> {
    let Some(range) = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let start = range
        .trim()
        .trim_start_matches("bytes ")
        .split('-')
        .next()
        .and_then(|s| s.parse::<u64>().ok());
    match start {
        Some(start) if start == size => Ok(()),
        Some(start) => Err(blob_error(BlobError::OutOfOrder { start, size })),
        None => Err(OciError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            format!("Content-Range: {range:?} is not <start>-<end>"),
        )),
    }
}

async fn patch_upload(x: &Ctx, name: Name, id: &str, body: Body) -> Result<Response> {
    let size = upload_size(x, &name, id).await?;
    check_range(&x.headers, size)?;
    let size = append_body(x, &name, id, size, body).await?;
    Ok(upload_open(&name, id, size, StatusCode::ACCEPTED))
}

async fn finish_upload(x: &Ctx, name: Name, id: &str, body: Body) -> Result<Response> {
    let digest = match x.query.get("digest") {
        Some(d) => digest_param(d, "DIGEST_INVALID")?,
        None => {
            return Err(OciError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "digest: the query parameter is required to complete an upload",
            ));
        }
    };
    let size = upload_size(x, &name, id).await?;
    check_range(&x.headers, size)?;
    append_body(x, &name, id, size, body).await?;
    complete(x, &name, id, &digest).await
}

async fn cancel_upload(x: &Ctx, name: Name, id: &str) -> Result<Response> {
    cancel(x, &name, id).await.map_err(blob_error)?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn referrers(x: &Ctx, name: Name, digest: &str) -> Result<Response> {
    let digest = digest_param(digest, "DIGEST_INVALID")?;
    let store = x.app.store.clone();
    let d = digest.to_string();
    let rows = blocking(move || store.referrers(&name.namespace, &name.repository, &d))
        .await
        .map_err(storage)?;
    let filter = x.query.get("artifactType").cloned();
    let manifests: Vec<Value> = rows
        .iter()
        .filter(|m| filter.is_none() || m.artifact_type == filter)
        .map(|m| {
            let doc: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
            let mut d = json!({
                "mediaType": m.media_type,
                "digest": m.digest,
                "size": m.bytes.len(),
            });
            if let Some(t) = &m.artifact_type {
                d["artifactType"] = t.as_str().into();
            }
            if let Some(a) = doc.get("annotations") {
                d["annotations"] = a.clone();
            }
            d
        })
        .collect();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": manifests,
    });
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    header(&mut r, header::CONTENT_TYPE, manifest::OCI_INDEX);
    if filter.is_some() {
        header(
            &mut r,
            HeaderName::from_static("oci-filters-applied"),
            "artifactType",
        );
    }
    Ok(r)
}
