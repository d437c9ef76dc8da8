//! The console's forms outside policies: signing in and out, swapping and rolling
//! back the plugin, and finishing a stopped run. Each calls the API's own function.

use super::layout::{page, token};
use super::{ConsoleError, acting, session, viewer};
use crate::app::{Shared, blocking};
use crate::errors::ApiError;
use axum::Form;
use axum::extract::{ConnectInfo, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use std::net::SocketAddr;

/// A form that carries only the viewer's token.
#[derive(Deserialize)]
pub struct TokenForm {
    token: String,
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    secret: String,
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let body = html! {
        @if let Some(m) = message { p class="bad" role="alert" { (m) } }
        form method="post" action="/console/login" {
            p {
                label for="name" { "Account" }
                input id="name" name="name" type="text" autocomplete="username" required;
            }
            p {
                label for="secret" { "Token" }
                input id="secret" name="secret" type="password" autocomplete="current-password" required;
            }
            button type="submit" { "Sign in" }
        }
        p { "Scripts may use HTTP Basic with the same account and token instead." }
    };
    (status, page("Sign in", None, body)).into_response()
}

/// `GET /console/login`.
pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// `POST /console/login`: a session cookie for valid credentials.
pub async fn login(State(app): State<Shared>, Form(form): Form<LoginForm>) -> Response {
    let Some(account) = app.accounts.sign_in(&form.name, &form.secret).cloned() else {
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("Sign-in failed: unknown account or wrong token. Check both and try again."),
        );
    };
    match app.sessions.start(account) {
        Ok(id) => (
            [(header::SET_COOKIE, session::set_cookie(&id))],
            Redirect::to("/console/"),
        )
            .into_response(),
        Err(e) => ConsoleError::from(ApiError::internal(e)).into_response(),
    }
}

/// `POST /console/logout`: ends the session.
pub async fn logout(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, ConsoleError> {
    acting(&app, &headers, peer, &form.token, None)?;
    if let Some(id) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| session::cookie(v, session::COOKIE))
    {
        app.sessions.end(id);
    }
    Ok((
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/console/login"),
    )
        .into_response())
}

/// `POST /console/plugin/swap`: a multipart form with `token` and the `plugin` file.
pub async fn swap(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<Response, ConsoleError> {
    viewer(&app, &headers, peer)?;
    let (mut form_token, mut bytes) = (String::new(), None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::invalid(format!("form: {e}")))?
    {
        match field.name() {
            Some("token") => {
                form_token = field
                    .text()
                    .await
                    .map_err(|e| ApiError::invalid(format!("token: {e}")))?
            }
            Some("plugin") => {
                bytes = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| ApiError::invalid(format!("plugin: {e}")))?,
                )
            }
            _ => {}
        }
    }
    let v = acting(
        &app,
        &headers,
        peer,
        &form_token,
        Some("swapping the plugin"),
    )?;
    let bytes = bytes
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError::invalid("plugin: choose a component file"))?;
    blocking(move || crate::plugins::swap(&app, &v.caller, &bytes)).await?;
    Ok(Redirect::to("/console/plugin").into_response())
}

/// `POST /console/plugin/rollback`.
pub async fn rollback(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, ConsoleError> {
    let v = acting(
        &app,
        &headers,
        peer,
        &form.token,
        Some("rolling the plugin back"),
    )?;
    blocking(move || crate::plugins::rollback(&app, &v.caller)).await?;
    Ok(Redirect::to("/console/plugin").into_response())
}

/// `POST /console/runs/{id}/finish`: applies a stopped run's policy again.
pub async fn finish(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<TokenForm>,
) -> Result<Response, ConsoleError> {
    let v = acting(&app, &headers, peer, &form.token, Some("finishing a run"))?;
    blocking(move || crate::policies::finish(&app, &v.caller, id)).await?;
    Ok(Redirect::to("/console/runs").into_response())
}

/// The form that finishes a run, for admins.
pub fn finish_button(v: &super::Viewer, id: i64) -> maud::Markup {
    html! {
        form method="post" action=(format!("/console/runs/{id}/finish")) {
            (token(v))
            button type="submit" { "Finish run " (id) }
        }
    }
}
