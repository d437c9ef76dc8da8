//! The audit console under `/console/`: server-rendered pages over the same
//! functions as the REST API, behind the registry's accounts (HTTP Basic, or a
//! login form with a session cookie).

mod actions;
mod layout;
mod logs;
mod pages;
mod policies;
pub mod session;

use crate::app::{Caller, Shared};
use crate::errors::ApiError;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;

/// The console's routes.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/console", get(pages::to_index))
        .route("/console/", get(pages::index))
        .route(
            "/console/login",
            get(actions::login_form).post(actions::login),
        )
        .route("/console/logout", post(actions::logout))
        .route(
            "/console/repository/{*rest}",
            get(pages::repository).post(policies::repository_post),
        )
        .route(
            "/console/organization/{ns}/policies",
            get(policies::show).post(policies::submit),
        )
        .route(
            "/console/organization/{ns}/policies/{uuid}",
            post(policies::change),
        )
        .route("/console/logs", get(logs::show))
        .route("/console/logs/export", get(logs::export))
        .route("/console/plugin", get(pages::plugin))
        .route("/console/plugin/swap", post(actions::swap))
        .route("/console/plugin/rollback", post(actions::rollback))
        .route("/console/runs", get(pages::runs))
        .route("/console/runs/{id}/finish", post(actions::finish))
}

/// Who is looking: the caller, and the token their forms carry.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// The authenticated caller.
    pub caller: Caller,
    /// The token state-changing forms must send back.
    pub token: String,
    /// Whether the viewer signed in with the login form (and may log out).
    pub session: bool,
}

impl Viewer {
    /// Whether the viewer may change policies, plugins and runs.
    pub fn admin(&self) -> bool {
        self.caller.account.admin
    }
}

/// The viewer a request's credentials name: HTTP Basic (or Bearer), else the session cookie.
pub fn viewer(app: &Shared, headers: &HeaderMap, peer: SocketAddr) -> Result<Viewer, ConsoleError> {
    if headers.contains_key(header::AUTHORIZATION) {
        let caller = app
            .caller(headers, Some(peer))
            .ok_or(ConsoleError::Unauthorized)?;
        let token = app
            .sessions
            .form_token(&format!("basic:{}", caller.account.name));
        return Ok(Viewer {
            caller,
            token,
            session: false,
        });
    }
    let id = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| session::cookie(v, session::COOKIE))
        .ok_or(ConsoleError::Unauthorized)?;
    let account = app.sessions.account(id).ok_or(ConsoleError::Unauthorized)?;
    Ok(Viewer {
        caller: app.caller_for(account, Some(peer)),
        token: app.sessions.form_token(&format!("session:{id}")),
        session: true,
    })
}

/// The viewer of a state-changing form: authenticated, with the form's token, and an
/// admin when `admin_for` names what needs one.
pub fn acting(
    app: &Shared,
    headers: &HeaderMap,
    peer: SocketAddr,
    token: &str,
    admin_for: Option<&str>,
) -> Result<Viewer, ConsoleError> {
    let v = viewer(app, headers, peer)?;
    if !session::same_token(&v.token, token) {
        return Err(ConsoleError::BadToken);
    }
    if let Some(what) = admin_for
        && !v.admin()
    {
        return Err(ConsoleError::Api(ApiError::forbidden(format!(
            "{what} needs an admin account; {} is not one",
            v.caller.account.name
        ))));
    }
    Ok(v)
}

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// No valid credentials.
    #[error("sign in to see the console")]
    Unauthorized,
    /// A form without the token of the viewer's session.
    #[error("the form's token does not match this session; reload the page and try again")]
    BadToken,
    /// What the API would answer.
    #[error("{}", .0.detail)]
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::Api(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            ConsoleError::Unauthorized => StatusCode::UNAUTHORIZED,
            ConsoleError::BadToken => StatusCode::FORBIDDEN,
            ConsoleError::Api(e) => e.status,
        };
        let body = layout::error_page(status, &self.to_string());
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tagguard-registry\""),
            );
        }
        response
    }
}
