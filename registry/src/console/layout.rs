//! The page shell every console page shares: the header, the navigation, the
//! sign-out button, the style sheet, and small pieces (badges, hidden tokens).

use super::Viewer;
use axum::http::StatusCode;
use axum::response::Html;
use maud::{DOCTYPE, Markup, html};
use std::sync::LazyLock;

/// Every colour of the style sheet, by what it colours: the one place they are set.
pub mod colour {
    /// Body text.
    pub const TEXT: &str = "#111111";
    /// The page's background.
    pub const PAGE: &str = "#ffffff";
    /// The header's background.
    pub const HEADER: &str = "#0b3d91";
    /// Text and links on the header.
    pub const HEADER_TEXT: &str = "#ffffff";
    /// Links.
    pub const LINK: &str = "#0645ad";
    /// Table heads' background.
    pub const TABLE_HEAD: &str = "#e8e8e8";
    /// The lock badge's background.
    pub const LOCK: &str = "#5c2d91";
    /// The lock badge's text.
    pub const LOCK_TEXT: &str = "#ffffff";
    /// Good news (verified, a preview): background.
    pub const OK: &str = "#e6f4ea";
    /// Good news: text.
    pub const OK_TEXT: &str = "#0d3d1a";
    /// Good news: border.
    pub const OK_BORDER: &str = "#1e7b34";
    /// Bad news (verification failed, an error): background.
    pub const BAD: &str = "#fdecea";
    /// Bad news: text.
    pub const BAD_TEXT: &str = "#5f0f0a";
    /// Bad news: border.
    pub const BAD_BORDER: &str = "#b3261e";
    /// A refused change's kind in a table.
    pub const REFUSED: &str = "#8a1c13";
    /// The marked characters of a refused pattern: background.
    pub const MARK: &str = "#ffe08a";
    /// The marked characters of a refused pattern: text.
    pub const MARK_TEXT: &str = "#111111";
    /// Table borders.
    pub const RULE: &str = "#555555";
    /// The focus ring's inner line (seen on light backgrounds).
    pub const FOCUS: &str = "#111111";
    /// The focus ring's outer line (seen on the dark header).
    pub const FOCUS_HALO: &str = "#f9a825";
}

/// Every (where, text, background) pair the style sheet puts together; each must
/// have a contrast ratio of at least 4.5:1 (the tests check them).
#[cfg(test)]
const TEXT_PAIRS: [(&str, &str, &str); 12] = {
    use colour::*;
    [
        ("body text", TEXT, PAGE),
        ("header", HEADER_TEXT, HEADER),
        ("link", LINK, PAGE),
        ("table head", TEXT, TABLE_HEAD),
        ("link in a table head", LINK, TABLE_HEAD),
        ("lock badge", LOCK_TEXT, LOCK),
        ("good news", OK_TEXT, OK),
        ("link in good news", LINK, OK),
        ("bad news", BAD_TEXT, BAD),
        ("link in bad news", LINK, BAD),
        ("refused kind", REFUSED, PAGE),
        ("marked pattern", MARK_TEXT, MARK),
    ]
};

/// Every (where, line, background) pair of the focus ring: at least 3:1 (a
/// non-text contrast), with the inner line on light backgrounds and the outer on
/// the header.
#[cfg(test)]
const FOCUS_PAIRS: [(&str, &str, &str); 5] = {
    use colour::*;
    [
        ("focus on the page", FOCUS, PAGE),
        ("focus in a table head", FOCUS, TABLE_HEAD),
        ("focus in good news", FOCUS, OK),
        ("focus in bad news", FOCUS, BAD),
        ("focus on the header", FOCUS_HALO, HEADER),
    ]
};

/// The style sheet: colours from [`colour`], focus rings on every control.
static STYLE: LazyLock<String> = LazyLock::new(|| {
    use colour::*;
    format!(
        "body{{font-family:system-ui,sans-serif;color:{TEXT};background:{PAGE};margin:0;line-height:1.5}}\
header{{background:{HEADER};color:{HEADER_TEXT};padding:.5rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}}\
header a{{color:{HEADER_TEXT}}}header form{{margin-left:auto}}\
main{{padding:1rem;max-width:80rem}}\
a{{color:{LINK}}}\
a:focus,button:focus,input:focus,select:focus,textarea:focus{{outline:3px solid {FOCUS};outline-offset:2px;box-shadow:0 0 0 5px {FOCUS_HALO}}}\
table{{border-collapse:collapse;margin:.5rem 0}}th,td{{border:1px solid {RULE};padding:.25rem .5rem;text-align:left;vertical-align:top}}\
th{{background:{TABLE_HEAD}}}\
.lock{{background:{LOCK};color:{LOCK_TEXT};border-radius:.25rem;padding:0 .4rem;white-space:nowrap}}\
.ok{{background:{OK};border:2px solid {OK_BORDER};color:{OK_TEXT};padding:.5rem}}\
.bad{{background:{BAD};border:2px solid {BAD_BORDER};color:{BAD_TEXT};padding:.5rem}}\
.refused{{color:{REFUSED};font-weight:bold}}\
mark{{background:{MARK};color:{MARK_TEXT};outline:1px solid {BAD_BORDER}}}\
code,pre{{font-family:ui-monospace,monospace}}pre{{white-space:pre-wrap}}\
label{{display:inline-block;margin-right:.5rem}}fieldset{{margin:.5rem 0}}"
    )
});

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
                    style { (maud::PreEscaped(STYLE.as_str())) }
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

#[cfg(test)]
mod tests {
    use super::{FOCUS_PAIRS, STYLE, TEXT_PAIRS, colour};

    /// WCAG 2's relative luminance of `#rrggbb`.
    fn luminance(hex: &str) -> f64 {
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap()) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(1) + 0.0722 * channel(2)
    }

    /// WCAG 2's contrast ratio of two colours.
    fn contrast(a: &str, b: &str) -> f64 {
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    #[test]
    fn the_contrast_formula_matches_known_ratios() {
        assert!((contrast("#000000", "#ffffff") - 21.0).abs() < 1e-9);
        assert!((contrast("#777777", "#ffffff") - 4.48).abs() < 0.01);
        assert!((contrast("#ffffff", "#ffffff") - 1.0).abs() < 1e-9);
    }

    #[test]
    fn every_text_colour_pair_has_a_contrast_of_at_least_4_5() {
        for (place, text, background) in TEXT_PAIRS {
            let ratio = contrast(text, background);
            assert!(
                ratio >= 4.5,
                "{place}: {text} on {background} is {ratio:.2}:1"
            );
        }
        for (place, line, background) in FOCUS_PAIRS {
            let ratio = contrast(line, background);
            assert!(
                ratio >= 3.0,
                "{place}: {line} on {background} is {ratio:.2}:1"
            );
        }
    }

    #[test]
    fn the_style_sheet_uses_only_the_listed_colours() {
        let listed = [
            colour::TEXT,
            colour::PAGE,
            colour::HEADER,
            colour::HEADER_TEXT,
            colour::LINK,
            colour::TABLE_HEAD,
            colour::LOCK,
            colour::LOCK_TEXT,
            colour::OK,
            colour::OK_TEXT,
            colour::OK_BORDER,
            colour::BAD,
            colour::BAD_TEXT,
            colour::BAD_BORDER,
            colour::REFUSED,
            colour::MARK,
            colour::MARK_TEXT,
            colour::RULE,
            colour::FOCUS,
            colour::FOCUS_HALO,
        ];
        for (at, _) in STYLE.match_indices('#') {
            let hex = &STYLE[at..at + 7];
            assert!(listed.contains(&hex), "{hex} is not in colour::");
        }
        for name in ["rgb(", "hsl(", "color:white", "color:black"] {
            assert!(!STYLE.contains(name), "a colour outside colour::: {name}");
        }
    }
}
