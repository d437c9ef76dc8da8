//! The console in a real browser: Debian's chromium driven through chromedriver's
//! WebDriver protocol. Sign in, push with skopeo, preview then create a policy
//! through the form, see the lock badge and the history of the marked tag, see a
//! refused overwrite in the log, and see verification turn red at an edited entry.
//! Signing in is done with the keyboard alone, checking the focus order and that
//! the focused control shows a focus ring.
//! Skips when chromium, chromedriver, skopeo or umoci is missing, unless
//! TAGGUARD_REQUIRE_CLIENTS=1.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const CMD_TIMEOUT: Duration = Duration::from_secs(300);

/// WebDriver's Tab key.
const TAB: &str = "\u{E004}";

/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One WebDriver request, through the tests' one HTTP client (which reads the
/// answer by its length: chromedriver keeps connections open).
fn webdriver(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let r = try_http(
        addr,
        method,
        path,
        Auth::None,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
        Duration::from_secs(120),
    )?;
    Ok((
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    ))
}

/// A chromedriver with one headless chromium session.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = webdriver(&addr, "GET", "/status", None)
                .is_ok_and(|(status, v)| status == 200 && v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let (_, body) =
            webdriver(&addr, "POST", "/session", Some(&caps)).expect("a WebDriver session");
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {body}"))
            .to_string();
        Browser {
            driver,
            addr,
            session,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = (method != "GET").then_some(&body);
        let (status, v) = webdriver(&self.addr, method, &path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        );
    }

    /// Clicks a link or submit button and waits until the page it loads is complete:
    /// a click's navigation may still be under way when WebDriver answers, and the old
    /// page must not be read as the new one.
    fn click(&self, css: &str) {
        let id = self.find(css);
        self.script("window.tagguardOldPage = true; return true;");
        self.call("POST", &format!("/element/{id}/click"), json!({}));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let loaded = self.script(
                "return window.tagguardOldPage === undefined && document.readyState === 'complete';",
            );
            if loaded == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the click on {css} did not load a page within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a script in the page (the test's own; the console has none).
    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/text"), json!({}))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn attribute(&self, css: &str, name: &str) -> String {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/attribute/{name}"), json!({}))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Presses and releases each key in turn (WebDriver key actions), sent to
    /// whatever has the focus, as a keyboard would.
    fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| {
                [
                    json!({"type": "keyDown", "value": k.to_string()}),
                    json!({"type": "keyUp", "value": k.to_string()}),
                ]
            })
            .collect();
        self.call(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
        self.call("DELETE", "/actions", json!({}));
    }

    /// The focused element's reference.
    fn active(&self) -> String {
        let v = self.call("GET", "/element/active", json!({}));
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("nothing has the focus: {v}"))
            .to_string()
    }

    /// An attribute of the focused element.
    fn active_attribute(&self, name: &str) -> String {
        let id = self.active();
        self.call("GET", &format!("/element/{id}/attribute/{name}"), json!({}))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A computed style property of the focused element.
    fn active_css(&self, property: &str) -> String {
        let id = self.active();
        self.call("GET", &format!("/element/{id}/css/{property}"), json!({}))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Checks that the focused element shows the console's focus ring.
    fn assert_focus_visible(&self, what: &str) {
        let (style, width, shadow) = (
            self.active_css("outline-style"),
            self.active_css("outline-width"),
            self.active_css("box-shadow"),
        );
        assert!(
            style == "solid" && width == "3px" && shadow != "none",
            "{what}: no visible focus ring (outline {style} {width}, shadow {shadow})"
        );
    }

    fn source(&self) -> String {
        self.call("GET", "/source", json!({}))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = webdriver(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn skopeo_copy(server: &Server, layout: &Path, name: &str, dest: &str) -> CmdOutput {
    run_cmd(
        Command::new("skopeo").args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &ALICE.creds(),
            &format!("oci:{}:{name}", layout.display()),
            &server.image(dest),
        ]),
        CMD_TIMEOUT,
    )
}

#[test]
fn an_auditor_sees_why_a_tag_is_immutable_a_refused_overwrite_and_a_tampered_log() {
    let test = "an_auditor_sees_why_a_tag_is_immutable_a_refused_overwrite_and_a_tampered_log";
    if !clients_available(test, &["chromium", "chromedriver", "skopeo", "umoci"]) {
        return;
    }
    let dir = TempDir::new("console-browser");
    let layout = umoci_images(dir.path(), &["a", "b"]);
    let server = Server::start(dir.path());
    skopeo_copy(&server, &layout, "a", "org/app:v1.0.0").ok();
    skopeo_copy(&server, &layout, "b", "org/app:latest").ok();
    let base = format!("http://{}", server.addr());
    let browser = Browser::start(&dir.join("profile"));

    // Sign in with the keyboard alone: Tab reaches the account, the token and
    // the button in order, each with a visible focus ring; Enter submits.
    browser.goto(&format!("{base}/console/login"));
    browser.keys(TAB);
    assert_eq!(
        browser.active_attribute("id"),
        "name",
        "{}",
        browser.source()
    );
    browser.assert_focus_visible("the account field");
    browser.keys("alice");
    browser.keys(TAB);
    assert_eq!(browser.active_attribute("id"), "secret");
    browser.assert_focus_visible("the token field");
    browser.keys("s3cret");
    browser.keys(TAB);
    assert_eq!(browser.active_attribute("type"), "submit");
    browser.assert_focus_visible("the sign-in button");
    browser.keys(ENTER);
    assert!(
        browser.source().contains("Signed in as"),
        "{}",
        browser.source()
    );
    // On a signed-in page, Tab reaches the navigation's first link, ringed.
    browser.keys(TAB);
    assert!(
        browser.active_attribute("href").ends_with("/console/"),
        "{}",
        browser.source()
    );
    browser.assert_focus_visible("a navigation link");

    // Preview a policy, then create it from the same form.
    browser.goto(&format!("{base}/console/organization/org/policies"));
    browser.type_into("#pattern", r"v1\..*");
    browser.click("button[value=preview]");
    assert_eq!(browser.text("#preview-count"), "1", "{}", browser.source());
    assert!(
        browser.source().contains("org/app:v1.0.0"),
        "the sample: {}",
        browser.source()
    );
    browser.click("button[value=create]");
    // The click may return before the form's POST lands: wait for the policy.
    let deadline = Instant::now() + Duration::from_secs(30);
    let uuid = loop {
        let policies = server
            .get("/api/v1/organization/org/immutabilitypolicy/", ALICE)
            .expect(200)
            .json();
        if let Some(uuid) = policies["policies"][0]["uuid"].as_str() {
            break uuid.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{policies}: {}",
            browser.source()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // And for the page it redirects to.
    while !browser.source().contains(&uuid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        browser.source().contains(&uuid),
        "the list shows it: {}",
        browser.source()
    );

    // The lock badge, then a click to the tag's history.
    browser.goto(&format!("{base}/console/repository/org/app"));
    let page = browser.source();
    let row = |tag: &str| {
        let at = page
            .find(&format!(">{tag}</a>"))
            .unwrap_or_else(|| panic!("no {tag}: {page}"));
        page[at..at + page[at..].find("</tr>").unwrap()].to_string()
    };
    assert!(row("v1.0.0").contains("class=\"lock\""), "{page}");
    assert!(!row("latest").contains("class=\"lock\""), "{page}");
    browser.click("a[href$='/tag/v1.0.0']");
    let history = browser.source();
    assert!(history.contains("Why it is immutable"), "{history}");
    assert!(
        history.contains(&uuid) && history.contains("policy_created"),
        "{history}"
    );

    // An overwrite is refused, and the log page shows it.
    let overwrite = skopeo_copy(&server, &layout, "b", "org/app:v1.0.0");
    assert!(
        !overwrite.success(),
        "the overwrite is refused: {}",
        overwrite.describe()
    );
    browser.goto(&format!("{base}/console/logs"));
    browser.type_into("#kind", "tag_immutability_denied");
    browser.click("fieldset button[type=submit]");
    let logs = browser.source();
    assert!(
        logs.contains("<td>tag_immutability_denied</td>") && logs.contains("<td>v1.0.0</td>"),
        "{logs}"
    );
    assert_eq!(browser.attribute("#verification", "class"), "ok", "{logs}");

    // Edit the log by hand: verification turns red at that entry.
    let db = rusqlite::Connection::open(server.data.join("registry.db")).unwrap();
    let id: i64 = db
        .query_row(
            "SELECT min(id) FROM logentry3 WHERE entry_json LIKE '%alice%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.execute(
        "UPDATE logentry3 SET entry_json = replace(entry_json, 'alice', 'mallory') WHERE id = ?1",
        [id],
    )
    .unwrap();
    browser.goto(&format!("{base}/console/logs"));
    assert_eq!(
        browser.attribute("#verification", "class"),
        "bad",
        "{}",
        browser.source()
    );
    let status = browser.text("#verification");
    assert!(
        status.contains(&format!("Verification failed at entry {id}")),
        "{status}"
    );
}
