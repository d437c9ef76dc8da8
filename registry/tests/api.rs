//! The registry's own API and operations over plain HTTP (no external client):
//! preview, plugin swap and rollback, verification after tampering, metrics
//! and health, referrers, and Quay's error shape for a bad policy.

mod support;

use serde_json::{Value, json};
use support::*;
use tagguard_engine::built_plugin_path;

fn server(name: &str) -> (TempDir, Server) {
    let dir = TempDir::new(name);
    let server = Server::start(dir.path());
    (dir, server)
}

fn log_kinds(server: &Server, kind: &str) -> Vec<Value> {
    let body = server
        .get(&format!("/api/v1/tagguard/logs?kind={kind}"), ALICE)
        .expect(200)
        .json();
    body["logs"].as_array().cloned().unwrap_or_default()
}

#[test]
fn preview_counts_the_mutable_tags_a_candidate_would_mark_and_writes_nothing() {
    let (_dir, s) = server("api-preview");
    for tag in ["v1.0", "v1.1", "latest"] {
        s.push_image("org/app", tag, tag, ALICE);
    }
    s.create_org_policy("org", "v1\\.1", ALICE).expect(201);
    let before = s.verify()["entries"].clone();
    let report = s
        .post_json(
            "/api/v1/tagguard/organization/org/preview",
            BOB,
            &json!({"tagPattern": " v1\\..* "}),
        )
        .expect(200)
        .json();
    assert_eq!(report["count"], 1, "v1.1 is already immutable: {report}");
    assert_eq!(report["sample"][0]["tag"], "v1.0", "{report}");
    assert_eq!(s.verify()["entries"], before, "a preview writes no record");
    let bad = s.post_json(
        "/api/v1/tagguard/organization/org/preview",
        ALICE,
        &json!({"tagPattern": "(?=x)"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.describe());
    assert!(bad.text().contains("tag-pattern"), "{}", bad.describe());
}

#[test]
fn a_swap_is_admin_only_recorded_kept_across_a_restart_and_rolled_back() {
    let (_dir, mut s) = server("api-swap");
    let glob = std::fs::read(built_plugin_path("glob-policy")).expect("the build made glob-policy");
    let refused = s.request("PUT", "/api/v1/tagguard/plugin", BOB, &[], &glob);
    assert_eq!(refused.status, 403, "{}", refused.describe());
    let before = s.get("/api/v1/tagguard/plugin", ALICE).expect(200).json();
    let swapped = s
        .request("PUT", "/api/v1/tagguard/plugin", ALICE, &[], &glob)
        .expect(200)
        .json();
    assert_eq!(swapped["generation"], 2, "{swapped}");
    assert_ne!(swapped["new"]["digest"], before["stamp"]["digest"]);
    let records = log_kinds(&s, "immutability_plugin_swapped");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["entry"]["performer"]["name"], "alice");

    // A restart serves the plugin that served last.
    s.restart();
    let after = s.get("/api/v1/tagguard/plugin", ALICE).expect(200).json();
    assert_eq!(
        after["stamp"]["digest"], swapped["new"]["digest"],
        "{after}"
    );
    // Globs now: `v1.*` is a glob, and a push of v1.0 is made immutable.
    s.create_org_policy("org", "v1.*", ALICE).expect(201);
    s.push_image("org/app", "v1.0", "a", ALICE);
    let (config, layer) = image_blobs("b");
    let c = s.push_blob("org/app", &config, ALICE);
    let l = s.push_blob("org/app", &layer, ALICE);
    let again = s.request(
        "PUT",
        "/v2/org/app/manifests/v1.0",
        ALICE,
        &[("Content-Type", OCI_MANIFEST)],
        &oci_manifest(&c, config.len(), &l, layer.len()),
    );
    assert_eq!(again.status, 409, "{}", again.describe());

    // A hostile candidate is refused and the current plugin keeps serving.
    let wrong_world =
        std::fs::read(built_plugin_path("hostile-plugin-wrong-world")).expect("the build made it");
    let rejected = s.request("PUT", "/api/v1/tagguard/plugin", ALICE, &[], &wrong_world);
    assert_eq!(rejected.status, 400, "{}", rejected.describe());
    let wrong = s.request(
        "PUT",
        "/api/v1/tagguard/plugin",
        ALICE,
        &[],
        b"not a component",
    );
    assert_eq!(wrong.status, 400, "{}", wrong.describe());
    let current = s.get("/api/v1/tagguard/plugin", ALICE).expect(200).json();
    assert_eq!(current["stamp"]["digest"], swapped["new"]["digest"]);
    assert_eq!(log_kinds(&s, "immutability_plugin_swapped").len(), 1);

    // The database keeps what served before the swap: after the restart a rollback
    // returns to it, numbered on from the generation that served.
    let back = s
        .request("POST", "/api/v1/tagguard/plugin/rollback", ALICE, &[], b"")
        .expect(200)
        .json();
    assert_eq!(back["new"]["digest"], before["stamp"]["digest"], "{back}");
    assert_eq!(back["generation"], 3, "{back}");
    s.restart();
    let after = s.get("/api/v1/tagguard/plugin", ALICE).expect(200).json();
    assert_eq!(
        after["stamp"]["digest"], before["stamp"]["digest"],
        "{after}"
    );
    assert_eq!(after["stamp"]["generation"], 3, "{after}");
    let none = s.request("POST", "/api/v1/tagguard/plugin/rollback", ALICE, &[], b"");
    assert_eq!(
        none.status,
        200,
        "a rollback after a rollback returns to the swapped plugin: {}",
        none.describe()
    );
    assert_eq!(log_kinds(&s, "immutability_plugin_swapped").len(), 3);
    assert_eq!(s.verify()["verified"], true);
}

#[test]
fn an_edited_log_row_fails_verification_at_its_seq() {
    let (_dir, s) = server("api-tamper");
    s.push_image("org/app", "v1", "a", ALICE);
    s.create_org_policy("org", "v.*", ALICE).expect(201);
    s.create_org_policy("org", "w.*", ALICE).expect(201);
    let ok = s.verify();
    assert_eq!(ok["verified"], true, "{ok}");
    assert_eq!(ok["entries"], 5, "{ok}");
    let db = rusqlite::Connection::open(s.data.join("registry.db")).unwrap();
    // Rewrite what the log says about the tag, as an insider with the database would.
    let n = db
        .execute(
            "UPDATE logentry3 SET metadata_json = replace(metadata_json, '\"immutable\":true', '\"immutable\":false') WHERE id = 2",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    let broken = s.verify();
    assert_eq!(broken["verified"], false, "{broken}");
    assert_eq!(broken["first_broken"], 2, "{broken}");
    // Rewriting the entry the hash covers breaks the chain at the same seq.
    db.execute(
        "UPDATE logentry3 SET metadata_json = replace(metadata_json, '\"immutable\":false', '\"immutable\":true') WHERE id = 2",
        [],
    )
    .unwrap();
    db.execute(
        "UPDATE logentry3 SET entry_json = replace(entry_json, 'alice', 'mallory') WHERE id = 3",
        [],
    )
    .unwrap();
    let broken = s.verify();
    assert_eq!(broken["verified"], false, "{broken}");
    assert_eq!(broken["first_broken"], 3, "{broken}");
}

#[test]
fn health_needs_no_credentials_and_metrics_count_decisions() {
    let (_dir, s) = server("api-metrics");
    let health = s.get("/healthz", Auth::None);
    assert_eq!(health.status, 200, "{}", health.describe());
    s.push_image("org/app", "v1", "a", ALICE);
    s.create_org_policy("org", "v1", ALICE).expect(201);
    let refused = s.request(
        "PUT",
        "/v2/org/app/manifests/v1",
        ALICE,
        &[("Content-Type", OCI_MANIFEST)],
        &s.get("/v2/org/app/manifests/v1", ALICE).body,
    );
    assert_eq!(refused.status, 409, "{}", refused.describe());
    let metrics = s.get("/metrics", Auth::None).expect(200).text();
    for line in [
        "tagguard_decisions_total{call=\"push\",outcome=\"created\"} 1",
        "tagguard_decisions_total{call=\"push\",outcome=\"denied\"} 1",
        "tagguard_tags_made_immutable_total{trigger=\"run\"} 1",
        "tagguard_plugin_generation 1",
        "tagguard_runs{status=\"running\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
}

#[test]
fn referrers_list_the_manifests_whose_subject_is_the_digest() {
    let (_dir, s) = server("api-referrers");
    let (_, subject) = s.push_image("org/app", "v1", "a", ALICE);
    let config = b"{}".to_vec();
    let config_digest = s.push_blob("org/app", &config, ALICE);
    let layer_digest = s.push_blob("org/app", b"signature", ALICE);
    let artifact = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer_digest, "size": 9}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
    })
    .to_string()
    .into_bytes();
    let d = digest(&artifact);
    let put = s
        .request(
            "PUT",
            &format!("/v2/org/app/manifests/{d}"),
            ALICE,
            &[("Content-Type", OCI_MANIFEST)],
            &artifact,
        )
        .expect(201);
    assert_eq!(put.header("oci-subject"), Some(subject.as_str()));
    let index = s
        .get(&format!("/v2/org/app/referrers/{subject}"), ALICE)
        .expect(200)
        .json();
    assert_eq!(index["manifests"][0]["digest"], d.as_str(), "{index}");
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.example.signature"
    );
    let filtered = s.get(
        &format!("/v2/org/app/referrers/{subject}?artifactType=application/other"),
        ALICE,
    );
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered.json()["manifests"], json!([]));
}

#[test]
fn a_bad_or_duplicate_pattern_is_a_quay_style_400_naming_the_field() {
    let (_dir, s) = server("api-badpolicy");
    let bad = s.create_org_policy("org", "(?<=v)1", ALICE);
    assert_eq!(bad.status, 400, "{}", bad.describe());
    let body = bad.json();
    assert_eq!(body["error_type"], "invalid_request", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("tag-pattern"),
        "{body}"
    );
    s.create_org_policy("org", "v.*", ALICE).expect(201);
    let dup = s.create_org_policy("org", " v.* ", ALICE);
    assert_eq!(dup.status, 400, "{}", dup.describe());
    assert!(dup.text().contains("duplicates"), "{}", dup.describe());
    let unknown = s.post_json(
        "/api/v1/organization/org/immutabilitypolicy/",
        ALICE,
        &json!({"tagPattern": "x", "pattern": "y"}),
    );
    assert_eq!(unknown.status, 400, "{}", unknown.describe());
    assert!(unknown.text().contains("pattern"), "{}", unknown.describe());
    let policies = s
        .get("/api/v1/organization/org/immutabilitypolicy/", ALICE)
        .expect(200)
        .json();
    assert_eq!(
        policies["policies"].as_array().map(Vec::len),
        Some(1),
        "{policies}"
    );
}

#[test]
fn concurrent_creates_of_one_pattern_store_it_once() {
    let (_dir, s) = server("api-dup-race");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| s.create_org_policy("org", "release-.*", ALICE).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 400).count(),
        7,
        "{statuses:?}"
    );
    let policies = s
        .get("/api/v1/organization/org/immutabilitypolicy/", ALICE)
        .expect(200)
        .json();
    assert_eq!(
        policies["policies"].as_array().map(Vec::len),
        Some(1),
        "{policies}"
    );
}

#[test]
fn concurrent_deletes_of_one_policy_delete_it_once_and_answer_404_to_the_rest() {
    let (_dir, s) = server("api-delete-race");
    let uuid = s
        .create_org_policy("org", "release-.*", ALICE)
        .expect(201)
        .json()["uuid"]
        .as_str()
        .expect("uuid")
        .to_owned();
    let path = format!("/api/v1/organization/org/immutabilitypolicy/{uuid}");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| s.request("DELETE", &path, ALICE, &[], b"").status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 204).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 404).count(),
        7,
        "a delete that lost the race finds the policy gone: {statuses:?}"
    );
    assert_eq!(log_kinds(&s, "delete_immutability_policy").len(), 1);
}
