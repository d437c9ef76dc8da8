//! Two `tagguard-registry` processes (replicas) on one PostgreSQL database and
//! one shared data directory: real skopeo pushes to both at once while a
//! policy created on one runs over tags pushed through the other; kill -9 of a
//! replica mid-run; a plugin swap on one served by the other. Needs a
//! PostgreSQL server in TAGGUARD_TEST_POSTGRES (`.ci/postgres` starts one);
//! skipped without it, failed without it when TAGGUARD_REQUIRE_CLIENTS=1.
//!
//! Size: TAGGUARD_REPLICA_RUN_TAGS (default 10,000: on a 2-core machine the run is
//! caught after its first batch of 500) tags for the kill -9 test.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Two replicas on a fresh database of the test PostgreSQL server, or `None` when
/// there is no server (the test is skipped).
fn replicas(dir: &TempDir) -> Option<(Server, Server)> {
    let server = postgres_server()?;
    let database = fresh_postgres_database(&server, &dir.path().display().to_string());
    let a = Server::start_on(&dir.join("a"), Some(database));
    let b = a.replica(&dir.join("b"));
    Some((a, b))
}

/// The alive tags of `org/app` and whether each is immutable, through the API.
fn tags(server: &Server) -> Vec<(String, bool)> {
    let names = server
        .get("/v2/org/app/tags/list?n=10000", ALICE)
        .expect(200)
        .json();
    let names: Vec<String> = names["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert!(names.len() < 10_000, "one page holds every tag");
    let immutable = server.immutable_tags_in_db().expect("the database is read");
    names
        .into_iter()
        .map(|n| {
            let i = immutable.contains(&n);
            (n, i)
        })
        .collect()
}

/// Every tag that matches `pattern` is immutable with exactly one record, every other
/// is mutable with none, and the chain verifies on both replicas.
fn assert_every_promise(a: &Server, b: &Server, matches: impl Fn(&str) -> bool) -> usize {
    let all = tags(a);
    let logs = a.all_logs("/api/v1/organization/org/logs");
    let marks = marks_by_tag(&logs);
    let mut immutable = 0;
    for (name, is_immutable) in &all {
        let records = marks.get(name).map_or(0, Vec::len);
        if matches(name) {
            assert!(
                *is_immutable,
                "{name} matches the policy but is mutable: a push was decided against the old policy set"
            );
            assert_eq!(records, 1, "{name} has {records} immutability records");
            immutable += 1;
        } else {
            assert!(!is_immutable, "{name} does not match but is immutable");
            assert_eq!(records, 0, "{name} has {records} records");
        }
    }
    for s in [a, b] {
        let v = s.verify();
        assert_eq!(v["verified"], json!(true), "chain on {}: {v}", s.addr());
    }
    immutable
}

#[test]
fn two_replicas_under_concurrent_skopeo_pushes_and_a_retroactive_run_keep_every_promise() {
    if !clients_available(
        "two_replicas_under_concurrent_skopeo_pushes_and_a_retroactive_run_keep_every_promise",
        &["skopeo", "umoci", "curl"],
    ) {
        return;
    }
    let dir = TempDir::new("replicas-promises");
    let Some((a, b)) = replicas(&dir) else {
        return;
    };
    // Tags already there, pushed through B: the policy created on A runs over them.
    let seeded: Vec<String> = (0..2000)
        .map(|i| format!("{}{i}", if i % 2 == 0 { "v1." } else { "dev-" }))
        .collect();
    seed_tags(&b, &dir, &seeded);

    let images = ["p0", "p1", "p2", "p3", "p4", "p5"];
    let layout = umoci_images(dir.path(), &images);
    // Both replicas take skopeo pushes while A creates the policy.
    let (created, pushed) = thread::scope(|scope| {
        let pushers: Vec<_> = [("a", &a), ("b", &b)]
            .into_iter()
            .map(|(side, server)| {
                let (layout, dir) = (&layout, &dir);
                scope.spawn(move || {
                    let mut outcomes = Vec::new();
                    for round in 0..2 {
                        for name in images {
                            let tag = format!("v1.{side}{round}{name}");
                            let digestfile = dir.join(&format!("{tag}.digest"));
                            let out = skopeo_copy(
                                server,
                                layout,
                                name,
                                &format!("org/app:{tag}"),
                                &digestfile,
                            );
                            outcomes.push((tag, out.success(), out.stderr));
                        }
                    }
                    outcomes
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(300));
        let created = a.create_org_policy("org", r"v1\..*", ALICE);
        let pushed: Vec<_> = pushers
            .into_iter()
            .flat_map(|p| p.join().expect("pusher"))
            .collect();
        (created, pushed)
    });
    assert_eq!(created.status, 201, "{}", created.describe());
    let run = created.json()["run"].clone();
    for (tag, ok, stderr) in pushed {
        assert!(ok, "skopeo push of {tag} failed: {stderr}");
    }
    let immutable = assert_every_promise(&a, &b, |n| n.starts_with("v1."));
    assert!(
        immutable >= 1000 + 24,
        "the seeded v1.* tags and every pushed one: {immutable}"
    );
    eprintln!("run on A: {run}; {immutable} immutable tags, each with one record");
}

#[test]
fn a_replica_killed_mid_run_leaves_an_incomplete_run_that_the_other_finishes() {
    if !clients_available(
        "a_replica_killed_mid_run_leaves_an_incomplete_run_that_the_other_finishes",
        &["curl"],
    ) {
        return;
    }
    let dir = TempDir::new("replicas-kill");
    let Some((mut a, b)) = replicas(&dir) else {
        return;
    };
    let total: usize = std::env::var("TAGGUARD_REPLICA_RUN_TAGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let all: Vec<String> = (0..total).map(|i| format!("t{i}")).collect();
    seed_tags(&b, &dir, &all);

    let addr = a.addr();
    let poster = thread::spawn(move || {
        try_http(
            &addr,
            "POST",
            "/api/v1/organization/org/immutabilitypolicy/",
            ALICE,
            &[("Content-Type", "application/json")],
            json!({"tagPattern": ".*"}).to_string().as_bytes(),
            Duration::from_secs(600),
        )
    });
    // B sees A's run going and marking; then A dies.
    let running = wait_for(&b, Duration::from_secs(60), |run| {
        run["status"] == json!("running") && run["changed"].as_u64().unwrap_or(0) > 0
    })
    .expect("B sees A's run running with marks");
    a.kill9();
    let _ = poster.join();
    let id = running["id"].as_i64().expect("run id");

    // B finds the run cut short within seconds (nobody holds it any more).
    let started = Instant::now();
    let incomplete = wait_for(&b, Duration::from_secs(10), |run| {
        run["id"] == json!(id) && run["status"] == json!("incomplete")
    })
    .unwrap_or_else(|| panic!("run {id} did not become incomplete: {:#?}", b.runs()));
    eprintln!(
        "run {id} incomplete after {:.1?} at {} of {total} tags",
        started.elapsed(),
        incomplete["changed"]
    );
    assert!(
        incomplete["changed"].as_u64().unwrap_or(0) < total as u64,
        "the kill came before the run ended: {incomplete}"
    );

    // B finishes it; every tag ends immutable with exactly one record.
    let finished = b
        .request(
            "POST",
            &format!("/api/v1/tagguard/runs/{id}/apply"),
            ALICE,
            &[],
            b"",
        )
        .expect(200)
        .json();
    assert_eq!(finished["status"], json!("completed"), "{finished}");
    let in_db = b.immutable_tags_in_db().expect("database read");
    assert_eq!(in_db.len(), total + 1, "every tag and `seed` are immutable");
    let logs = b.all_logs("/api/v1/organization/org/logs");
    let marks = marks_by_tag(&logs);
    let twice: Vec<_> = marks.iter().filter(|(_, r)| r.len() != 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "tags without exactly one record: {twice:?}"
    );
    assert_eq!(
        marks.keys().cloned().collect::<BTreeSet<_>>(),
        in_db,
        "the records name exactly the immutable tags"
    );
    assert_eq!(b.verify()["verified"], json!(true));
}

/// Polls B's runs until one satisfies `f`.
fn wait_for(server: &Server, within: Duration, f: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(r) = try_http(
            &server.addr(),
            "GET",
            "/api/v1/tagguard/runs",
            ALICE,
            &[],
            b"",
            Duration::from_secs(5),
        ) && r.status == 200
            && let Some(found) = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["runs"].as_array()?.iter().find(|x| f(x)).cloned())
        {
            return Some(found);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The digest of the plugin a replica serves, and its generation.
fn serving(server: &Server) -> (String, u64) {
    let v = server
        .get("/api/v1/tagguard/plugin", ALICE)
        .expect(200)
        .json();
    (
        v["stamp"]["digest"].as_str().unwrap_or_default().to_owned(),
        v["generation"].as_u64().unwrap_or_default(),
    )
}

/// How long until `server` serves `digest`, polled every 10 ms for up to 5 s.
fn served_within(server: &Server, digest: &str) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if serving(server).0 == digest {
            return start.elapsed();
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("{} did not serve {digest} within 5 s", server.addr());
}

fn swap_records(server: &Server) -> Vec<Value> {
    server
        .get(
            "/api/v1/tagguard/logs?kind=immutability_plugin_swapped",
            ALICE,
        )
        .expect(200)
        .json()["logs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_swap_on_one_replica_is_served_by_the_other_within_a_second_and_recorded_once() {
    let dir = TempDir::new("replicas-swap");
    let Some((a, b)) = replicas(&dir) else {
        return;
    };
    let (default, first) = serving(&b);
    assert_eq!(first, 1);
    let glob = std::fs::read(tagguard_engine::built_plugin_path("glob-policy"))
        .expect("the build made it");
    let swapped = a
        .request("PUT", "/api/v1/tagguard/plugin", ALICE, &[], &glob)
        .expect(200)
        .json();
    let digest = swapped["new"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let took = served_within(&b, &digest);
    eprintln!("B served the swap after {took:.0?}");
    assert!(took < Duration::from_secs(1), "B took {took:?}");
    assert_eq!(serving(&b), (digest.clone(), 2));
    assert_eq!(swap_records(&b).len(), 1, "the swap is recorded once");

    // B decides with the new plugin: `v1.*` is a glob now.
    b.create_org_policy("org", "v1.*", ALICE).expect(201);
    b.push_image("org/app", "v1.0", "x", ALICE);
    let history = b
        .get(
            "/api/v1/tagguard/repository/org/app/tag/v1.0/history",
            ALICE,
        )
        .expect(200)
        .json();
    assert_eq!(history["immutable"], json!(true), "{history}");

    // A rollback on B propagates back to A, recorded once more.
    let back = b
        .request("POST", "/api/v1/tagguard/plugin/rollback", ALICE, &[], b"")
        .expect(200)
        .json();
    assert_eq!(back["new"]["digest"], json!(default));
    let took = served_within(&a, &default);
    assert!(took < Duration::from_secs(1), "A took {took:?}");
    assert_eq!(serving(&a), (default, 3));
    assert_eq!(swap_records(&a).len(), 2);
    assert_eq!(a.verify()["verified"], json!(true));
}

#[test]
fn an_upload_started_on_one_replica_is_continued_and_finished_on_the_other() {
    let dir = TempDir::new("replicas-upload");
    let Some((a, b)) = replicas(&dir) else {
        return;
    };
    let (first, second) = (
        b"the first chunk, ".as_slice(),
        b"and the second".as_slice(),
    );
    let whole = [first, second].concat();
    let started = a
        .request("POST", "/v2/org/app/blobs/uploads/", ALICE, &[], b"")
        .expect(202);
    let path = location_path(started.header("location").expect("Location")).to_owned();
    let patched = b
        .request(
            "PATCH",
            &path,
            ALICE,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &format!("0-{}", first.len() - 1)),
            ],
            first,
        )
        .expect(202);
    assert_eq!(
        patched.header("range"),
        Some(format!("0-{}", first.len() - 1).as_str()),
        "{}",
        patched.describe()
    );
    let status = a.request("GET", &path, ALICE, &[], b"").expect(204);
    assert_eq!(
        status.header("range"),
        Some(format!("0-{}", first.len() - 1).as_str())
    );
    let sep = if path.contains('?') { '&' } else { '?' };
    b.request(
        "PUT",
        &format!("{path}{sep}digest={}", digest(&whole)),
        ALICE,
        &[("Content-Type", "application/octet-stream")],
        second,
    )
    .expect(201);
    let got = a
        .request(
            "GET",
            &format!("/v2/org/app/blobs/{}", digest(&whole)),
            ALICE,
            &[],
            b"",
        )
        .expect(200);
    assert_eq!(got.body, whole, "A serves the blob B finished");
    // Another repository's request does not see the session.
    let other = a.request(
        "GET",
        &path.replace("org/app", "org/other"),
        ALICE,
        &[],
        b"",
    );
    assert_eq!(other.status, 404, "{}", other.describe());
}
