//! The page shell every console page shares: the header, the navigation, the
//! sign-out button, the style sheet, and small pieces (badges, hidden tokens).

use super::Viewer;
use axum::http::StatusCode;
use axum::response::Html;
use maud::{DOCTYPE, Markup, html};

/// The style sheet: dark text on white, focus outlines kept, contrast above 7:1.
const STYLE: &str = "\
body{font-family:system-ui,sans-serif;color:#111;background:#fff;margin:0;line-height:1.5}\
header{background:#0b3d91;color:#fff;padding:.5rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}\
header a{color:#fff}header form{margin-left:auto}\
main{padding:1rem;max-width:80rem}\
a{color:#0645ad}a:focus,button:focus,input:focus,select:focus{outline:3px solid #f9a825;outline-offset:2px}\
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #555;padding:.25rem .5rem;text-align:left;vertical-align:top}\
th{background:#e8e8e8}\
.lock{background:#5c2d91;color:#fff;border-radius:.25rem;padding:0 .4rem;white-space:nowrap}\
.ok{background:#e6f4ea;border:2px solid #1e7b34;color:#0d3d1a;padding:.5rem}\
.bad{background:#fdecea;border:2px solid #b3261e;color:#5f0f0a;padding:.5rem}\
.refused{color:#8a1c13;font-weight:bold}\
code,pre{font-family:ui-monospace,monospace}pre{white-space:pre-wrap}\
label{display:inline-block;margin-right:.5rem}fieldset{margin:.5rem 0}";

/// A whole page, with the navigation for a signed-in viewer.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · tagguard console" }
                    style { (maud::PreEscaped(STYLE)) }
                }
                body {
                    header {
                        strong { "tagguard console" }
                        @if let Some(v) = viewer {
                            nav aria-label="Console" {
                                a href="/console/" { "Repositories" } " · "
                                a href="/console/logs" { "Audit log" } " · "
                                a href="/console/plugin" { "Plugin" } " · "
                                a href="/console/runs" { "Retroactive runs" }
                            }
                            span {
                                "Signed in as " strong { (v.caller.account.name) }
                                @if v.admin() { " (admin)" }
                            }
                            @if v.session {
                                form method="post" action="/console/logout" {
                                    (token(v))
                                    button type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                    main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// The hidden field that carries the viewer's form token.
pub fn token(v: &Viewer) -> Markup {
    html! { input type="hidden" name="token" value=(v.token); }
}

/// The lock badge of an immutable tag.
pub fn lock() -> Markup {
    html! { span class="lock" title="immutable" { "🔒 immutable" } }
}

/// A page for an error, with a way to sign in when that is what is missing.
pub fn error_page(status: StatusCode, message: &str) -> Html<String> {
    page(
        &format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
        None,
        html! {
            p class="bad" role="alert" { (message) }
            @if status == StatusCode::UNAUTHORIZED {
                p { a href="/console/login" { "Sign in" } " with your registry account and token." }
            } @else {
                p { a href="/console/" { "Back to the console" } }
            }
        },
    )
}
