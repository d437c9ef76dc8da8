//! Real clients against `tagguard-registry`: skopeo, podman, curl, and
//! docker-registry 2.8.2 (the distribution project's reference server) as the
//! oracle of a differential test. Each test starts its own server on its own
//! port and data dir. A test whose client is not installed is skipped with a
//! message, or fails when TAGGUARD_REQUIRE_CLIENTS=1 (as in CI).
//!
//! Sizes: TAGGUARD_CRASH_TAGS (default 100,000, pushed in about 72 s on a
//! 2-core machine) is the tag count of the kill -9 test; TAGGUARD_RACE_TAGS
//! (default 20,000) that of the tests that act while a run is going.
//! TAGGUARD_KEEP_TEMP=1 keeps each test's directory (data, server logs).

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const CMD_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------
// Images built offline with umoci

fn skopeo_delete(server: &Server, image: &str) -> CmdOutput {
    run_cmd(
        Command::new("skopeo").args([
            "delete",
            "--tls-verify=false",
            "--creds",
            &ALICE.creds(),
            &server.image(image),
        ]),
        CMD_TIMEOUT,
    )
}

/// The manifest bytes skopeo reads for `image`.
fn skopeo_inspect_raw(server: &Server, image: &str) -> CmdOutput {
    run_cmd(
        Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &ALICE.creds(),
            &server.image(image),
        ]),
        CMD_TIMEOUT,
    )
}

/// The manifest digest of `name` in an OCI layout's index.
fn layout_digest(layout: &Path, name: &str) -> String {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("read index.json"))
            .expect("index.json is JSON");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == json!(name))
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("no {name} in {index}"))
        .to_owned()
}

fn read_digestfile(path: &Path) -> String {
    let d = fs::read_to_string(path).expect("read digestfile");
    let d = d.trim().to_owned();
    assert!(
        d.starts_with("sha256:") && d.len() == 71,
        "bad digest {d:?}"
    );
    d
}

/// The registry's message for a refused tag write.
const IMMUTABLE_MESSAGE: &str = "tag is immutable and cannot be overwritten";

/// A client's push was refused with the registry's 409 TAG_IMMUTABLE: it
/// exits with `code` (skopeo 1; podman 125, its code for any failed push) and
/// prints the registry's message. Returns how many refusals the client
/// reported (podman retries three times), which is how many denial records
/// the registry must have written.
fn assert_refused_as_immutable(out: &CmdOutput, code: i32) -> usize {
    assert_eq!(
        out.status.code(),
        Some(code),
        "a refused push exits {code}: {}",
        out.describe()
    );
    let refusals = out.stderr.matches(IMMUTABLE_MESSAGE).count();
    assert!(
        refusals > 0,
        "the client must print the registry's message: {}",
        out.describe()
    );
    refusals
}

/// Whether a `matched_policies` list names the policy (as a uuid or as an
/// object with that uuid).
fn names_policy(list: &Value, uuid: &str) -> bool {
    list.as_array().is_some_and(|l| {
        l.iter()
            .any(|p| p.as_str() == Some(uuid) || p["uuid"].as_str() == Some(uuid))
    })
}

/// GET a manifest with the usual Accept header.
/// A server with `org/app:v1.0.0` pushed by skopeo from image `v1` of a
/// umoci layout, then an org policy `v1\..*` created by alice.
struct SkopeoSetup {
    dir: TempDir,
    server: Server,
    layout: PathBuf,
    v1_digest: String,
    policy_uuid: String,
    run: Value,
}

fn skopeo_setup(name: &str, images: &[&str]) -> SkopeoSetup {
    let dir = TempDir::new(name);
    let layout = umoci_images(dir.path(), images);
    let server = Server::start(dir.path());

    let df = dir.join("v1.digest");
    skopeo_copy(&server, &layout, "v1", "org/app:v1.0.0", &df).ok();
    let v1_digest = read_digestfile(&df);

    let created = server.create_org_policy("org", r"v1\..*", ALICE);
    assert_eq!(created.status, 201, "create policy: {}", created.describe());
    let body = created.json();
    let policy_uuid = body["uuid"]
        .as_str()
        .unwrap_or_else(|| panic!("no uuid in {body}"))
        .to_owned();
    let run = body["run"].clone();
    assert_eq!(
        run["count"],
        json!(1),
        "the retroactive run marks exactly org/app:v1.0.0: {body}"
    );
    SkopeoSetup {
        dir,
        server,
        layout,
        v1_digest,
        policy_uuid,
        run,
    }
}

// ---------------------------------------------------------------------------
// 1. skopeo

#[test]
fn skopeo_overwrite_of_tag_made_immutable_by_policy_is_refused_and_logged() {
    if !clients_available(
        "skopeo_overwrite_of_tag_made_immutable_by_policy_is_refused_and_logged",
        &["skopeo", "umoci"],
    ) {
        return;
    }
    let s = skopeo_setup("skopeo-overwrite", &["v1", "v2"]);
    let server = &s.server;

    // A different image to the same tag: refused, and skopeo says why.
    let df2 = s.dir.join("v2.digest");
    let overwrite = skopeo_copy(server, &s.layout, "v2", "org/app:v1.0.0", &df2);
    assert!(
        !overwrite.success(),
        "overwriting an immutable tag must fail: {}",
        overwrite.describe()
    );
    let refusals = assert_refused_as_immutable(&overwrite, 1);

    // The tag still points at the first image.
    let got = get_manifest(server, "org/app", "v1.0.0").expect(200);
    assert_eq!(
        got.header("docker-content-digest"),
        Some(s.v1_digest.as_str()),
        "v1.0.0 moved: {}",
        got.describe()
    );
    assert_eq!(digest(&got.body), s.v1_digest);
    // skopeo pushed the layout's manifests unchanged (v1's digest is the
    // layout's), so v2's digest is the layout's too: a manifest that came
    // only with the refused push is not kept.
    assert_eq!(layout_digest(&s.layout, "v1"), s.v1_digest);
    let v2 = layout_digest(&s.layout, "v2");
    let r = get_manifest(server, "org/app", &v2);
    assert_eq!(
        r.status,
        404,
        "the refused push's manifest stays: {}",
        r.describe()
    );

    let logs = server.all_logs("/api/v1/organization/org/logs");
    let made: Vec<&Value> = of_kind(&logs, "tag_made_immutable_by_policy")
        .into_iter()
        .filter(|e| log_tag(e) == Some("v1.0.0"))
        .collect();
    assert_eq!(
        made.len(),
        1,
        "one tag_made_immutable_by_policy for v1.0.0: {made:#?}"
    );
    let m = made[0];
    assert_eq!(performer(m), "alice", "performer of {m}");
    assert_eq!(m["metadata"]["trigger"], json!("policy_created"), "{m}");
    assert_eq!(m["metadata"]["policy_uuid"], json!(s.policy_uuid), "{m}");
    assert_eq!(m["metadata"]["run_id"], s.run["run_id"], "{m}");
    assert_eq!(m["metadata"]["immutable"], json!(true), "{m}");
    assert_eq!(m["namespace"]["name"], json!("org"), "{m}");

    let denied: Vec<&Value> = of_kind(&logs, "tag_immutability_denied")
        .into_iter()
        .filter(|e| log_tag(e) == Some("v1.0.0"))
        .collect();
    assert_eq!(
        denied.len(),
        refusals,
        "one tag_immutability_denied for v1.0.0 per refusal skopeo reported; kinds: {:?}",
        logs.iter().map(log_kind).collect::<Vec<_>>()
    );
    for d in &denied {
        assert_eq!(performer(d), "alice", "performer of {d}");
        assert_eq!(d["metadata"]["operation"], json!("push"), "{d}");
        assert_eq!(d["metadata"]["reason"], json!("TAG_IMMUTABLE"), "{d}");
        assert!(
            names_policy(&d["metadata"]["matched_policies"], &s.policy_uuid),
            "the denial names the policy that keeps the tag immutable: {d}"
        );
    }
    assert_eq!(
        of_kind(&logs, "create_immutability_policy").len(),
        1,
        "one create_immutability_policy"
    );

    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "{verify}");
}

#[test]
fn skopeo_delete_is_refused_for_immutable_tags_and_allowed_for_mutable_ones() {
    if !clients_available(
        "skopeo_delete_is_refused_for_immutable_tags_and_allowed_for_mutable_ones",
        &["skopeo", "umoci"],
    ) {
        return;
    }
    let s = skopeo_setup("skopeo-delete", &["v1", "v3"]);
    let server = &s.server;
    let denials = |server: &Server| {
        of_kind(
            &server.all_logs("/api/v1/organization/org/logs"),
            "tag_immutability_denied",
        )
        .len()
    };
    let denied_before = denials(server);

    // skopeo delete resolves the tag and deletes the manifest by digest.
    let del = skopeo_delete(server, "org/app:v1.0.0");
    assert!(
        !del.success(),
        "deleting an immutable tag must fail: {}",
        del.describe()
    );
    assert!(
        del.stderr.contains("immutable"),
        "skopeo's error must say the tag is immutable: {}",
        del.describe()
    );
    assert_eq!(del.status.code(), Some(1), "{}", del.describe());
    let raw = skopeo_inspect_raw(server, "org/app:v1.0.0").ok();
    assert_eq!(
        digest(raw.stdout.as_bytes()),
        s.v1_digest,
        "v1.0.0 must still resolve to its manifest"
    );
    let logs = server.all_logs("/api/v1/organization/org/logs");
    let delete_denials: Vec<&Value> = of_kind(&logs, "tag_immutability_denied")
        .into_iter()
        .filter(|d| d["metadata"]["operation"] == json!("delete_manifest"))
        .collect();
    assert!(
        denials(server) > denied_before && !delete_denials.is_empty(),
        "the refused delete left no tag_immutability_denied with operation delete_manifest"
    );
    for d in &delete_denials {
        assert_eq!(log_tag(d), Some("v1.0.0"), "{d}");
        assert_eq!(performer(d), "alice", "{d}");
    }

    // A mutable tag on the same manifest: deleting it by digest would remove
    // v1.0.0 too, so it is refused as well.
    let df = s.dir.join("also.digest");
    skopeo_copy(server, &s.layout, "v1", "org/app:also", &df).ok();
    assert_eq!(read_digestfile(&df), s.v1_digest);
    let del = skopeo_delete(server, "org/app:also");
    assert!(
        !del.success(),
        "deleting the manifest under an immutable tag (via the mutable tag `also`) must fail: {}",
        del.describe()
    );
    assert!(del.stderr.contains("immutable"), "{}", del.describe());
    assert_eq!(del.status.code(), Some(1), "{}", del.describe());
    get_manifest(server, "org/app", "also").expect(200);
    get_manifest(server, "org/app", "v1.0.0").expect(200);

    // A tag the policy does not match, on a manifest of its own: deleted.
    let df = s.dir.join("latest.digest");
    skopeo_copy(server, &s.layout, "v3", "org/app:latest", &df).ok();
    let latest = read_digestfile(&df);
    assert_ne!(latest, s.v1_digest);
    skopeo_delete(server, "org/app:latest").ok();
    let gone = get_manifest(server, "org/app", "latest");
    assert_eq!(gone.status, 404, "latest after delete: {}", gone.describe());
    let gone = get_manifest(server, "org/app", &latest);
    assert_eq!(
        gone.status,
        404,
        "latest's manifest after delete: {}",
        gone.describe()
    );
    get_manifest(server, "org/app", "v1.0.0").expect(200);

    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "{verify}");
}

// ---------------------------------------------------------------------------
// 2. podman

/// podman with its own vfs storage under `root` and its run state in `run`.
fn podman(root: &Path, run: &TempDir, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new("podman");
    cmd.arg("--storage-driver")
        .arg("vfs")
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(run.path())
        .arg("--events-backend")
        .arg("none")
        .args(args);
    run_cmd(&mut cmd, CMD_TIMEOUT)
}

#[test]
fn podman_push_and_pull_round_trip_byte_for_byte() {
    if !clients_available(
        "podman_push_and_pull_round_trip_byte_for_byte",
        &["podman", "skopeo", "umoci"],
    ) {
        return;
    }
    let dir = TempDir::new("podman");
    let layout = umoci_images(dir.path(), &["v1"]);
    let server = Server::start(dir.path());
    let first = dir.join("podman-1");
    let second = dir.join("podman-2");
    let first_run = TempDir::short("p1");
    let second_run = TempDir::short("p2");

    let pulled = podman(
        &first,
        &first_run,
        &["pull", &format!("oci:{}:v1", layout.display())],
    )
    .ok();
    let image_id = pulled
        .stdout
        .lines()
        .last()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        image_id.len(),
        64,
        "podman pull printed no image id: {}",
        pulled.describe()
    );

    let df = dir.join("pushed.digest");
    podman(
        &first,
        &first_run,
        &[
            "push",
            "--tls-verify=false",
            "--creds",
            &ALICE.creds(),
            "--digestfile",
            df.to_str().expect("utf-8 path"),
            &image_id,
            &server.image("org/app:pp"),
        ],
    )
    .ok();
    let pushed = read_digestfile(&df);

    // The manifest the registry serves by tag is the one podman pushed, the
    // same bytes by digest, and HEAD agrees.
    let by_tag = get_manifest(&server, "org/app", "pp").expect(200);
    assert_eq!(
        by_tag.header("docker-content-digest"),
        Some(pushed.as_str())
    );
    assert_eq!(
        digest(&by_tag.body),
        pushed,
        "served bytes hash to another digest"
    );
    let by_digest = get_manifest(&server, "org/app", &pushed).expect(200);
    assert_eq!(by_digest.body, by_tag.body, "by digest and by tag differ");
    let media_type = by_tag.json()["mediaType"].as_str().map(str::to_owned);
    if let Some(mt) = &media_type {
        assert_eq!(by_tag.header("content-type"), Some(mt.as_str()));
    }
    let head = server
        .request(
            "HEAD",
            "/v2/org/app/manifests/pp",
            ALICE,
            &[("Accept", MANIFEST_ACCEPT)],
            b"",
        )
        .expect(200);
    assert_eq!(head.header("docker-content-digest"), Some(pushed.as_str()));
    assert_eq!(
        head.header("content-length"),
        Some(by_tag.body.len().to_string().as_str())
    );

    // Every blob hashes to its digest and has its size.
    let manifest = by_tag.json();
    let mut blobs = vec![manifest["config"].clone()];
    blobs.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
    assert!(blobs.len() >= 2, "manifest without layers: {manifest}");
    for b in &blobs {
        let d = b["digest"].as_str().expect("blob digest");
        let got = server
            .get(&format!("/v2/org/app/blobs/{d}"), ALICE)
            .expect(200);
        assert_eq!(digest(&got.body), d, "blob {d} served with other content");
        assert_eq!(
            Some(got.body.len() as u64),
            b["size"].as_u64(),
            "size of {d}"
        );
    }

    // A fresh podman storage pulls the same image back.
    podman(
        &second,
        &second_run,
        &[
            "pull",
            "--tls-verify=false",
            "--creds",
            &ALICE.creds(),
            &server.image("org/app:pp"),
        ],
    )
    .ok();
    let reference = format!("127.0.0.1:{}/org/app:pp", server.port);
    let id = podman(
        &second,
        &second_run,
        &["image", "inspect", "--format", "{{.Id}}", &reference],
    )
    .ok();
    assert_eq!(
        id.stdout.trim(),
        image_id,
        "pulled image has another id (config digest)"
    );
    let pulled_digest = podman(
        &second,
        &second_run,
        &["image", "inspect", "--format", "{{.Digest}}", &reference],
    )
    .ok();
    assert_eq!(pulled_digest.stdout.trim(), pushed);

    // skopeo copies it out unchanged (digests preserved): every blob file
    // hashes to its name, and the manifest is the served bytes.
    let out = dir.join("out");
    run_cmd(
        Command::new("skopeo").args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            &ALICE.creds(),
            &server.image("org/app:pp"),
            &format!("oci:{}:pp", out.display()),
        ]),
        CMD_TIMEOUT,
    )
    .ok();
    let blob_dir = out.join("blobs").join("sha256");
    let mut files = 0;
    for entry in fs::read_dir(&blob_dir).expect("read blob dir") {
        let entry = entry.expect("blob entry");
        let bytes = fs::read(entry.path()).expect("read blob");
        assert_eq!(
            sha256_hex(&bytes),
            entry.file_name().to_string_lossy(),
            "copied blob does not hash to its name"
        );
        files += 1;
    }
    assert_eq!(
        files,
        blobs.len() + 1,
        "manifest, config and layers copied out"
    );
    let hex = pushed.trim_start_matches("sha256:");
    assert_eq!(
        fs::read(blob_dir.join(hex)).expect("manifest blob copied out"),
        by_tag.body
    );
}

#[test]
fn podman_push_over_a_tag_made_immutable_by_policy_fails_with_the_registry_message() {
    if !clients_available(
        "podman_push_over_a_tag_made_immutable_by_policy_fails_with_the_registry_message",
        &["podman", "umoci"],
    ) {
        return;
    }
    let dir = TempDir::new("podman-refused");
    let layout = umoci_images(dir.path(), &["v1", "v2"]);
    let server = Server::start(dir.path());
    let storage = dir.join("podman");
    let run = TempDir::short("p3");
    let mut ids = Vec::new();
    for name in ["v1", "v2"] {
        let pulled = podman(
            &storage,
            &run,
            &["pull", &format!("oci:{}:{name}", layout.display())],
        )
        .ok();
        ids.push(
            pulled
                .stdout
                .lines()
                .last()
                .map(str::trim)
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_ne!(ids[0], ids[1], "two different images");
    let push = |id: &str, df: &Path| {
        podman(
            &storage,
            &run,
            &[
                "push",
                "--tls-verify=false",
                "--creds",
                &ALICE.creds(),
                "--digestfile",
                df.to_str().expect("utf-8 path"),
                id,
                &server.image("org/app:v2.0.0"),
            ],
        )
    };
    let df = dir.join("first.digest");
    push(&ids[0], &df).ok();
    let first = read_digestfile(&df);

    let created = server.create_org_policy("org", r"v[0-9]+\.[0-9]+\.[0-9]+", ALICE);
    assert_eq!(created.status, 201, "{}", created.describe());
    assert_eq!(
        created.json()["run"]["count"],
        json!(1),
        "{}",
        created.describe()
    );

    let refused = push(&ids[1], &dir.join("second.digest"));
    let refusals = assert_refused_as_immutable(&refused, 125);
    let still = get_manifest(&server, "org/app", "v2.0.0").expect(200);
    assert_eq!(still.header("docker-content-digest"), Some(first.as_str()));
    let logs = server.all_logs("/api/v1/repository/org/app/logs");
    let denied: Vec<&Value> = of_kind(&logs, "tag_immutability_denied")
        .into_iter()
        .filter(|d| log_tag(d) == Some("v2.0.0"))
        .collect();
    assert_eq!(
        denied.len(),
        refusals,
        "one tag_immutability_denied per refusal podman reported"
    );
    for d in denied {
        assert_eq!(performer(d), "alice", "{d}");
        assert_eq!(d["metadata"]["operation"], json!("push"), "{d}");
    }
}

#[test]
fn skopeo_round_trips_a_large_layer_streamed_not_buffered() {
    if !clients_available(
        "skopeo_round_trips_a_large_layer_streamed_not_buffered",
        &["skopeo", "umoci"],
    ) {
        return;
    }
    const SIZE: usize = 48 * 1024 * 1024;
    let dir = TempDir::new("large");
    let layout = dir.join("img");
    let layout_s = layout.to_str().expect("utf-8 path");
    run_cmd(
        Command::new("umoci").args(["init", "--layout", layout_s]),
        CMD_TIMEOUT,
    )
    .ok();
    run_cmd(
        Command::new("umoci").args(["new", "--image", &format!("{layout_s}:base")]),
        CMD_TIMEOUT,
    )
    .ok();
    let bundle = dir.join("bundle");
    let bundle_s = bundle.to_str().expect("utf-8 path");
    run_cmd(
        Command::new("umoci").args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{layout_s}:base"),
            bundle_s,
        ]),
        CMD_TIMEOUT,
    )
    .ok();
    // Incompressible content (xorshift), so the layer stays about SIZE.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(SIZE);
    while data.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(bundle.join("rootfs").join("random.bin"), &data).expect("write random file");
    drop(data);
    run_cmd(
        Command::new("umoci").args(["repack", "--image", &format!("{layout_s}:big"), bundle_s]),
        CMD_TIMEOUT,
    )
    .ok();

    let server = Server::start(dir.path());
    let before = server.peak_rss_kib();
    let df = dir.join("big.digest");
    skopeo_copy(&server, &layout, "big", "org/app:big", &df).ok();
    let pushed = read_digestfile(&df);
    assert_eq!(pushed, layout_digest(&layout, "big"));
    let manifest = get_manifest(&server, "org/app", "big").expect(200).json();
    let layer = manifest["layers"]
        .as_array()
        .and_then(|l| l.last())
        .cloned()
        .expect("a layer");
    let layer_size = layer["size"].as_u64().expect("layer size");
    assert!(
        layer_size >= SIZE as u64,
        "the layer is incompressible: {layer}"
    );

    let out = dir.join("out");
    run_cmd(
        Command::new("skopeo").args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            &ALICE.creds(),
            &server.image("org/app:big"),
            &format!("oci:{}:big", out.display()),
        ]),
        CMD_TIMEOUT,
    )
    .ok();
    let d = layer["digest"].as_str().expect("layer digest");
    let copied = fs::read(
        out.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
    )
    .expect("layer copied out");
    assert_eq!(digest(&copied), d);
    assert_eq!(copied.len() as u64, layer_size);

    let grew = server.peak_rss_kib().saturating_sub(before);
    eprintln!(
        "large layer: {} MiB pushed and pulled; server peak RSS grew {} MiB",
        layer_size / (1024 * 1024),
        grew / 1024
    );
    assert!(
        grew * 1024 < layer_size / 2,
        "the server's peak memory grew by {} KiB for a {layer_size}-byte layer: bodies are buffered, not streamed",
        grew
    );
}

// ---------------------------------------------------------------------------
// buildah, Docker schema 2

#[test]
fn buildah_push_of_a_docker_schema2_image_is_served_back_unchanged() {
    if !clients_available(
        "buildah_push_of_a_docker_schema2_image_is_served_back_unchanged",
        &["buildah", "skopeo", "umoci"],
    ) {
        return;
    }
    let dir = TempDir::new("buildah");
    let layout = umoci_images(dir.path(), &["v1"]);
    let server = Server::start(dir.path());
    let run = TempDir::short("b1");
    let buildah = |args: &[&str]| {
        let mut cmd = Command::new("buildah");
        cmd.arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(dir.join("buildah"))
            .arg("--runroot")
            .arg(run.path())
            .args(args);
        run_cmd(&mut cmd, CMD_TIMEOUT)
    };
    let pulled = buildah(&["pull", "-q", &format!("oci:{}:v1", layout.display())]).ok();
    let id = pulled
        .stdout
        .lines()
        .last()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        id.len(),
        64,
        "buildah pull printed no id: {}",
        pulled.describe()
    );
    let df = dir.join("b.digest");
    buildah(&[
        "push",
        "--tls-verify=false",
        "--creds",
        &ALICE.creds(),
        "--format",
        "v2s2",
        "--digestfile",
        df.to_str().expect("utf-8 path"),
        &id,
        &server.image("org/app:docker"),
    ])
    .ok();
    let pushed = read_digestfile(&df);

    const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
    let got = get_manifest(&server, "org/app", "docker").expect(200);
    assert_eq!(
        got.header("content-type"),
        Some(DOCKER_V2),
        "{}",
        got.describe()
    );
    assert_eq!(got.header("docker-content-digest"), Some(pushed.as_str()));
    assert_eq!(digest(&got.body), pushed);
    let manifest = got.json();
    assert_eq!(manifest["mediaType"], json!(DOCKER_V2));
    let mut blobs = vec![manifest["config"].clone()];
    blobs.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
    for b in &blobs {
        let d = b["digest"].as_str().expect("digest");
        let r = server
            .request("HEAD", &format!("/v2/org/app/blobs/{d}"), ALICE, &[], b"")
            .expect(200);
        assert_eq!(
            r.header("content-length")
                .and_then(|v| v.parse::<u64>().ok()),
            b["size"].as_u64(),
            "size of {d}"
        );
    }
    let raw = skopeo_inspect_raw(&server, "org/app:docker").ok();
    assert_eq!(
        raw.stdout.as_bytes(),
        &got.body[..],
        "skopeo reads the same bytes"
    );
}

// ---------------------------------------------------------------------------
// A repository policy on a nested name, and tags made immutable on push

#[test]
fn repository_policy_on_a_nested_name_makes_matching_pushes_immutable_and_logs_them() {
    if !clients_available(
        "repository_policy_on_a_nested_name_makes_matching_pushes_immutable_and_logs_them",
        &["skopeo", "umoci"],
    ) {
        return;
    }
    let dir = TempDir::new("repo-policy");
    let layout = umoci_images(dir.path(), &["v1", "v2"]);
    let server = Server::start(dir.path());
    let df = dir.join("d");
    skopeo_copy(&server, &layout, "v1", "org/team/app:keep", &df).ok();
    skopeo_copy(&server, &layout, "v1", "org/app:rel-1", &df).ok();

    let path = "/api/v1/repository/org/team/app/immutabilitypolicy/";
    let created = server.post_json(path, ALICE, &json!({"tagPattern": "rel-.*"}));
    assert_eq!(created.status, 201, "{}", created.describe());
    let body = created.json();
    let uuid = body["uuid"].as_str().expect("uuid").to_owned();
    assert_eq!(
        body["run"]["count"],
        json!(0),
        "no tag of org/team/app matches; org/app is out of scope: {body}"
    );
    let listed = server.get(path, ALICE).expect(200).json();
    assert_eq!(
        listed["policies"],
        json!([{"uuid": uuid, "tagPattern": "rel-.*", "tagPatternMatches": true}]),
        "{listed}"
    );
    let org_listed = server
        .get("/api/v1/organization/org/immutabilitypolicy/", ALICE)
        .expect(200)
        .json();
    assert_eq!(org_listed["policies"], json!([]), "{org_listed}");

    // A push to a matching tag is made immutable on push, with its record.
    let df1 = dir.join("rel1.digest");
    skopeo_copy(&server, &layout, "v1", "org/team/app:rel-1", &df1).ok();
    let logs = server.all_logs("/api/v1/repository/org/team/app/logs");
    let made: Vec<&Value> = of_kind(&logs, "tag_made_immutable_by_policy")
        .into_iter()
        .filter(|e| log_tag(e) == Some("rel-1"))
        .collect();
    assert_eq!(made.len(), 1, "{made:#?}");
    assert_eq!(made[0]["metadata"]["trigger"], json!("push"), "{}", made[0]);
    assert_eq!(
        made[0]["metadata"]["policy_uuid"],
        json!(uuid),
        "{}",
        made[0]
    );
    assert_eq!(performer(made[0]), "alice");
    let refused = skopeo_copy(&server, &layout, "v2", "org/team/app:rel-1", &dir.join("x"));
    assert_refused_as_immutable(&refused, 1);

    // The history API explains it.
    let h = server
        .get(
            "/api/v1/tagguard/repository/org/team/app/tag/rel-1/history",
            ALICE,
        )
        .expect(200)
        .json();
    assert_eq!(h["namespace"], json!("org"), "{h}");
    assert_eq!(h["repository"], json!("team/app"), "{h}");
    assert_eq!(h["tag"], json!("rel-1"), "{h}");
    assert!(!h["cause"].is_null(), "an immutable tag has a cause: {h}");
    assert!(
        h["events"].as_array().is_some_and(|ev| ev
            .iter()
            .any(|e| e["kind"] == json!("tag_made_immutable_by_policy"))),
        "{h}"
    );

    // The same tag name in another repository stays mutable.
    skopeo_copy(&server, &layout, "v2", "org/app:rel-1", &dir.join("y")).ok();
    skopeo_copy(&server, &layout, "v2", "org/team/app:keep", &dir.join("z")).ok();
    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "{verify}");
}

// ---------------------------------------------------------------------------
// The tag toggle

#[test]
fn any_account_sets_a_tag_immutable_but_only_an_admin_clears_it() {
    let dir = TempDir::new("toggle");
    let server = Server::start(dir.path());
    let (m1, _) = server.push_image("org/app", "t", "toggle 1", ALICE);
    let (m2, _) = server.push_image("org/app", "other", "toggle 2", ALICE);
    let toggle = |auth: Auth, immutable: bool| {
        server.request(
            "PUT",
            "/api/v1/repository/org/app/tag/t",
            auth,
            &[("Content-Type", "application/json")],
            json!({"immutable": immutable}).to_string().as_bytes(),
        )
    };
    let put_over = |manifest: &[u8]| {
        server.request(
            "PUT",
            "/v2/org/app/manifests/t",
            ALICE,
            &[("Content-Type", OCI_MANIFEST)],
            manifest,
        )
    };

    let set = toggle(BOB, true);
    assert!((200..300).contains(&set.status), "{}", set.describe());
    let r = put_over(&m2);
    assert_eq!(r.status, 409, "{}", r.describe());
    assert_eq!(r.error_codes(), vec!["TAG_IMMUTABLE"], "{}", r.describe());
    let rest_delete = server.request(
        "DELETE",
        "/api/v1/repository/org/app/tag/t",
        ALICE,
        &[],
        b"",
    );
    assert_eq!(rest_delete.status, 409, "{}", rest_delete.describe());
    assert_eq!(
        rest_delete.json()["error_type"],
        json!("tag_immutable"),
        "{}",
        rest_delete.describe()
    );

    let del = server.request("DELETE", "/v2/org/app/manifests/t", ALICE, &[], b"");
    assert_eq!(del.status, 409, "{}", del.describe());
    assert_eq!(
        del.error_codes(),
        vec!["TAG_IMMUTABLE"],
        "{}",
        del.describe()
    );

    let clear = toggle(BOB, false);
    assert_eq!(
        clear.status,
        403,
        "clearing needs admin: {}",
        clear.describe()
    );
    assert_eq!(
        put_over(&m2).status,
        409,
        "still immutable after bob's refused clear"
    );

    let clear = toggle(ALICE, false);
    assert!((200..300).contains(&clear.status), "{}", clear.describe());
    put_over(&m2).expect(201);
    put_over(&m1).expect(201);
    // Mutable again: deleted by tag, and only that tag.
    server
        .request("DELETE", "/v2/org/app/manifests/t", ALICE, &[], b"")
        .expect(202);
    assert_eq!(get_manifest(&server, "org/app", "t").status, 404);
    get_manifest(&server, "org/app", "other").expect(200);

    let logs = server.all_logs("/api/v1/repository/org/app/logs");
    let changes: Vec<&Value> = of_kind(&logs, "change_tag_immutability");
    assert_eq!(
        changes.len(),
        2,
        "one record per change, none for the refused clear: {changes:#?}"
    );
    // Newest first.
    assert_eq!(performer(changes[0]), "alice");
    assert_eq!(
        changes[0]["metadata"]["immutable"],
        json!(false),
        "{}",
        changes[0]
    );
    assert_eq!(changes[0]["metadata"]["previous_immutable"], json!(true));
    assert_eq!(performer(changes[1]), "bob");
    assert_eq!(
        changes[1]["metadata"]["immutable"],
        json!(true),
        "{}",
        changes[1]
    );
    assert_eq!(changes[1]["metadata"]["previous_immutable"], json!(false));
    for c in &changes {
        assert_eq!(log_tag(c), Some("t"), "{c}");
    }
    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "{verify}");
}

// ---------------------------------------------------------------------------
// 3. A retroactive run over 1,000 existing tags

/// Pushes `seed` to `org/app:seed` and PUTs its manifest to every tag name
/// with one curl process; returns the manifest bytes.
#[test]
fn policy_over_1000_existing_tags_logs_each_tag_once_with_its_run() {
    if !clients_available(
        "policy_over_1000_existing_tags_logs_each_tag_once_with_its_run",
        &["curl"],
    ) {
        return;
    }
    let dir = TempDir::new("retroactive");
    let server = Server::start(dir.path());
    let tags: Vec<String> = (0..1000).map(|i| format!("r{i}")).collect();
    seed_tags(&server, &dir, &tags);

    let created = server.create_org_policy("org", "r.*", ALICE);
    assert_eq!(created.status, 201, "create policy: {}", created.describe());
    let body = created.json();
    let uuid = body["uuid"].as_str().expect("uuid").to_owned();
    let run = &body["run"];
    assert_eq!(run["count"], json!(1000), "run count: {body}");
    assert!(!run["run_id"].is_null(), "run without run_id: {body}");

    let logs = server.all_logs("/api/v1/organization/org/logs");
    let by_tag = marks_by_tag(&logs);
    let want: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
    let got: BTreeSet<&str> = by_tag.keys().map(String::as_str).collect();
    assert_eq!(
        got.symmetric_difference(&want).take(20).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "tags with a record differ from the tags the policy matches (first 20 shown)"
    );
    for (tag, records) in &by_tag {
        assert_eq!(
            records.len(),
            1,
            "{tag} has {} records: {records:#?}",
            records.len()
        );
        let r = records[0];
        assert_eq!(performer(r), "alice", "performer of {r}");
        assert_eq!(r["metadata"]["run_id"], run["run_id"], "run_id of {r}");
        assert_eq!(r["metadata"]["policy_uuid"], json!(uuid), "policy of {r}");
        assert_eq!(r["metadata"]["trigger"], json!("policy_created"), "{r}");
    }

    let summaries: Vec<&Value> = of_kind(&logs, "tags_made_immutable_by_policy")
        .into_iter()
        .filter(|e| e["metadata"]["run_id"] == run["run_id"])
        .collect();
    assert_eq!(summaries.len(), 1, "one run summary: {summaries:#?}");
    assert_eq!(
        summaries[0]["metadata"]["count"],
        json!(1000),
        "{}",
        summaries[0]
    );
    assert_eq!(performer(summaries[0]), "alice");

    // The seed tag did not match and stays mutable; r-tags are immutable.
    let put_other = |tag: &str| {
        let (manifest, _) = server.push_image("org/app", &format!("probe-{tag}"), tag, ALICE);
        server.request(
            "PUT",
            &format!("/v2/org/app/manifests/{tag}"),
            ALICE,
            &[("Content-Type", OCI_MANIFEST)],
            &manifest,
        )
    };
    for tag in ["r0", "r500", "r999"] {
        let r = put_other(tag);
        assert_eq!(r.status, 409, "{}", r.describe());
        assert_eq!(r.error_codes(), vec!["TAG_IMMUTABLE"], "{}", r.describe());
    }
    assert_eq!(put_other("seed").status, 201);

    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "{verify}");
    assert!(
        verify["entries"].as_u64().unwrap_or(0) >= 1002,
        "the chain holds at least the 1000 records, the summary and the policy: {verify}"
    );
}

#[test]
fn pushes_during_a_retroactive_run_all_end_immutable_with_one_record_each() {
    if !clients_available(
        "pushes_during_a_retroactive_run_all_end_immutable_with_one_record_each",
        &["curl"],
    ) {
        return;
    }
    let n: usize = std::env::var("TAGGUARD_RACE_TAGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = TempDir::new("race");
    let server = Server::start(dir.path());
    let tags: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let (manifest, _) = seed_tags(&server, &dir, &tags);
    let content_type = get_manifest(&server, "org/app", "seed")
        .header("content-type")
        .expect("Content-Type")
        .to_owned();
    let late: Vec<String> = (0..2000).map(|i| format!("n{i}")).collect();
    let late_dir = TempDir::new("race-curl");

    let t0 = Instant::now();
    let (policy, post_returned, bulk_started, bulk) = thread::scope(|scope| {
        let poster = scope.spawn(|| {
            let r = try_http(
                &server.addr(),
                "POST",
                "/api/v1/organization/org/immutabilitypolicy/",
                ALICE,
                &[("Content-Type", "application/json")],
                json!({"tagPattern": ".*"}).to_string().as_bytes(),
                Duration::from_secs(600),
            );
            (r, t0.elapsed())
        });
        thread::sleep(Duration::from_millis(100));
        let bulk_started = t0.elapsed();
        let bulk = bulk_put_tags(
            &server,
            late_dir.path(),
            "org/app",
            &manifest,
            &content_type,
            &late,
        );
        let (r, returned) = poster.join().expect("poster");
        (r, returned, bulk_started, bulk)
    });
    let policy = policy.expect("policy POST").expect(201).json();
    eprintln!(
        "race: run over {n} tags answered after {post_returned:.1?}; {} pushes from {bulk_started:.1?} for {:.1?}; run count {}",
        late.len(),
        bulk.elapsed,
        policy["run"]["count"]
    );
    assert!(
        bulk_started < post_returned,
        "the pushes did not overlap the run (it answered after {post_returned:?}); raise TAGGUARD_RACE_TAGS"
    );
    assert_eq!(
        bulk.codes.get("201").copied().unwrap_or(0),
        late.len(),
        "pushes of new tags during the run: {:?}",
        bulk.codes
    );

    let all: BTreeSet<String> = tags
        .iter()
        .chain(&late)
        .cloned()
        .chain(["seed".to_owned()])
        .collect();
    let logs = server.all_logs("/api/v1/organization/org/logs");
    let by_tag = marks_by_tag(&logs);
    let mut triggers: BTreeMap<String, usize> = BTreeMap::new();
    for (tag, records) in &by_tag {
        assert_eq!(
            records.len(),
            1,
            "{tag} has {} records: {records:#?}",
            records.len()
        );
        *triggers
            .entry(
                records[0]["metadata"]["trigger"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
            )
            .or_default() += 1;
    }
    eprintln!("race: records by trigger {triggers:?}");
    let marked: BTreeSet<String> = by_tag.keys().cloned().collect();
    assert_eq!(
        all.symmetric_difference(&marked)
            .take(20)
            .collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "tags without a record, or records for no tag (first 20)"
    );
    assert_eq!(
        triggers.get("policy_created").copied().unwrap_or(0) as u64,
        policy["run"]["count"].as_u64().expect("run count"),
        "the run's count is its records"
    );
    if let Some(in_db) = server.immutable_tags_in_db() {
        assert_eq!(in_db, all, "every tag is immutable in SQLite");
    }
    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "{verify}");
}

#[test]
fn concurrent_pushes_to_the_same_new_tags_let_exactly_one_win_each() {
    if !clients_available(
        "concurrent_pushes_to_the_same_new_tags_let_exactly_one_win_each",
        &["curl"],
    ) {
        return;
    }
    let dir = TempDir::new("same-tag-race");
    let server = Server::start(dir.path());
    let (a, a_digest) = server.push_image("org/app", "a", "race A", ALICE);
    let (b, b_digest) = server.push_image("org/app", "b", "race B", ALICE);
    let created = server.create_org_policy("org", "v[0-9]+", ALICE);
    assert_eq!(created.status, 201, "{}", created.describe());
    assert_eq!(created.json()["run"]["count"], json!(0));

    let tags: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
    let (dir_a, dir_b) = (TempDir::new("race-a"), TempDir::new("race-b"));
    let (bulk_a, bulk_b) = thread::scope(|scope| {
        let ta = scope
            .spawn(|| bulk_put_tags(&server, dir_a.path(), "org/app", &a, OCI_MANIFEST, &tags));
        let tb = scope
            .spawn(|| bulk_put_tags(&server, dir_b.path(), "org/app", &b, OCI_MANIFEST, &tags));
        (ta.join().expect("curl A"), tb.join().expect("curl B"))
    });
    assert_eq!(bulk_a.statuses.len(), tags.len());
    assert_eq!(bulk_b.statuses.len(), tags.len());
    eprintln!("same-tag race: A {:?}, B {:?}", bulk_a.codes, bulk_b.codes);

    let logs = server.all_logs("/api/v1/organization/org/logs");
    let by_tag = marks_by_tag(&logs);
    let mut denials: BTreeMap<&str, usize> = BTreeMap::new();
    for d in of_kind(&logs, "tag_immutability_denied") {
        *denials.entry(log_tag(d).unwrap_or("?")).or_default() += 1;
    }
    for (i, tag) in tags.iter().enumerate() {
        let (sa, sb) = (bulk_a.statuses[i].as_str(), bulk_b.statuses[i].as_str());
        let winner = match (sa, sb) {
            ("201", "409") => &a_digest,
            ("409", "201") => &b_digest,
            other => panic!("{tag}: one push wins (201) and one is refused (409), got {other:?}"),
        };
        let got = get_manifest(&server, "org/app", tag).expect(200);
        assert_eq!(
            got.header("docker-content-digest"),
            Some(winner.as_str()),
            "{tag} points at the push that got 201"
        );
        let records = by_tag
            .get(tag)
            .unwrap_or_else(|| panic!("{tag} has no tag_made_immutable_by_policy"));
        assert_eq!(records.len(), 1, "{tag}: {records:#?}");
        assert_eq!(
            records[0]["metadata"]["trigger"],
            json!("push"),
            "{}",
            records[0]
        );
        assert_eq!(
            records[0]["metadata"]["manifest_digest"],
            json!(winner),
            "{}",
            records[0]
        );
        assert_eq!(
            denials.get(tag.as_str()),
            Some(&1),
            "{tag}: one denial for the loser"
        );
    }
    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "{verify}");
}

#[test]
fn sigterm_during_a_retroactive_run_lets_the_run_finish_before_exit() {
    if !clients_available(
        "sigterm_during_a_retroactive_run_lets_the_run_finish_before_exit",
        &["curl"],
    ) {
        return;
    }
    let n: usize = std::env::var("TAGGUARD_RACE_TAGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = TempDir::new("sigterm");
    let mut server = Server::start(dir.path());
    let tags: Vec<String> = (0..n).map(|i| format!("g{i}")).collect();
    seed_tags(&server, &dir, &tags);

    let addr = server.addr();
    let (tx, rx) = mpsc::channel();
    let poster = thread::spawn(move || {
        let r = try_http(
            &addr,
            "POST",
            "/api/v1/organization/org/immutabilitypolicy/",
            ALICE,
            &[("Content-Type", "application/json")],
            json!({"tagPattern": ".*"}).to_string().as_bytes(),
            Duration::from_secs(600),
        );
        let _ = tx.send(());
        r
    });
    thread::sleep(Duration::from_millis(300));
    let returned_before = rx.try_recv().is_ok();
    let status = server.terminate(Duration::from_secs(300));
    let posted = poster.join().expect("poster thread");
    assert!(
        !returned_before,
        "the run ended before SIGTERM; raise TAGGUARD_RACE_TAGS"
    );
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        server.logs()
    );
    let posted = posted.expect("the policy POST in flight gets its answer");
    assert_eq!(posted.status, 201, "{}", posted.describe());
    let body = posted.json();
    assert_eq!(body["run"]["count"], json!(n + 1), "{body}");

    server.start_again();
    let runs = server.runs();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["status"], json!("completed"), "{}", runs[0]);
    let logs = server.all_logs("/api/v1/organization/org/logs");
    let by_tag = marks_by_tag(&logs);
    assert_eq!(by_tag.len(), n + 1);
    assert!(by_tag.values().all(|r| r.len() == 1), "each tag once");
    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "{verify}");
}

#[test]
fn policy_update_runs_again_and_delete_keeps_its_tags_immutable() {
    let dir = TempDir::new("policy-lifecycle");
    let server = Server::start(dir.path());
    for tag in ["v1.0.0", "v1.1.0", "v2.0.0", "latest"] {
        server.push_image("org/app", tag, tag, ALICE);
    }
    let base = "/api/v1/organization/org/immutabilitypolicy/";
    let created = server.create_org_policy("org", r"v1\..*", ALICE);
    assert_eq!(created.status, 201, "{}", created.describe());
    let created = created.json();
    assert_eq!(created["run"]["count"], json!(2), "{created}");
    let uuid = created["uuid"].as_str().expect("uuid").to_owned();

    // Bad pattern and duplicate: Quay's 400.
    for body in [
        json!({"tagPattern": "v[0-9"}),
        json!({"tagPattern": r"v1\..*"}),
    ] {
        let r = server.post_json(base, ALICE, &body);
        assert_eq!(r.status, 400, "{}", r.describe());
        assert_eq!(
            r.json()["error_type"],
            json!("invalid_request"),
            "{}",
            r.describe()
        );
    }

    let updated = server.request(
        "PUT",
        &format!("{base}{uuid}"),
        ALICE,
        &[("Content-Type", "application/json")],
        json!({"tagPattern": "v.*", "tagPatternMatches": true})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(updated.status, 200, "{}", updated.describe());
    let updated = updated.json();
    assert_eq!(
        updated["run"]["count"],
        json!(1),
        "only v2.0.0 was still mutable: {updated}"
    );
    let got = server
        .get(&format!("{base}{uuid}"), ALICE)
        .expect(200)
        .json();
    assert_eq!(got["tagPattern"], json!("v.*"), "{got}");

    let logs = server.all_logs("/api/v1/organization/org/logs");
    let by_tag = marks_by_tag(&logs);
    assert_eq!(
        by_tag.keys().map(String::as_str).collect::<Vec<_>>(),
        ["v1.0.0", "v1.1.0", "v2.0.0"]
    );
    assert_eq!(by_tag["v2.0.0"].len(), 1);
    let v2 = by_tag["v2.0.0"][0];
    assert_eq!(v2["metadata"]["trigger"], json!("policy_updated"), "{v2}");
    assert_eq!(v2["metadata"]["run_id"], updated["run"]["run_id"], "{v2}");
    assert_eq!(of_kind(&logs, "update_immutability_policy").len(), 1);

    server
        .request("DELETE", &format!("{base}{uuid}"), ALICE, &[], b"")
        .expect(204);
    let listed = server.get(base, ALICE).expect(200).json();
    assert_eq!(listed["policies"], json!([]), "{listed}");
    let logs = server.all_logs("/api/v1/organization/org/logs");
    assert_eq!(of_kind(&logs, "delete_immutability_policy").len(), 1);

    // Its tags stay immutable; new tags are not made immutable any more.
    let (other, _) = server.push_image("org/app", "other", "other", ALICE);
    let put = |tag: &str| {
        server.request(
            "PUT",
            &format!("/v2/org/app/manifests/{tag}"),
            ALICE,
            &[("Content-Type", OCI_MANIFEST)],
            &other,
        )
    };
    for tag in ["v1.0.0", "v2.0.0"] {
        assert_eq!(put(tag).status, 409, "{tag} stays immutable");
    }
    put("v3.0.0").expect(201);
    let (again, _) = server.push_image("org/app", "again", "again", ALICE);
    server
        .request(
            "PUT",
            "/v2/org/app/manifests/v3.0.0",
            ALICE,
            &[("Content-Type", OCI_MANIFEST)],
            &again,
        )
        .expect(201);
    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "{verify}");
}

#[test]
fn a_robot_push_is_recorded_with_the_robot_as_performer() {
    let dir = TempDir::new("robot");
    let server = Server::start(dir.path());
    let created = server.create_org_policy("org", "release-.*", ALICE);
    assert_eq!(created.status, 201, "{}", created.describe());
    let refused = server.create_org_policy("org", ".*", ROBOT);
    assert_eq!(refused.status, 403, "{}", refused.describe());

    server.push_image("org/app", "release-1", "robot", ROBOT);
    let logs = server.all_logs("/api/v1/repository/org/app/logs");
    let made: Vec<&Value> = of_kind(&logs, "tag_made_immutable_by_policy");
    assert_eq!(made.len(), 1, "{made:#?}");
    assert_eq!(made[0]["performer"]["name"], json!("org+ci"), "{}", made[0]);
    assert_eq!(made[0]["performer"]["kind"], json!("robot"), "{}", made[0]);
    assert_eq!(made[0]["metadata"]["trigger"], json!("push"), "{}", made[0]);
}

#[test]
fn non_admin_cannot_create_a_policy_and_nothing_changes() {
    let dir = TempDir::new("non-admin");
    let server = Server::start(dir.path());
    server.push_image("org/app", "v1.0.0", "non-admin", ALICE);
    let refused = server.create_org_policy("org", ".*", BOB);
    assert_eq!(refused.status, 403, "{}", refused.describe());
    let refused = server.post_json(
        "/api/v1/repository/org/app/immutabilitypolicy/",
        BOB,
        &json!({"tagPattern": ".*", "tagPatternMatches": true}),
    );
    assert_eq!(refused.status, 403, "{}", refused.describe());
    let listed = server
        .get("/api/v1/organization/org/immutabilitypolicy/", ALICE)
        .expect(200)
        .json();
    assert_eq!(listed["policies"], json!([]), "{listed}");
    // The tag is still mutable.
    let (manifest, _) = server.push_image("org/app", "other", "non-admin 2", ALICE);
    server
        .request(
            "PUT",
            "/v2/org/app/manifests/v1.0.0",
            ALICE,
            &[("Content-Type", OCI_MANIFEST)],
            &manifest,
        )
        .expect(201);
}

// ---------------------------------------------------------------------------
// 4. kill -9 during a retroactive run

/// Tags pushed before the crash: TAGGUARD_CRASH_TAGS, or the default sized
/// for a 2-core machine (see the test).
fn crash_tag_count() -> usize {
    std::env::var("TAGGUARD_CRASH_TAGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn history(server: &Server, tag: &str) -> Value {
    server
        .get(
            &format!("/api/v1/tagguard/repository/org/app/tag/{tag}/history"),
            ALICE,
        )
        .expect(200)
        .json()
}

#[test]
fn kill_during_retroactive_run_leaves_a_verified_log_and_an_incomplete_run_that_apply_finishes() {
    if !clients_available(
        "kill_during_retroactive_run_leaves_a_verified_log_and_an_incomplete_run_that_apply_finishes",
        &["curl"],
    ) {
        return;
    }
    let n = crash_tag_count();
    let dir = TempDir::new("crash");
    let mut server = Server::start(dir.path());
    let tags: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let (_, elapsed) = seed_tags(&server, &dir, &tags);
    eprintln!(
        "crash test: {n} tags pushed in {elapsed:.1?} ({:.0} tags/s)",
        n as f64 / elapsed.as_secs_f64()
    );
    let total = n + 1; // and `seed`
    let all: BTreeSet<String> = tags.iter().cloned().chain(["seed".to_owned()]).collect();

    // The policy matches every tag; its run goes on while the POST waits.
    let addr = server.addr();
    let (tx, rx) = mpsc::channel();
    let poster = thread::spawn(move || {
        let r = try_http(
            &addr,
            "POST",
            "/api/v1/organization/org/immutabilitypolicy/",
            ALICE,
            &[("Content-Type", "application/json")],
            json!({"tagPattern": ".*", "tagPatternMatches": true})
                .to_string()
                .as_bytes(),
            Duration::from_secs(600),
        );
        let _ = tx.send(());
        r
    });
    let sent = Instant::now();
    // Wait until the run is visible as running (or 0.8 s at most), then a
    // little longer so some batches commit, and kill.
    let mut seen_running = false;
    while sent.elapsed() < Duration::from_millis(800) {
        if let Ok(r) = try_http(
            &server.addr(),
            "GET",
            "/api/v1/tagguard/runs",
            ALICE,
            &[],
            b"",
            Duration::from_millis(300),
        ) && r.status == 200
            && serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| {
                v["runs"]
                    .as_array()
                    .is_some_and(|runs| runs.iter().any(|x| x["status"] == json!("running")))
            })
        {
            seen_running = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(if seen_running { 400 } else { 200 }));
    let returned_before_kill = rx.try_recv().is_ok();
    server.kill9();
    let killed_at = sent.elapsed();
    let posted = poster.join().expect("poster thread");
    assert!(
        !returned_before_kill,
        "the policy POST returned before the kill ({:?}), so nothing was interrupted; \
         raise TAGGUARD_CRASH_TAGS",
        posted.as_ref().map(|r| r.describe())
    );
    eprintln!(
        "killed the server {killed_at:.1?} after the POST (run seen running: {seen_running})"
    );

    server.restart();

    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "after the crash: {verify}");

    let policies = server
        .get("/api/v1/organization/org/immutabilitypolicy/", ALICE)
        .expect(200)
        .json();
    let policies = policies["policies"].as_array().expect("policies").clone();
    assert_eq!(
        policies.len(),
        1,
        "the policy was stored before the run started: {policies:#?}"
    );
    let uuid = policies[0]["uuid"].as_str().expect("uuid").to_owned();

    let runs = server.runs();
    let ours: Vec<&Value> = runs
        .iter()
        .filter(|r| r["policy_uuid"] == json!(uuid))
        .collect();
    assert_eq!(ours.len(), 1, "one run for the policy: {runs:#?}");
    let run = ours[0].clone();
    assert_eq!(
        run["status"],
        json!("incomplete"),
        "run after the crash: {run}"
    );

    // Each tag marked before the crash has exactly one record, and the
    // records name exactly the immutable tags.
    let logs = server.all_logs("/api/v1/organization/org/logs");
    let by_tag = marks_by_tag(&logs);
    for (tag, records) in &by_tag {
        assert_eq!(
            records.len(),
            1,
            "{tag} has {} records after the crash",
            records.len()
        );
        assert_eq!(performer(records[0]), "alice");
    }
    let marked: BTreeSet<String> = by_tag.keys().cloned().collect();
    eprintln!(
        "after the crash: {} of {total} tags marked, run {}",
        marked.len(),
        run
    );
    assert!(marked.is_subset(&all), "records for tags that do not exist");
    match server.immutable_tags_in_db() {
        Some(in_db) => assert_eq!(
            in_db
                .symmetric_difference(&marked)
                .take(20)
                .collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "immutable tags in the database ({}) and tags with a record ({}) differ (first 20 shown)",
            in_db.len(),
            marked.len()
        ),
        None => eprintln!("sqlite3 not installed: checking tag history on a sample only"),
    }
    // The history API agrees on a sample, marked and unmarked.
    let sample: Vec<&String> = all.iter().step_by((total / 50).max(1)).collect();
    for tag in sample {
        let h = history(&server, tag);
        let has_mark = h["events"].as_array().is_some_and(|ev| {
            ev.iter()
                .any(|e| e["kind"] == json!("tag_made_immutable_by_policy"))
        });
        assert_eq!(
            has_mark,
            marked.contains(tag),
            "history of {tag} disagrees with the log: {h}"
        );
        assert_eq!(
            !h["cause"].is_null(),
            marked.contains(tag),
            "cause of {tag}: {h}"
        );
    }

    // Finishing the run marks the rest.
    let id = match &run["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let applied = server
        .request(
            "POST",
            &format!("/api/v1/tagguard/runs/{id}/apply"),
            ALICE,
            &[("Content-Type", "application/json")],
            b"{}",
        )
        .expect(200)
        .json();
    let applied_run = if applied.get("run").is_some() {
        &applied["run"]
    } else {
        &applied
    };
    assert_eq!(applied_run["status"], json!("completed"), "{applied}");
    let runs = server.runs();
    let after: Vec<&Value> = runs.iter().filter(|r| r["id"] == run["id"]).collect();
    assert_eq!(after.len(), 1, "{runs:#?}");
    assert_eq!(after[0]["status"], json!("completed"), "{}", after[0]);

    let logs = server.all_logs("/api/v1/organization/org/logs");
    let by_tag = marks_by_tag(&logs);
    let total_records: usize = by_tag.values().map(Vec::len).sum();
    assert_eq!(
        total_records, total,
        "one tag_made_immutable_by_policy per tag after apply"
    );
    let marked: BTreeSet<String> = by_tag.keys().cloned().collect();
    assert_eq!(marked, all, "every tag has its record after apply");
    if let Some(in_db) = server.immutable_tags_in_db() {
        assert_eq!(in_db, all, "every tag is immutable in SQLite after apply");
    }
    // A new manifest (its blobs uploaded, no tag) to write over a few tags.
    let (config, layer) = image_blobs("crash probe");
    let probe = oci_manifest(
        &server.push_blob("org/app", &config, ALICE),
        config.len(),
        &server.push_blob("org/app", &layer, ALICE),
        layer.len(),
    );
    for tag in [
        "c0".to_owned(),
        format!("c{}", n / 2),
        format!("c{}", n - 1),
        "seed".to_owned(),
    ] {
        let r = server.request(
            "PUT",
            &format!("/v2/org/app/manifests/{tag}"),
            ALICE,
            &[("Content-Type", OCI_MANIFEST)],
            &probe,
        );
        assert_eq!(r.status, 409, "{}", r.describe());
        assert_eq!(r.error_codes(), vec!["TAG_IMMUTABLE"], "{}", r.describe());
    }
    let verify = server.verify();
    assert_eq!(verify["verified"], json!(true), "after apply: {verify}");
}

// ---------------------------------------------------------------------------
// 5. Differential: the same requests against docker-registry 2.8.2

/// One registry to run the sequence against.
struct Target {
    addr: String,
    auth: Auth,
}

impl Target {
    fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        http(&self.addr, method, path, self.auth, headers, body)
    }
}

/// What is compared of one response.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    /// Docker-Content-Digest.
    Digest,
    ContentType,
    ContentLength,
    /// Location path with everything after `/blobs/uploads/` replaced.
    UploadLocation,
    /// Location path, scheme, authority and query dropped.
    Location,
    Range,
    /// The OCI error codes of the body.
    Errors,
    BodySha256,
    /// The `tags` of a tag list, sorted.
    TagsSorted,
    /// The `tags` of a tag list as returned.
    Tags,
    /// Whether a `Link` header is present.
    LinkPresent,
    /// The `repositories` of a catalog, as returned.
    Repositories,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Digest => "Docker-Content-Digest",
            Field::ContentType => "Content-Type",
            Field::ContentLength => "Content-Length",
            Field::UploadLocation => "Location (upload)",
            Field::Location => "Location",
            Field::Range => "Range",
            Field::Errors => "error codes",
            Field::BodySha256 => "body sha256",
            Field::TagsSorted => "tags (sorted)",
            Field::Tags => "tags",
            Field::LinkPresent => "Link present",
            Field::Repositories => "repositories",
        }
    }

    fn read(self, r: &Response) -> Option<String> {
        match self {
            Field::Digest => r.header("docker-content-digest").map(str::to_owned),
            Field::ContentType => r.header("content-type").map(str::to_owned),
            Field::ContentLength => r.header("content-length").map(str::to_owned),
            Field::Location => r.header("location").map(|l| {
                let p = location_path(l);
                p.split('?').next().unwrap_or(p).to_owned()
            }),
            Field::UploadLocation => r.header("location").map(|l| {
                let p = location_path(l);
                match p.find("/blobs/uploads/") {
                    Some(i) if p.len() > i + "/blobs/uploads/".len() => {
                        format!("{}<session>", &p[..i + "/blobs/uploads/".len()])
                    }
                    _ => p.to_owned(),
                }
            }),
            Field::Range => r.header("range").map(str::to_owned),
            Field::Errors => {
                let codes = r.error_codes();
                (!codes.is_empty()).then(|| codes.join(","))
            }
            Field::BodySha256 => Some(sha256_hex(&r.body)),
            Field::TagsSorted | Field::Tags => {
                let v: Value = serde_json::from_slice(&r.body).ok()?;
                let mut tags: Vec<String> = v["tags"]
                    .as_array()?
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect();
                if self == Field::TagsSorted {
                    tags.sort();
                }
                Some(tags.join(","))
            }
            Field::LinkPresent => Some(r.header("link").is_some().to_string()),
            Field::Repositories => {
                let v: Value = serde_json::from_slice(&r.body).ok()?;
                let repos: Vec<&str> = v["repositories"]
                    .as_array()?
                    .iter()
                    .filter_map(|t| t.as_str())
                    .collect();
                Some(repos.join(","))
            }
        }
    }
}

/// One step's observation.
struct Obs {
    step: &'static str,
    status: u16,
    fields: Vec<(&'static str, Option<String>)>,
    /// The response, for spec checks and messages.
    response: Response,
}

/// Runs the request sequence and records what each step shows.
fn run_sequence(t: &Target) -> Vec<Obs> {
    use Field::*;
    let mut out: Vec<Obs> = Vec::new();
    let mut record = |step: &'static str, r: Response, fields: &[Field]| -> Response {
        out.push(Obs {
            step,
            status: r.status,
            fields: fields.iter().map(|f| (f.name(), f.read(&r))).collect(),
            response: r.clone(),
        });
        r
    };
    let octet = ("Content-Type", "application/octet-stream");
    let blob_a = b"monolithic blob A\n".to_vec();
    let a = digest(&blob_a);
    let chunk1 = b"chunk-one|".to_vec();
    let chunk2 = b"chunk-two".to_vec();
    let blob_b: Vec<u8> = [chunk1.clone(), chunk2.clone()].concat();
    let b = digest(&blob_b);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let c = digest(&config);
    let zero = format!("sha256:{}", "0".repeat(64));
    let unknown_blob = digest(b"never uploaded");
    let follow = |r: &Response| -> String {
        let l = r
            .header("location")
            .unwrap_or_else(|| panic!("no Location: {}", r.describe()));
        location_path(l).to_owned()
    };
    let with_digest = |path: &str, d: &str| {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}digest={d}")
    };

    record("GET /v2/", t.req("GET", "/v2/", &[], b""), &[]);

    // Monolithic upload in one POST.
    record(
        "POST upload ?digest= (monolithic)",
        t.req(
            "POST",
            &format!("/v2/org/diff/blobs/uploads/?digest={a}"),
            &[octet],
            &blob_a,
        ),
        &[Location, Digest],
    );
    record(
        "HEAD blob from monolithic POST",
        t.req("HEAD", &format!("/v2/org/diff/blobs/{a}"), &[], b""),
        &[Digest, ContentLength],
    );

    // Chunked upload: POST, PATCH, PATCH, status, PUT ?digest=.
    let r = record(
        "POST upload (chunked session)",
        t.req("POST", "/v2/org/diff/blobs/uploads/", &[], b""),
        &[UploadLocation],
    );
    let loc = follow(&r);
    let r = record(
        "PATCH chunk 1",
        t.req("PATCH", &loc, &[octet, ("Content-Range", "0-9")], &chunk1),
        &[UploadLocation, Range],
    );
    let loc = follow(&r);
    let r = record(
        "PATCH chunk 2",
        t.req("PATCH", &loc, &[octet, ("Content-Range", "10-18")], &chunk2),
        &[UploadLocation, Range],
    );
    let loc = follow(&r);
    record("GET upload status", t.req("GET", &loc, &[], b""), &[Range]);
    record(
        "PUT upload ?digest= (close chunked)",
        t.req("PUT", &with_digest(&loc, &b), &[octet], b""),
        &[Location, Digest],
    );
    record(
        "GET upload status after close",
        t.req("GET", &loc, &[], b""),
        &[Errors],
    );
    record(
        "HEAD blob",
        t.req("HEAD", &format!("/v2/org/diff/blobs/{b}"), &[], b""),
        &[Digest, ContentLength],
    );
    record(
        "GET blob",
        t.req("GET", &format!("/v2/org/diff/blobs/{b}"), &[], b""),
        &[Digest, ContentLength, BodySha256],
    );

    // POST then PUT with the whole body.
    let r = record(
        "POST upload (for single PUT)",
        t.req("POST", "/v2/org/diff/blobs/uploads/", &[], b""),
        &[UploadLocation],
    );
    let loc = follow(&r);
    record(
        "PUT upload ?digest= with body",
        t.req("PUT", &with_digest(&loc, &c), &[octet], &config),
        &[Location, Digest],
    );

    // A chunk that does not follow the last one.
    let r = record(
        "POST upload (for a gap)",
        t.req("POST", "/v2/org/diff/blobs/uploads/", &[], b""),
        &[UploadLocation],
    );
    let loc = follow(&r);
    let r = record(
        "PATCH first chunk",
        t.req("PATCH", &loc, &[octet, ("Content-Range", "0-4")], b"01234"),
        &[Range],
    );
    let loc = follow(&r);
    record(
        "PATCH chunk after a gap",
        t.req(
            "PATCH",
            &loc,
            &[octet, ("Content-Range", "10-14")],
            b"abcde",
        ),
        &[Errors],
    );

    // Cancel an upload.
    let r = record(
        "POST upload (to cancel)",
        t.req("POST", "/v2/org/diff/blobs/uploads/", &[], b""),
        &[UploadLocation],
    );
    let loc = follow(&r);
    record(
        "DELETE upload (cancel)",
        t.req("DELETE", &loc, &[], b""),
        &[],
    );
    record(
        "GET upload status after cancel",
        t.req("GET", &loc, &[], b""),
        &[Errors],
    );

    // Cross-repository mount.
    record(
        "POST mount from other repo",
        t.req(
            "POST",
            &format!("/v2/org/other/blobs/uploads/?mount={b}&from=org/diff"),
            &[],
            b"",
        ),
        &[Location, Digest],
    );
    record(
        "HEAD mounted blob",
        t.req("HEAD", &format!("/v2/org/other/blobs/{b}"), &[], b""),
        &[Digest, ContentLength],
    );

    // Manifests.
    let manifest = oci_manifest(&c, config.len(), &b, blob_b.len());
    let m = digest(&manifest);
    let mct = ("Content-Type", OCI_MANIFEST);
    record(
        "PUT manifest by tag",
        t.req("PUT", "/v2/org/diff/manifests/t1", &[mct], &manifest),
        &[Location, Digest],
    );
    for tag in ["t3", "t2", "t4"] {
        record(
            "PUT manifest by another tag",
            t.req(
                "PUT",
                &format!("/v2/org/diff/manifests/{tag}"),
                &[mct],
                &manifest,
            ),
            &[Digest],
        );
    }
    record(
        "PUT manifest by its digest",
        t.req(
            "PUT",
            &format!("/v2/org/other/manifests/{m}"),
            &[mct],
            &manifest,
        ),
        &[Errors],
    );
    record(
        "PUT manifest by another digest",
        t.req(
            "PUT",
            &format!("/v2/org/diff/manifests/{zero}"),
            &[mct],
            &manifest,
        ),
        &[Errors],
    );
    let accept = ("Accept", MANIFEST_ACCEPT);
    let manifest_fields = [ContentType, Digest, ContentLength];
    record(
        "GET manifest by tag",
        t.req("GET", "/v2/org/diff/manifests/t1", &[accept], b""),
        &[ContentType, Digest, ContentLength, BodySha256],
    );
    record(
        "HEAD manifest by tag",
        t.req("HEAD", "/v2/org/diff/manifests/t1", &[accept], b""),
        &manifest_fields,
    );
    record(
        "GET manifest by digest",
        t.req(
            "GET",
            &format!("/v2/org/diff/manifests/{m}"),
            &[accept],
            b"",
        ),
        &[ContentType, Digest, ContentLength, BodySha256],
    );
    record(
        "HEAD manifest by digest",
        t.req(
            "HEAD",
            &format!("/v2/org/diff/manifests/{m}"),
            &[accept],
            b"",
        ),
        &manifest_fields,
    );

    // Tag lists.
    record(
        "GET tags/list",
        t.req("GET", "/v2/org/diff/tags/list", &[], b""),
        &[TagsSorted],
    );
    record(
        "GET tags/list?n=2",
        t.req("GET", "/v2/org/diff/tags/list?n=2", &[], b""),
        &[Tags, LinkPresent],
    );
    record(
        "GET tags/list?n=2&last=t2",
        t.req("GET", "/v2/org/diff/tags/list?n=2&last=t2", &[], b""),
        &[Tags, LinkPresent],
    );

    // The catalog (2.8.2 pages it as the spec says).
    record(
        "GET _catalog",
        t.req("GET", "/v2/_catalog", &[], b""),
        &[Repositories],
    );
    record(
        "GET _catalog?n=1",
        t.req("GET", "/v2/_catalog?n=1", &[], b""),
        &[Repositories, LinkPresent],
    );
    record(
        "GET _catalog?n=1&last=org/diff",
        t.req("GET", "/v2/_catalog?n=1&last=org/diff", &[], b""),
        &[Repositories, LinkPresent],
    );

    // Unknowns and errors.
    record(
        "GET manifest unknown tag",
        t.req("GET", "/v2/org/diff/manifests/nope", &[accept], b""),
        &[Errors],
    );
    record(
        "HEAD manifest unknown tag",
        t.req("HEAD", "/v2/org/diff/manifests/nope", &[accept], b""),
        &[],
    );
    record(
        "GET blob unknown digest",
        t.req(
            "GET",
            &format!("/v2/org/diff/blobs/{unknown_blob}"),
            &[],
            b"",
        ),
        &[Errors],
    );
    record(
        "HEAD blob unknown digest",
        t.req(
            "HEAD",
            &format!("/v2/org/diff/blobs/{unknown_blob}"),
            &[],
            b"",
        ),
        &[],
    );
    let r = record(
        "POST upload (for wrong digest)",
        t.req("POST", "/v2/org/diff/blobs/uploads/", &[], b""),
        &[UploadLocation],
    );
    let loc = follow(&r);
    record(
        "PUT upload with wrong digest",
        t.req(
            "PUT",
            &with_digest(&loc, &zero),
            &[octet],
            b"some other bytes",
        ),
        &[Errors],
    );
    record(
        "HEAD blob of the wrong-digest upload",
        t.req(
            "HEAD",
            &format!("/v2/org/diff/blobs/{}", digest(b"some other bytes")),
            &[],
            b"",
        ),
        &[],
    );

    // Delete by digest.
    record(
        "DELETE manifest by digest",
        t.req("DELETE", &format!("/v2/org/diff/manifests/{m}"), &[], b""),
        &[],
    );
    record(
        "GET manifest by digest after delete",
        t.req(
            "GET",
            &format!("/v2/org/diff/manifests/{m}"),
            &[accept],
            b"",
        ),
        &[Errors],
    );
    record(
        "GET manifest by tag after delete",
        t.req("GET", "/v2/org/diff/manifests/t1", &[accept], b""),
        &[Errors],
    );
    record(
        "GET blob after manifest delete",
        t.req("GET", &format!("/v2/org/diff/blobs/{b}"), &[], b""),
        &[Digest, ContentLength, BodySha256],
    );
    record(
        "DELETE blob",
        t.req("DELETE", &format!("/v2/org/diff/blobs/{c}"), &[], b""),
        &[],
    );
    record(
        "HEAD blob after DELETE",
        t.req("HEAD", &format!("/v2/org/diff/blobs/{c}"), &[], b""),
        &[],
    );
    out
}

/// Differences that are deliberate: docker-registry 2.8.2 does not implement
/// these parts of OCI Distribution 1.1, so tagguard follows the spec there
/// and the test checks tagguard against the spec instead (see
/// `check_spec_where_reference_differs`). `"*"` allows any field of the step.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "POST upload ?digest= (monolithic)",
        "*",
        "2.8.2 ignores ?digest= on POST and opens a session (202); \
         OCI 1.1 'single POST' completes the upload (201)",
    ),
    (
        "HEAD blob from monolithic POST",
        "*",
        "follows from the row above: 2.8.2 never stored blob A",
    ),
    (
        "PATCH chunk after a gap",
        "*",
        "2.8.2 does not check Content-Range against the upload's offset and \
         appends the chunk (202); OCI 1.1 says an out-of-order chunk gets 416",
    ),
    (
        "GET tags/list?n=2",
        "*",
        "2.8.2 ignores n and last and returns every tag unsorted; OCI 1.1 \
         pages in lexical order with a Link header",
    ),
    ("GET tags/list?n=2&last=t2", "*", "as above"),
];

fn allowed(step: &str, field: &str) -> Option<&'static str> {
    ALLOWED
        .iter()
        .find(|(s, f, _)| *s == step && (*f == "*" || *f == field))
        .map(|(_, _, why)| *why)
}

fn obs<'a>(seq: &'a [Obs], step: &str) -> &'a Obs {
    seq.iter()
        .find(|o| o.step == step)
        .unwrap_or_else(|| panic!("no step {step:?}"))
}

/// Where the reference is allowed to differ, tagguard must do what the spec says.
fn check_spec_where_reference_differs(ours: &[Obs]) {
    let a = digest(b"monolithic blob A\n");
    let mono = &obs(ours, "POST upload ?digest= (monolithic)").response;
    assert_eq!(mono.status, 201, "OCI single POST: {}", mono.describe());
    assert_eq!(mono.header("docker-content-digest"), Some(a.as_str()));
    assert_eq!(
        mono.header("location").map(location_path),
        Some(format!("/v2/org/diff/blobs/{a}").as_str())
    );
    let head = &obs(ours, "HEAD blob from monolithic POST").response;
    assert_eq!(head.status, 200, "{}", head.describe());
    assert_eq!(head.header("docker-content-digest"), Some(a.as_str()));

    let gap = &obs(ours, "PATCH chunk after a gap").response;
    assert_eq!(
        gap.status,
        416,
        "OCI: an out-of-order chunk: {}",
        gap.describe()
    );

    let page1 = &obs(ours, "GET tags/list?n=2").response;
    assert_eq!(page1.status, 200, "{}", page1.describe());
    assert_eq!(
        page1.json()["tags"],
        json!(["t1", "t2"]),
        "{}",
        page1.describe()
    );
    let link = page1.header("link").unwrap_or_else(|| {
        panic!(
            "OCI: a Link header when more tags follow: {}",
            page1.describe()
        )
    });
    assert!(
        link.contains("/v2/org/diff/tags/list?")
            && link.contains("last=t2")
            && link.contains("rel=\"next\""),
        "Link {link:?}"
    );
    let page2 = &obs(ours, "GET tags/list?n=2&last=t2").response;
    assert_eq!(page2.status, 200, "{}", page2.describe());
    assert_eq!(
        page2.json()["tags"],
        json!(["t3", "t4"]),
        "{}",
        page2.describe()
    );

    // Full list in lexical order (2.8.2 returns it unsorted; only the set is
    // compared with it).
    let all = &obs(ours, "GET tags/list").response;
    assert_eq!(
        all.json()["tags"],
        json!(["t1", "t2", "t3", "t4"]),
        "{}",
        all.describe()
    );
}

#[test]
fn distribution_api_matches_docker_registry() {
    if !clients_available(
        "distribution_api_matches_docker_registry",
        &["docker-registry"],
    ) {
        return;
    }
    let dir = TempDir::new("differential");
    let storage = dir.join("reference-storage");
    fs::create_dir_all(&storage).expect("reference storage");
    let port = free_port();
    let config = dir.join("reference.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        ),
    )
    .expect("write reference config");
    let reference_log = fs::File::create(dir.join("reference.log")).expect("reference log");
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut reference_guard = KillOnDrop(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(reference_log.try_clone().expect("log"))
            .stderr(reference_log)
            .spawn()
            .expect("start docker-registry"),
    );
    let reference_addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = try_http(
            &reference_addr,
            "GET",
            "/v2/",
            Auth::None,
            &[],
            b"",
            Duration::from_secs(5),
        ) && r.status == 200
        {
            break;
        }
        if let Ok(Some(status)) = reference_guard.0.try_wait() {
            panic!(
                "docker-registry exited ({status}): {}",
                fs::read_to_string(dir.join("reference.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "docker-registry did not start");
        thread::sleep(Duration::from_millis(50));
    }

    let server = Server::start(&dir.join("ours"));
    let theirs = run_sequence(&Target {
        addr: reference_addr,
        auth: Auth::None,
    });
    let ours = run_sequence(&Target {
        addr: server.addr(),
        auth: ALICE,
    });
    assert_eq!(theirs.len(), ours.len());

    let mut diffs: Vec<(String, String, String, String, Option<&str>)> = Vec::new();
    for (t, o) in theirs.iter().zip(&ours) {
        assert_eq!(t.step, o.step);
        if t.status != o.status {
            diffs.push((
                o.step.to_owned(),
                "status".into(),
                o.status.to_string(),
                t.status.to_string(),
                allowed(o.step, "status"),
            ));
        }
        for ((name, tv), (_, ov)) in t.fields.iter().zip(&o.fields) {
            if tv != ov {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
                diffs.push((
                    o.step.to_owned(),
                    (*name).to_owned(),
                    show(ov),
                    show(tv),
                    allowed(o.step, name),
                ));
            }
        }
    }
    let mut table = String::new();
    table.push_str(&format!(
        "{:<40} | {:<22} | {:<40} | {:<40} | allowed because\n",
        "step", "field", "tagguard-registry", "docker-registry 2.8.2"
    ));
    for (step, field, ours_v, theirs_v, why) in &diffs {
        table.push_str(&format!(
            "{step:<40} | {field:<22} | {ours_v:<40} | {theirs_v:<40} | {}\n",
            why.unwrap_or("NOT ALLOWED")
        ));
    }
    eprintln!("differences from docker-registry 2.8.2:\n{table}");
    let unexpected = diffs.iter().filter(|d| d.4.is_none()).count();
    assert_eq!(
        unexpected, 0,
        "{unexpected} unexpected difference(s):\n{table}"
    );
    check_spec_where_reference_differs(&ours);
}

// ---------------------------------------------------------------------------
// 6. Bad input

/// What must not change when a request is refused.
fn snapshot(server: &Server) -> (u16, String, (u16, String), (u16, String)) {
    let catalog = server.get("/v2/_catalog", ALICE);
    (
        catalog.status,
        catalog.text(),
        server.tag_list("org/app"),
        server.tag_list("org/etc"),
    )
}

fn bad_input_server(name: &str) -> (TempDir, Server) {
    let dir = TempDir::new(name);
    let server = Server::start(dir.path());
    server.push_image("org/app", "good", "bad-input seed", ALICE);
    (dir, server)
}

#[test]
fn malformed_manifest_json_is_manifest_invalid_and_stores_nothing() {
    let (_dir, server) = bad_input_server("malformed");
    let before = snapshot(&server);
    for body in [
        &b"{\"schemaVersion\": 2, \"config\": "[..],
        b"not json at all",
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":"nope","layers":7}"#,
    ] {
        let r = server.request(
            "PUT",
            "/v2/org/app/manifests/broken",
            ALICE,
            &[("Content-Type", OCI_MANIFEST)],
            body,
        );
        assert_eq!(r.status, 400, "{}", r.describe());
        assert_eq!(r.error_codes(), vec!["MANIFEST_INVALID"], "{}", r.describe());
        assert_eq!(snapshot(&server), before, "after {}", r.describe());
        let by_digest = get_manifest(&server, "org/app", &digest(body));
        assert_eq!(by_digest.status, 404, "{}", by_digest.describe());
    }
    let r = get_manifest(&server, "org/app", "broken");
    assert_eq!(r.status, 404, "{}", r.describe());
}

#[test]
fn manifest_naming_an_unknown_blob_is_manifest_blob_unknown_and_stores_nothing() {
    let (_dir, server) = bad_input_server("unknown-blob");
    let config = server.push_blob("org/app", br#"{"os":"linux"}"#, ALICE);
    let before = snapshot(&server);
    let missing = digest(b"this layer was never uploaded");
    let manifest = oci_manifest(&config, 14, &missing, 29);
    let r = server.request(
        "PUT",
        "/v2/org/app/manifests/dangling",
        ALICE,
        &[("Content-Type", OCI_MANIFEST)],
        &manifest,
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(
        r.error_codes(),
        vec!["MANIFEST_BLOB_UNKNOWN"],
        "{}",
        r.describe()
    );
    assert_eq!(snapshot(&server), before);
    let r = get_manifest(&server, "org/app", &digest(&manifest));
    assert_eq!(
        r.status,
        404,
        "the refused manifest is not stored: {}",
        r.describe()
    );
}

#[test]
fn upload_with_wrong_digest_is_digest_invalid_and_stores_no_blob() {
    let (_dir, server) = bad_input_server("wrong-digest");
    let before = snapshot(&server);
    let content = b"the bytes actually sent";
    let wrong = digest(b"something else");
    // Monolithic POST and POST + PUT.
    let r = server.request(
        "POST",
        &format!("/v2/org/app/blobs/uploads/?digest={wrong}"),
        ALICE,
        &[("Content-Type", "application/octet-stream")],
        content,
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.error_codes(), vec!["DIGEST_INVALID"], "{}", r.describe());
    let start = server
        .request("POST", "/v2/org/app/blobs/uploads/", ALICE, &[], b"")
        .expect(202);
    let loc = location_path(start.header("location").expect("Location")).to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = server.request(
        "PUT",
        &format!("{loc}{sep}digest={wrong}"),
        ALICE,
        &[("Content-Type", "application/octet-stream")],
        content,
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.error_codes(), vec!["DIGEST_INVALID"], "{}", r.describe());
    // A malformed digest too.
    let r = server.request(
        "POST",
        "/v2/org/app/blobs/uploads/?digest=sha256:xyz",
        ALICE,
        &[("Content-Type", "application/octet-stream")],
        content,
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    assert!(
        r.error_codes() == vec!["DIGEST_INVALID"] || r.error_codes() == vec!["UNSUPPORTED"],
        "{}",
        r.describe()
    );
    for d in [wrong, digest(content)] {
        let r = server.request("HEAD", &format!("/v2/org/app/blobs/{d}"), ALICE, &[], b"");
        assert_eq!(r.status, 404, "no blob stored half-way: {}", r.describe());
    }
    assert_eq!(snapshot(&server), before);
}

#[test]
fn oversized_manifest_is_refused_with_an_oci_error() {
    let (_dir, server) = bad_input_server("oversized");
    let config = server.push_blob("org/app", br#"{"os":"linux"}"#, ALICE);
    let layer = server.push_blob("org/app", b"layer", ALICE);
    let before = snapshot(&server);
    // A valid manifest whose annotation pushes it past 4 MiB.
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 14},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 5}],
        "annotations": {"padding": "x".repeat(4 * 1024 * 1024 + 1)},
    })
    .to_string()
    .into_bytes();
    assert!(manifest.len() > 4 * 1024 * 1024);
    let r = try_http(
        &server.addr(),
        "PUT",
        "/v2/org/app/manifests/huge",
        ALICE,
        &[("Content-Type", OCI_MANIFEST)],
        &manifest,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("PUT of a 4 MiB+ manifest got no response: {e}"));
    assert!(
        r.status == 413 || r.status == 400,
        "413 or 400: {}",
        r.describe()
    );
    assert!(
        !r.error_codes().is_empty(),
        "an OCI error body: {}",
        r.describe()
    );
    assert_eq!(snapshot(&server), before);
    let r = get_manifest(&server, "org/app", "huge");
    assert_eq!(r.status, 404, "{}", r.describe());
}

/// Every path below `root`, relative.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(root).expect("below root").to_owned());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn path_traversal_in_names_is_refused_and_nothing_lands_outside_the_data_dir() {
    let (dir, server) = bad_input_server("traversal");
    let before = snapshot(&server);
    // Everything in the test dir except the data dir and the server's logs.
    let outside = |dir: &TempDir| -> BTreeSet<PathBuf> {
        tree(dir.path())
            .into_iter()
            .filter(|p| !p.starts_with("data"))
            .filter(|p| !p.to_string_lossy().starts_with("server-"))
            .collect()
    };
    let outside_before = outside(&dir);
    let parent = dir.path().parent().expect("temp parent").to_owned();
    let parent_before: BTreeSet<_> = fs::read_dir(&parent)
        .expect("read temp dir")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy() == "etc" || n.to_string_lossy() == "x")
        .collect();

    let config = digest(br#"{"os":"linux"}"#);
    let manifest = oci_manifest(&config, 14, &config, 14);
    let names = [
        "org/../etc",
        "org/%2e%2e/etc",
        "org/%2E%2E/%2e%2e/etc",
        "..%2f..%2fetc/x",
        "org/..%2F..%2Fetc",
        "org/./app",
        "org//app",
    ];
    for name in names {
        let responses = [
            server.request(
                "PUT",
                &format!("/v2/{name}/manifests/x"),
                ALICE,
                &[("Content-Type", OCI_MANIFEST)],
                &manifest,
            ),
            server.request("GET", &format!("/v2/{name}/manifests/x"), ALICE, &[], b""),
            server.request("GET", &format!("/v2/{name}/tags/list"), ALICE, &[], b""),
            server.request(
                "POST",
                &format!("/v2/{name}/blobs/uploads/?digest={config}"),
                ALICE,
                &[("Content-Type", "application/octet-stream")],
                br#"{"os":"linux"}"#,
            ),
            server.request(
                "POST",
                &format!("/v2/{name}/blobs/uploads/"),
                ALICE,
                &[],
                b"",
            ),
        ];
        for r in &responses {
            assert!(
                (400..500).contains(&r.status),
                "a 4xx for a traversing name: {}",
                r.describe()
            );
            let body: Result<Value, _> = serde_json::from_slice(&r.body);
            assert!(body.is_ok(), "a JSON error body: {}", r.describe());
        }
        // The REST API refuses the name too (its error shape is Quay's).
        let rest = server.request(
            "POST",
            &format!("/api/v1/repository/{name}/immutabilitypolicy/"),
            ALICE,
            &[("Content-Type", "application/json")],
            br#"{"tagPattern":"x"}"#,
        );
        assert!(
            (400..500).contains(&rest.status),
            "a 4xx for a traversing name: {}",
            rest.describe()
        );
    }
    assert_eq!(snapshot(&server), before);
    assert_eq!(
        outside(&dir),
        outside_before,
        "files appeared outside the data dir"
    );
    let parent_after: BTreeSet<_> = fs::read_dir(&parent)
        .expect("read temp dir")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy() == "etc" || n.to_string_lossy() == "x")
        .collect();
    assert_eq!(
        parent_after, parent_before,
        "files appeared in the temp dir"
    );
    // Nothing in the data dir links outside it.
    let data = fs::canonicalize(&server.data).expect("canonical data dir");
    for p in tree(&server.data) {
        let full = server.data.join(&p);
        if let Ok(real) = fs::canonicalize(&full) {
            assert!(
                real.starts_with(&data),
                "{} resolves outside the data dir",
                full.display()
            );
        }
    }
}

#[test]
fn unknown_or_missing_credentials_get_401_with_a_challenge_and_change_nothing() {
    let (_dir, server) = bad_input_server("auth");
    let before = snapshot(&server);
    let good = get_manifest(&server, "org/app", "good").expect(200);
    for auth in [
        Auth::None,
        Auth::Bearer("no-such-token"),
        Auth::Basic("alice", "wrong"),
        Auth::Basic("mallory", "s3cret"),
    ] {
        for (method, path, body) in [
            ("GET", "/v2/".to_owned(), Vec::new()),
            ("GET", "/v2/org/app/tags/list".to_owned(), Vec::new()),
            (
                "PUT",
                "/v2/org/app/manifests/intruder".to_owned(),
                good.body.clone(),
            ),
            (
                "DELETE",
                format!("/v2/org/app/manifests/{}", digest(&good.body)),
                Vec::new(),
            ),
            ("POST", "/v2/org/app/blobs/uploads/".to_owned(), Vec::new()),
            (
                "POST",
                "/api/v1/organization/org/immutabilitypolicy/".to_owned(),
                br#"{"tagPattern":".*"}"#.to_vec(),
            ),
            (
                "GET",
                "/api/v1/organization/org/logs".to_owned(),
                Vec::new(),
            ),
        ] {
            let r = server.request(
                method,
                &path,
                auth,
                &[("Content-Type", OCI_MANIFEST)],
                &body,
            );
            assert_eq!(r.status, 401, "{auth:?}: {}", r.describe());
            assert!(
                r.header("www-authenticate").is_some(),
                "401 without WWW-Authenticate: {auth:?}: {}",
                r.describe()
            );
        }
    }
    // The real secret as a bearer token works.
    server.get("/v2/", Auth::Bearer("s3cret")).expect(200);
    assert_eq!(snapshot(&server), before);
    let listed = server
        .get("/api/v1/organization/org/immutabilitypolicy/", ALICE)
        .expect(200)
        .json();
    assert_eq!(listed["policies"], json!([]), "{listed}");
}
