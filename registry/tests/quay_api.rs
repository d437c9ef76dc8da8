//! Quay's own REST API tests for immutability policies
//! (quay/quay `endpoints/api/test/test_immutability_policy.py`), ported to
//! tagguard-registry's REST API. Each test names the Quay test it ports;
//! the facts reproduced are the status codes and the shapes of the views.

mod support;

use serde_json::{Value, json};
use support::*;

fn server(name: &str) -> (TempDir, Server) {
    let dir = TempDir::new(name);
    let server = Server::start(dir.path());
    (dir, server)
}

const ORG: &str = "/api/v1/organization/buynlarge/immutabilitypolicy/";

fn repo_base(s: &Server) -> &'static str {
    // A repository exists once something was pushed to it.
    s.push_image("devtable/simple", "latest", "simple", ALICE);
    "/api/v1/repository/devtable/simple/immutabilitypolicy/"
}

fn list(s: &Server, base: &str) -> Vec<Value> {
    s.get(base, ALICE).expect(200).json()["policies"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no \"policies\" list at {base}"))
}

fn create(s: &Server, base: &str, body: Value) -> Response {
    s.post_json(base, ALICE, &body)
}

fn put_json(s: &Server, path: &str, body: Value) -> Response {
    s.request(
        "PUT",
        path,
        ALICE,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// Ports `TestOrgImmutabilityPolicies.test_list_empty` and
/// `TestRepositoryImmutabilityPolicies.test_list_empty`.
#[test]
fn quay_test_list_empty() {
    let (_dir, s) = server("quay-list-empty");
    assert!(list(&s, ORG).is_empty());
    let repo = repo_base(&s);
    assert!(list(&s, repo).is_empty());
}

/// Ports `TestOrgImmutabilityPolicies.test_create_and_list`.
#[test]
fn quay_test_org_create_and_list() {
    let (_dir, s) = server("quay-org-create");
    let created = create(
        &s,
        ORG,
        json!({"tagPattern": "^v[0-9]+.*$", "tagPatternMatches": true}),
    )
    .expect(201)
    .json();
    let uuid = created["uuid"].as_str().expect("a uuid").to_string();
    let policies = list(&s, ORG);
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0]["uuid"], uuid.as_str());
    assert_eq!(policies[0]["tagPattern"], "^v[0-9]+.*$");
    assert_eq!(policies[0]["tagPatternMatches"], true);
}

/// Ports `TestOrgImmutabilityPolicies.test_create_invalid_regex`.
#[test]
fn quay_test_create_invalid_regex() {
    let (_dir, s) = server("quay-invalid");
    let r = create(&s, ORG, json!({"tagPattern": "[invalid"}));
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.json()["error_type"], "invalid_request");
    assert!(list(&s, ORG).is_empty());
}

/// Ports `TestOrgImmutabilityPolicies.test_create_duplicate_policy`.
#[test]
fn quay_test_create_duplicate_policy() {
    let (_dir, s) = server("quay-duplicate");
    create(&s, ORG, json!({"tagPattern": "^v[0-9]+.*$"})).expect(201);
    let r = create(&s, ORG, json!({"tagPattern": "^v[0-9]+.*$"}));
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(list(&s, ORG).len(), 1);
}

/// Ports `TestOrgImmutabilityPolicy.test_get_update_delete`.
#[test]
fn quay_test_org_get_update_delete() {
    let (_dir, s) = server("quay-org-crud");
    let uuid = create(&s, ORG, json!({"tagPattern": "^v1.*$"}))
        .expect(201)
        .json()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let one = format!("{ORG}{uuid}");
    let got = s.get(&one, ALICE).expect(200).json();
    assert_eq!(got["tagPattern"], "^v1.*$");
    assert_eq!(got["tagPatternMatches"], true);
    put_json(
        &s,
        &one,
        json!({"tagPattern": "^v2.*$", "tagPatternMatches": true}),
    )
    .expect(200);
    assert_eq!(
        s.get(&one, ALICE).expect(200).json()["tagPattern"],
        "^v2.*$"
    );
    let deleted = s.request("DELETE", &one, ALICE, &[], b"");
    assert_eq!(deleted.status, 204, "{}", deleted.describe());
    assert_eq!(s.get(&one, ALICE).status, 404);
}

/// Ports `TestRepositoryImmutabilityPolicies.test_create_and_list`.
#[test]
fn quay_test_repository_create_and_list() {
    let (_dir, s) = server("quay-repo-create");
    let base = repo_base(&s);
    let uuid = create(&s, base, json!({"tagPattern": "^release-.*$"}))
        .expect(201)
        .json()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let policies = list(&s, base);
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0]["uuid"], uuid.as_str());
    assert_eq!(policies[0]["tagPattern"], "^release-.*$");
    // A repository policy is not an organization policy.
    assert!(list(&s, "/api/v1/organization/devtable/immutabilitypolicy/").is_empty());
}

/// Ports `TestRepositoryImmutabilityPolicy.test_crud`.
#[test]
fn quay_test_repository_crud() {
    let (_dir, s) = server("quay-repo-crud");
    let base = repo_base(&s);
    let uuid = create(&s, base, json!({"tagPattern": "^v1.*$"}))
        .expect(201)
        .json()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let one = format!("{base}{uuid}");
    assert_eq!(
        s.get(&one, ALICE).expect(200).json()["tagPattern"],
        "^v1.*$"
    );
    put_json(
        &s,
        &one,
        json!({"tagPattern": "^v2.*$", "tagPatternMatches": false}),
    )
    .expect(200);
    let got = s.get(&one, ALICE).expect(200).json();
    assert_eq!(got["tagPattern"], "^v2.*$");
    assert_eq!(got["tagPatternMatches"], false);
    assert_eq!(s.request("DELETE", &one, ALICE, &[], b"").status, 204);
    assert_eq!(s.get(&one, ALICE).status, 404);
    // A policy of another owner is not reachable under this one's path.
    let org_uuid = create(
        &s,
        "/api/v1/organization/devtable/immutabilitypolicy/",
        json!({"tagPattern": "^x$"}),
    )
    .expect(201)
    .json()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.get(&format!("{base}{org_uuid}"), ALICE).status, 404);
}
