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
    assert_eq!(wrong.status, 401, "{}", wrong.describe());
    assert!(wrong.header("set-cookie").is_none());
    assert!(
        wrong.text().contains("Sign-in failed") && wrong.text().contains("<label for=\"secret\">"),
        "the form again, with why: {}",
        wrong.describe()
    );
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

/// Signs in with the login form: the session cookie and the form token it gets.
fn session(s: &Server, name: &str, secret: &str) -> (String, String) {
    let login = post_form(
        s,
        "/console/login",
        Auth::None,
        &[],
        &[("name", name), ("secret", secret)],
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
    let token = form_token(&html);
    (cookie, token)
}

/// The text between `start` and the next `end` after it.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let at = html.find(start)? + start.len();
    html[at..].find(end).map(|e| &html[at..at + e])
}

#[test]
fn a_bad_pattern_is_shown_with_the_engines_position_marked() {
    let (_dir, s) = server("console-mark");
    s.push_image("org/app", "v1", "a", ALICE);
    let path = "/console/organization/org/policies";
    let token = form_token(&page(&s, path, ALICE));
    for action in ["preview", "create"] {
        let r = post_form(
            &s,
            path,
            ALICE,
            &[],
            &[("token", &token), ("action", action), ("pattern", " v1.( ")],
        );
        assert_eq!(r.status, 400, "{action}: {}", r.describe());
        let html = r.text();
        assert!(
            html.contains("unclosed group"),
            "{action}: the engine's error: {html}"
        );
        assert!(
            html.contains("<code>v1.<mark>(</mark></code>"),
            "{action}: the fourth character is marked: {html}"
        );
        assert!(
            html.contains("At character 4 of the pattern"),
            "{action}: the position in words: {html}"
        );
        assert!(
            html.contains("<span aria-hidden=\"true\">   ^</span>"),
            "{action}: a caret under it: {html}"
        );
        let field = between(&html, "<input id=\"pattern\"", ">").unwrap();
        assert!(
            field.contains("aria-invalid=\"true\"")
                && field.contains("aria-describedby=\"policy-error\""),
            "{action}: {field}"
        );
    }
    assert!(policies(&s).is_empty());

    // An edit is marked the same way, on the policy's own field.
    s.create_org_policy("org", "v.*", ALICE).expect(201);
    let uuid = policies(&s)[0]["uuid"].as_str().unwrap().to_string();
    let r = post_form(
        &s,
        &format!("{path}/{uuid}"),
        ALICE,
        &[],
        &[("token", &token), ("action", "update"), ("pattern", "ab[c")],
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    let html = r.text();
    assert!(html.contains("<code>ab<mark>[</mark>c</code>"), "{html}");
    let field = between(&html, &format!("<input id=\"edit-{uuid}\""), ">").unwrap();
    assert!(field.contains("aria-invalid=\"true\""), "{field}");
    assert_eq!(policies(&s)[0]["tagPattern"], "v.*", "nothing changed");
}

#[test]
fn a_repositorys_policies_page_lists_inherited_ones_and_changes_its_own() {
    let (_dir, s) = server("console-repo-policies");
    for tag in ["v1", "v2", "latest", "stable"] {
        s.push_image("org/app", tag, tag, ALICE);
    }
    s.push_image("org/other", "v1", "o", ALICE);
    s.create_org_policy("org", "stable", ALICE).expect(201);
    let org_uuid = policies(&s)[0]["uuid"].as_str().unwrap().to_string();
    let repo_api = "/api/v1/repository/org/app/immutabilitypolicy/";
    let repo_policies = || -> Vec<Value> {
        s.get(repo_api, ALICE).expect(200).json()["policies"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let path = "/console/repository/org/app/policies";
    let tags = page(&s, "/console/repository/org/app", BOB);
    assert!(tags.contains(&format!("href=\"{path}\"")), "linked: {tags}");

    let html = page(&s, path, ALICE);
    let inherited = between(&html, &org_uuid, "</tr>").map(|_| {
        let at = html.find(&org_uuid).unwrap();
        &html[html[..at].rfind("<tr>").unwrap()..at]
    });
    let row = inherited.unwrap_or_else(|| panic!("the org's policy is listed: {html}"));
    assert!(
        row.contains("inherited from <a href=\"/console/organization/org/policies\">"),
        "{row}"
    );
    assert!(
        !html.contains(&format!("action=\"{path}/{org_uuid}\"")),
        "no edit form for an inherited policy: {html}"
    );
    assert!(
        !html.contains("id=\"repository\""),
        "the owner is fixed: {html}"
    );
    let token = form_token(&html);

    // Preview: only this repository's tags count.
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
    assert!(!preview.contains("org/other:v1"), "{preview}");
    assert!(repo_policies().is_empty(), "a preview stores nothing");

    // Create, edit, delete: the REST API sees each change.
    let created = post_form(
        &s,
        path,
        ALICE,
        &[],
        &[("token", &token), ("action", "create"), ("pattern", "v.*")],
    );
    assert_eq!(created.status, 303, "{}", created.describe());
    assert_eq!(created.header("location"), Some(path));
    let list = repo_policies();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["tagPattern"], "v.*");
    let uuid = list[0]["uuid"].as_str().unwrap().to_string();
    let other = page(&s, "/console/repository/org/other", BOB);
    assert!(
        !tag_row(&other, "v1").contains("class=\"lock\""),
        "another repository is untouched: {other}"
    );
    let app = page(&s, "/console/repository/org/app", BOB);
    assert!(tag_row(&app, "v2").contains("class=\"lock\""), "{app}");

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
    assert_eq!(repo_policies()[0]["tagPattern"], "latest");
    // The organization's policy cannot be changed from here.
    let r = post_form(
        &s,
        &format!("{path}/{org_uuid}"),
        ALICE,
        &[],
        &[("token", &token), ("action", "delete")],
    );
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_eq!(policies(&s)[0]["uuid"], org_uuid.as_str(), "still there");

    // A non-admin reads the page without forms, and is refused on every post.
    let bob_page = page(&s, path, BOB);
    assert!(
        bob_page.contains(&uuid) && !bob_page.contains("<form"),
        "{bob_page}"
    );
    let (cookie, bob_token) = session(&s, "bob", "hunter2");
    let with = [("Cookie", cookie.as_str())];
    for (p, action) in [
        (path, "create"),
        (one.as_str(), "update"),
        (one.as_str(), "delete"),
    ] {
        let r = post_form(
            &s,
            p,
            Auth::None,
            &with,
            &[
                ("token", &bob_token),
                ("action", action),
                ("pattern", "x.*"),
            ],
        );
        assert_eq!(r.status, 403, "{action}: {}", r.describe());
    }
    assert_eq!(
        repo_policies()[0]["tagPattern"],
        "latest",
        "nothing changed"
    );

    post_form(
        &s,
        &one,
        ALICE,
        &[],
        &[("token", &token), ("action", "delete")],
    )
    .expect(303);
    assert!(repo_policies().is_empty());
    assert_eq!(
        s.get("/console/repository/org/nope/policies", ALICE).status,
        404
    );
}

/// A `multipart/form-data` body with the form token and one `plugin` file.
fn multipart(token: &str, file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "tagguard-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n{token}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"plugin\"; filename=\"p.wasm\"\r\n\
         Content-Type: application/wasm\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn an_admin_swaps_a_plugin_in_through_the_upload_form_and_a_non_component_is_refused() {
    let (_dir, s) = server("console-swap");
    let swaps = |s: &Server| {
        s.all_logs("/api/v1/tagguard/logs")
            .iter()
            .filter(|e| e["entry"]["kind"] == "immutability_plugin_swapped")
            .count()
    };
    let plugin = page(&s, "/console/plugin", ALICE);
    let token = form_token(&plugin);

    let (kind, body) = multipart(&token, b"\0asm but not a component");
    let refused = s.request(
        "POST",
        "/console/plugin/swap",
        ALICE,
        &[("Content-Type", &kind)],
        &body,
    );
    assert_eq!(refused.status, 400, "{}", refused.describe());
    assert!(
        refused.text().contains("class=\"bad\" role=\"alert\"")
            && refused.text().contains("plugin:"),
        "a clear error: {}",
        refused.describe()
    );
    assert!(page(&s, "/console/plugin", ALICE).contains("<dd>1</dd>"));
    assert_eq!(swaps(&s), 0, "nothing swapped");

    let glob = std::fs::read(tagguard_engine::built_plugin_path("glob-policy"))
        .expect("the build made glob-policy");
    let (kind, body) = multipart(&token, &glob);
    let r = s.request(
        "POST",
        "/console/plugin/swap",
        ALICE,
        &[("Content-Type", &kind)],
        &body,
    );
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.header("location"), Some("/console/plugin"));
    let after = page(&s, "/console/plugin", ALICE);
    assert!(after.contains("<dd>2</dd>"), "generation 2: {after}");
    assert!(
        after.contains("<dd>tagguard-glob</dd>"),
        "the new plugin's name: {after}"
    );
    assert_eq!(swaps(&s), 1, "one swap record");

    // A non-admin's upload is refused.
    let (cookie, bob_token) = session(&s, "bob", "hunter2");
    let (kind, body) = multipart(&bob_token, &glob);
    let r = s.request(
        "POST",
        "/console/plugin/swap",
        Auth::None,
        &[("Content-Type", &kind), ("Cookie", &cookie)],
        &body,
    );
    assert_eq!(r.status, 403, "{}", r.describe());
    assert_eq!(swaps(&s), 1);
}

/// The value of attribute `name` in one tag's text (`<input id="x" ...`).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    between(tag, &format!(" {name}=\""), "\"")
}

/// Checks one page's structure: `lang`, one `<title>`, one `<h1>`, and a label
/// (`<label for>` or `aria-label`) for every form control.
fn check_accessible(path: &str, html: &str) {
    assert!(html.contains("<html lang=\"en\">"), "{path}: lang");
    assert_eq!(html.matches("<title>").count(), 1, "{path}: one title");
    assert!(
        between(html, "<title>", "</title>").is_some_and(|t| !t.trim().is_empty()),
        "{path}: a title"
    );
    assert_eq!(html.matches("<h1").count(), 1, "{path}: one h1");
    let mut controls = 0;
    for element in ["<input", "<select", "<textarea"] {
        for (at, _) in html.match_indices(element) {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            if attr(tag, "type") == Some("hidden") {
                continue;
            }
            controls += 1;
            let labelled = attr(tag, "aria-label").is_some_and(|l| !l.is_empty())
                || attr(tag, "id")
                    .is_some_and(|id| html.contains(&format!("<label for=\"{id}\">")));
            assert!(labelled, "{path}: no label for {tag}");
        }
    }
    assert!(
        controls > 0 || !html.contains("<form method=\"get\""),
        "{path}: a form without controls"
    );
}

#[test]
fn every_console_page_has_lang_a_title_one_heading_and_labelled_controls() {
    let (_dir, s) = server("console-a11y");
    s.push_image("org/app", "v1", "a", ALICE);
    s.push_image("org/app", "latest", "b", ALICE);
    s.create_org_policy("org", "v.*", ALICE).expect(201);
    let token = form_token(&page(&s, "/console/plugin", ALICE));
    let repo_path = "/console/repository/org/app/policies";
    post_form(
        &s,
        repo_path,
        ALICE,
        &[],
        &[
            ("token", &token),
            ("action", "create"),
            ("pattern", "latest"),
        ],
    )
    .expect(303);
    let mut pages: Vec<(String, String)> = [
        "/console/",
        "/console/repository/org/app",
        "/console/repository/org/app/tag/v1",
        "/console/organization/org/policies",
        repo_path,
        "/console/logs",
        "/console/logs?limit=1",
        "/console/plugin",
        "/console/runs",
    ]
    .iter()
    .flat_map(|p| {
        [
            (format!("{p} (alice)"), page(&s, p, ALICE)),
            (format!("{p} (bob)"), page(&s, p, BOB)),
        ]
    })
    .collect();
    pages.push(("login".into(), page(&s, "/console/login", Auth::None)));
    pages.push((
        "401".into(),
        s.get("/console/", Auth::None).expect(401).text(),
    ));
    pages.push((
        "404".into(),
        s.get("/console/repository/org/nope", ALICE)
            .expect(404)
            .text(),
    ));
    let refused = post_form(
        &s,
        repo_path,
        ALICE,
        &[],
        &[("token", &token), ("action", "preview"), ("pattern", "x(")],
    )
    .expect(400)
    .text();
    pages.push(("refused pattern".into(), refused));
    for (path, html) in &pages {
        check_accessible(path, html);
    }
    // The checks can fail: a control without a label is found.
    let unlabelled = pages[0]
        .1
        .replace("</main>", "<input id=\"x\" type=\"text\"></main>");
    assert!(
        std::panic::catch_unwind(|| check_accessible("edited", &unlabelled)).is_err(),
        "an unlabelled input is caught"
    );
}

/// The entry numbers in a log page's table, in order.
fn log_seqs(html: &str) -> Vec<u64> {
    let Some(body) = between(html, "<tbody>", "</tbody>") else {
        return Vec::new();
    };
    body.split("<tr><td>")
        .skip(1)
        .map(|r| r.split('<').next().unwrap().parse().unwrap())
        .collect()
}

/// The path of a paging link (`rel="next"` or `rel="prev"`), if the page has it.
fn paging_link(html: &str, rel: &str) -> Option<String> {
    let tag = between(html, &format!("<a rel=\"{rel}\""), ">")?;
    Some(attr(tag, "href")?.replace("&amp;", "&"))
}

#[test]
fn the_log_pages_through_filtered_entries_older_and_back_newer() {
    let (_dir, s) = server("console-paging");
    s.push_image("org/app", "v1", "a", ALICE);
    s.push_image("org/app", "v2", "b", ALICE);
    s.create_org_policy("org", "v[12]", ALICE).expect(201);
    let (manifest, _) = s.push_image("org/app", "other", "c", ALICE);
    let overwrite = |tag: &str, who: Auth| {
        let r = s.request(
            "PUT",
            &format!("/v2/org/app/manifests/{tag}"),
            who,
            &[("Content-Type", OCI_MANIFEST)],
            &manifest,
        );
        assert_eq!(r.status, 409, "{}", r.describe());
    };
    for _ in 0..4 {
        overwrite("v1", ALICE);
        overwrite("v1", BOB);
        overwrite("v2", ALICE);
    }
    let mut want: Vec<u64> = s
        .all_logs("/api/v1/tagguard/logs")
        .iter()
        .filter(|e| e["entry"]["tag"] == "v1" && e["entry"]["performer"]["name"] == "alice")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert!(want.len() >= 5, "{want:?}");

    let first = "/console/logs?tag=v1&performer=alice&limit=2";
    let mut path = first.to_string();
    let mut seen: Vec<u64> = Vec::new();
    let mut pages = Vec::new();
    loop {
        let html = page(&s, &path, BOB);
        let seqs = log_seqs(&html);
        assert!(seqs.len() <= 2, "{path}: {seqs:?}");
        assert!(!seqs.is_empty(), "{path}: {html}");
        assert_eq!(
            paging_link(&html, "prev").is_some(),
            !pages.is_empty(),
            "{path}: a newer link except on the first page: {html}"
        );
        seen.extend(&seqs);
        pages.push((path.clone(), seqs));
        match paging_link(&html, "next") {
            Some(next) => {
                assert!(
                    next.contains("tag=v1") && next.contains("performer=alice"),
                    "the filters are kept: {next}"
                );
                path = next;
            }
            None => break,
        }
        assert!(pages.len() < 10, "paging ends");
    }
    assert_eq!(seen, want, "every matching entry once, newest first");
    assert!(pages.len() >= 3, "{pages:?}");

    // Back: the newer link of the last page shows the page before it.
    let last = page(&s, &pages.last().unwrap().0, BOB);
    let newer = paging_link(&last, "prev").expect("a newer link");
    assert!(newer.contains("after="), "{newer}");
    assert_eq!(
        log_seqs(&page(&s, &newer, BOB)),
        pages[pages.len() - 2].1,
        "{newer}"
    );
    assert_eq!(s.get("/console/logs?before=x", BOB).status, 400);
    assert_eq!(s.get("/console/logs?limit=0", BOB).status, 400);
}
