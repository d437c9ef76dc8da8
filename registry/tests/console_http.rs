//! The console over plain HTTP (no browser): each page's status and key content,
//! HTTP Basic and the login session, 401 without credentials, the form token,
//! and that a non-admin sees no admin form and is refused on admin actions.

mod support;

use serde_json::Value;
use support::*;

fn server(name: &str) -> (TempDir, Server) {
    let dir = TempDir::new(name);
    let server = Server::start(dir.path());
    (dir, server)
}

/// The hidden form token on a page.
fn form_token(html: &str) -> String {
    let marker = "name=\"token\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no form token on the page: {html}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("a closing quote")
        .to_string()
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn post_form(
    s: &Server,
    path: &str,
    auth: Auth,
    extra: &[(&str, &str)],
    pairs: &[(&str, &str)],
) -> Response {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    s.request("POST", path, auth, &headers, form_body(pairs).as_bytes())
}

fn page(s: &Server, path: &str, auth: Auth) -> String {
    let r = s.get(path, auth).expect(200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{}",
        r.describe()
    );
    r.text()
}

/// The table row of `tag` on a repository page.
fn tag_row<'a>(html: &'a str, tag: &str) -> &'a str {
    let link = format!("/tag/{tag}\">{tag}</a>");
    let at = html
        .find(&link)
        .unwrap_or_else(|| panic!("no row for {tag}: {html}"));
    let end = html[at..].find("</tr>").map_or(html.len(), |e| at + e);
    &html[at..end]
}

fn policies(s: &Server) -> Vec<Value> {
    s.get("/api/v1/organization/org/immutabilitypolicy/", ALICE)
        .expect(200)
        .json()["policies"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn every_page_answers_401_with_a_basic_challenge_without_credentials() {
    let (_dir, s) = server("console-401");
    s.push_image("org/app", "v1", "a", ALICE);
    for path in [
        "/console/",
        "/console/repository/org/app",
        "/console/repository/org/app/tag/v1",
        "/console/organization/org/policies",
        "/console/logs",
        "/console/logs/export?format=quay",
        "/console/plugin",
        "/console/runs",
    ] {
        let r = s.get(path, Auth::None);
        assert_eq!(r.status, 401, "{}", r.describe());
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Basic ")),
            "{}",
            r.describe()
        );
        assert!(r.text().contains("/console/login"), "{}", r.describe());
        let wrong = s.get(path, Auth::Basic("alice", "wrong"));
        assert_eq!(wrong.status, 401, "{}", wrong.describe());
    }
    assert!(page(&s, "/console/login", Auth::None).contains("<label for=\"secret\">"));
}

#[test]
fn pages_show_counts_lock_badges_a_tags_history_and_a_refused_overwrite() {
    let (_dir, s) = server("console-pages");
    s.push_image("org/app", "v1", "a", ALICE);
    s.push_image("org/app", "latest", "b", ALICE);
    let created = s.create_org_policy("org", "v.*", ALICE).expect(201).json();
    let uuid = created["uuid"].as_str().unwrap().to_string();
    // An overwrite of v1 with latest's manifest is refused.
    let (manifest, _) = s.push_image("org/app", "other", "c", ALICE);
    let refused = s.request(
        "PUT",
        "/v2/org/app/manifests/v1",
        BOB,
        &[("Content-Type", OCI_MANIFEST)],
        &manifest,
    );
    assert_eq!(refused.status, 409, "{}", refused.describe());

    let index = page(&s, "/console/", BOB);
    assert!(
        index.contains(
            "<a href=\"/console/repository/org/app\">org/app</a></td><td>3</td><td>1</td>"
        ),
        "three tags, one immutable: {index}"
    );

    let repo = page(&s, "/console/repository/org/app", BOB);
    assert!(tag_row(&repo, "v1").contains("class=\"lock\""), "{repo}");
    assert!(
        !tag_row(&repo, "latest").contains("class=\"lock\""),
        "{repo}"
    );
    assert!(
        !tag_row(&repo, "other").contains("class=\"lock\""),
        "{repo}"
    );

    let history = page(&s, "/console/repository/org/app/tag/v1", BOB);
    assert!(history.contains("Why it is immutable"), "{history}");
    assert!(history.contains(&uuid), "the policy is named: {history}");
    assert!(history.contains("policy_created"), "the trigger: {history}");
    assert!(
        history.contains("tag_immutability_denied"),
        "the refusal: {history}"
    );
    assert!(history.contains("bob"), "the refused performer: {history}");

    let logs = page(&s, "/console/logs?kind=tag_immutability_denied", BOB);
    assert!(logs.contains("Verified"), "{logs}");
    assert!(logs.contains("<td>tag_immutability_denied</td>"), "{logs}");
    assert!(
        !logs.contains("<td>push_repo</td>"),
        "the kind filter: {logs}"
    );
    let by_alice = page(&s, "/console/logs?performer=alice&tag=v1", BOB);
    assert!(!by_alice.contains("tag_immutability_denied"), "{by_alice}");
    assert!(by_alice.contains("<td>v1</td>"), "{by_alice}");

    assert!(page(&s, "/console/runs", BOB).contains("<strong>completed</strong>"));
    let plugin = page(&s, "/console/plugin", BOB);
    let info = s.get("/api/v1/tagguard/plugin", ALICE).expect(200).json();
    assert!(
        plugin.contains(info["stamp"]["digest"].as_str().unwrap()),
        "{plugin}"
    );
    assert!(plugin.contains("<dd>1</dd>"), "generation 1: {plugin}");
    assert_eq!(s.get("/console/repository/org/nope", BOB).status, 404);
}

#[test]
fn exports_are_quay_rows_or_cloudevents_one_per_entry() {
    let (_dir, s) = server("console-export");
    s.push_image("org/app", "v1", "a", ALICE);
    s.create_org_policy("org", "v.*", ALICE).expect(201);
    let entries = s.verify()["entries"].as_u64().unwrap() as usize;
    for (format, field) in [("quay", "kind"), ("cloudevents", "specversion")] {
        let r = s
            .get(&format!("/console/logs/export?format={format}"), BOB)
            .expect(200);
        let lines: Vec<Value> = r
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), entries, "{format}: {}", r.text());
        assert!(
            lines.iter().all(|l| l.get(field).is_some()),
            "{format}: {}",
            r.text()
        );
    }
    assert_eq!(s.get("/console/logs/export?format=xml", BOB).status, 400);
}

#[test]
fn an_admin_previews_then_creates_updates_and_deletes_a_policy_through_the_forms() {
    let (_dir, s) = server("console-policy");
    for tag in ["v1", "v2", "latest"] {
        s.push_image("org/app", tag, tag, ALICE);
    }
    let path = "/console/organization/org/policies";
    let token = form_token(&page(&s, path, ALICE));
    let preview = post_form(
        &s,
        path,
        ALICE,
        &[],
        &[("token", &token), ("action", "preview"), ("pattern", "v.*")],
    )
    .expect(200)
    .text();
    assert!(
        preview.contains("<strong id=\"preview-count\">2</strong>"),
        "{preview}"
    );
    assert!(preview.contains("org/app:v1"), "{preview}");
    assert!(policies(&s).is_empty(), "a preview stores nothing");

    let bad = post_form(
        &s,
        path,
        ALICE,
        &[],
        &[
            ("token", &token),
            ("action", "create"),
            ("pattern", "(?=x)"),
        ],
    );
    assert_eq!(bad.status, 400, "{}", bad.describe());
    assert!(
        bad.text().contains("tag-pattern"),
        "the engine's error: {}",
        bad.describe()
    );
    assert!(
        bad.text().contains("(?=x)"),
        "the pattern is kept: {}",
        bad.describe()
    );

    let created = post_form(
        &s,
        path,
        ALICE,
        &[],
        &[("token", &token), ("action", "create"), ("pattern", "v.*")],
    );
    assert_eq!(created.status, 303, "{}", created.describe());
    let list = policies(&s);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["tagPattern"], "v.*");
    let uuid = list[0]["uuid"].as_str().unwrap().to_string();
    assert!(page(&s, path, BOB).contains(&uuid));
    let repo = page(&s, "/console/repository/org/app", BOB);
    assert!(tag_row(&repo, "v2").contains("class=\"lock\""), "{repo}");

    let one = format!("{path}/{uuid}");
    post_form(
        &s,
        &one,
        ALICE,
        &[],
        &[
            ("token", &token),
            ("action", "update"),
            ("pattern", "latest"),
        ],
    )
    .expect(303);
    assert_eq!(policies(&s)[0]["tagPattern"], "latest");
    post_form(
        &s,
        &one,
        ALICE,
        &[],
        &[("token", &token), ("action", "delete")],
    )
    .expect(303);
    assert!(policies(&s).is_empty());
}

#[test]
fn a_non_admin_sees_no_admin_form_and_is_refused_on_admin_posts() {
    let (_dir, s) = server("console-nonadmin");
    s.push_image("org/app", "v1", "a", ALICE);
    s.create_org_policy("org", "v.*", ALICE).expect(201);
    let uuid = policies(&s)[0]["uuid"].as_str().unwrap().to_string();
    let admin_page = page(&s, "/console/organization/org/policies", ALICE);
    assert!(admin_page.contains("value=\"create\""), "{admin_page}");
    let policies_page = page(&s, "/console/organization/org/policies", BOB);
    assert!(!policies_page.contains("<form"), "{policies_page}");
    let plugin = page(&s, "/console/plugin", BOB);
    assert!(
        !plugin.contains("<form method=\"post\" action=\"/console/plugin"),
        "{plugin}"
    );
    // Bob's own session and token: still refused.
    let bob_token = {
        let login = post_form(
            &s,
            "/console/login",
            Auth::None,
            &[],
            &[("name", "bob"), ("secret", "hunter2")],
        );
        assert_eq!(login.status, 303, "{}", login.describe());
        let cookie = login
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let html = s
            .request("GET", "/console/", Auth::None, &[("Cookie", &cookie)], b"")
            .expect(200)
            .text();
        (cookie, form_token(&html))
    };
    let (cookie, token) = bob_token;
    let with = [("Cookie", cookie.as_str())];
    for (path, pairs) in [
        (
            "/console/organization/org/policies",
            vec![("action", "create"), ("pattern", "x.*")],
        ),
        (
            &*format!("/console/organization/org/policies/{uuid}"),
            vec![("action", "delete")],
        ),
        ("/console/plugin/rollback", vec![]),
        ("/console/runs/1/finish", vec![]),
    ] {
        let mut all = vec![("token", token.as_str())];
        all.extend(pairs);
        let r = post_form(&s, path, Auth::None, &with, &all);
        assert_eq!(r.status, 403, "{}", r.describe());
    }
    assert_eq!(policies(&s).len(), 1, "nothing changed");
    // A preview is a read: a non-admin may make one.
    post_form(
        &s,
        "/console/organization/org/policies",
        Auth::None,
        &with,
        &[("token", &token), ("action", "preview"), ("pattern", "x.*")],
    )
    .expect(200);
}

#[test]
fn the_login_form_starts_a_strict_http_only_session_and_forms_need_its_token() {
    let (_dir, s) = server("console-login");
    s.push_image("org/app", "v1", "a", ALICE);
    let wrong = post_form(
        &s,
        "/console/login",
        Auth::None,
        &[],
        &[("name", "alice"), ("secret", "nope")],
    );
    assert_eq!(wrong.status, 403, "{}", wrong.describe());
    assert!(wrong.header("set-cookie").is_none());
    let login = post_form(
        &s,
        "/console/login",
        Auth::None,
        &[],
        &[("name", "alice"), ("secret", "s3cret")],
    );
    assert_eq!(login.status, 303, "{}", login.describe());
    let set = login.header("set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let with = [("Cookie", cookie.as_str())];
    let index = s
        .request("GET", "/console/", Auth::None, &with, b"")
        .expect(200)
        .text();
    assert!(
        index.contains("Signed in as <strong>alice</strong>"),
        "{index}"
    );
    let token = form_token(&index);

    // Another session's token, or none, is refused: nothing is created.
    let basic_token = form_token(&page(&s, "/console/plugin", ALICE));
    assert_ne!(basic_token, token);
    let path = "/console/organization/org/policies";
    for t in [basic_token.as_str(), ""] {
        let r = post_form(
            &s,
            path,
            Auth::None,
            &with,
            &[("token", t), ("action", "create"), ("pattern", "v.*")],
        );
        assert_eq!(r.status, 403, "{}", r.describe());
    }
    assert!(policies(&s).is_empty());
    post_form(
        &s,
        path,
        Auth::None,
        &with,
        &[("token", &token), ("action", "create"), ("pattern", "v.*")],
    )
    .expect(303);
    assert_eq!(policies(&s).len(), 1);

    post_form(
        &s,
        "/console/logout",
        Auth::None,
        &with,
        &[("token", &token)],
    )
    .expect(303);
    assert_eq!(
        s.request("GET", "/console/", Auth::None, &with, b"").status,
        401
    );
}

#[test]
fn the_log_page_turns_red_at_the_first_edited_entry() {
    let (_dir, s) = server("console-tamper");
    s.push_image("org/app", "v1", "a", ALICE);
    s.create_org_policy("org", "v.*", ALICE).expect(201);
    s.create_org_policy("org", "w.*", ALICE).expect(201);
    let ok = page(&s, "/console/logs", BOB);
    assert!(ok.contains("class=\"ok\""), "{ok}");
    assert!(ok.contains("intact up to entry <strong>5</strong>"), "{ok}");
    let db = rusqlite::Connection::open(s.data.join("registry.db")).unwrap();
    db.execute(
        "UPDATE logentry3 SET entry_json = replace(entry_json, 'alice', 'mallory') WHERE id = 3",
        [],
    )
    .unwrap();
    let broken = page(&s, "/console/logs", BOB);
    assert!(broken.contains("class=\"bad\" role=\"alert\""), "{broken}");
    assert!(
        broken.contains("Verification failed</strong> at entry <strong>3</strong>"),
        "{broken}"
    );
}

#[test]
fn an_admin_rolls_the_plugin_back_and_finishes_nothing_that_completed() {
    let (_dir, s) = server("console-plugin");
    let glob = std::fs::read(tagguard_engine::built_plugin_path("glob-policy"))
        .expect("the build made glob-policy");
    s.request("PUT", "/api/v1/tagguard/plugin", ALICE, &[], &glob)
        .expect(200);
    let plugin = page(&s, "/console/plugin", ALICE);
    assert!(plugin.contains("<dd>2</dd>"), "generation 2: {plugin}");
    assert!(
        plugin.contains("<td>alice</td>"),
        "the swap's performer: {plugin}"
    );
    let token = form_token(&plugin);
    post_form(
        &s,
        "/console/plugin/rollback",
        ALICE,
        &[],
        &[("token", &token)],
    )
    .expect(303);
    let now = s.get("/api/v1/tagguard/plugin", ALICE).expect(200).json();
    assert_eq!(now["generation"], 3, "{now}");

    s.push_image("org/app", "v1", "a", ALICE);
    s.create_org_policy("org", "v.*", ALICE).expect(201);
    let r = post_form(
        &s,
        "/console/runs/1/finish",
        ALICE,
        &[],
        &[("token", &token)],
    );
    assert_eq!(
        r.status,
        400,
        "a completed run is not finished again: {}",
        r.describe()
    );
}
