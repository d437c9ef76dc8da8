//! The `tagguard` binary, run as a user runs it: its output and exit codes for
//! good and bad input.

use std::path::PathBuf;
use std::process::{Command, Output};
use tagguard_engine::audit::{AuditChain, CheckpointKey, ExportFormat, export};
use tagguard_engine::{AuditEntry, Performer, PluginStamp, built_plugin_path};

fn tagguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagguard"))
        .args(args)
        // An expected failure prints no backtrace even when one is asked for.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("tagguard runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure: exit 1, an `error:` line on stderr containing `needle`, and no
/// backtrace or repeated cause.
fn fails_with(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout {} stderr {err}",
        stdout(o)
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "{err}");
    assert!(
        !err.contains("stack backtrace") && !err.contains("Caused by"),
        "{err}"
    );
}

fn plugin(package: &str) -> String {
    built_plugin_path(package).display().to_string()
}

/// A scratch file of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("tagguard-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        Scratch(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn help_describes_the_tagguard_binary() {
    let o = tagguard(&["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    assert!(
        help.contains("Try out, check and list tagguard policy plugins"),
        "{help}"
    );
    assert!(
        !help.contains("The wasmtime host a registry embeds"),
        "{help}"
    );
    for command in [
        "validate",
        "preview",
        "check",
        "check-policies",
        "plugins",
        "verify-log",
    ] {
        assert!(help.contains(command), "{command}: {help}");
    }
}

#[test]
fn validate_prints_the_stored_pattern_or_names_the_problem() {
    let o = tagguard(&["validate", "  v1.* "]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "valid: v1.*\n");
    fails_with(
        &tagguard(&["validate", "v[0-9"]),
        "tag-pattern: does not compile",
    );
    fails_with(
        &tagguard(&["validate", "a(?=b)"]),
        "look-around at position 1 is not supported",
    );
    fails_with(
        &tagguard(&["validate", "v1", "--namespace", "Org"]),
        "candidate.namespace: \"Org\" must be lowercase",
    );
    fails_with(
        &tagguard(&["validate", "v1", "--scope", "repository"]),
        "a repository policy must name its repository",
    );
    let o = tagguard(&[
        "validate",
        "v1",
        "--scope",
        "repository",
        "--repository",
        "team/app",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn explain_names_the_constructs_quay_reads_differently() {
    fails_with(
        &tagguard(&["explain", "x", "--pattern", "a++a"]),
        "possessive quantifier `++`",
    );
    fails_with(
        &tagguard(&["explain", "x", "--pattern", "a++a"]),
        "Quay's Python `regex`",
    );
    fails_with(
        &tagguard(&["explain", "x", "--pattern", "[a-z&&b]"]),
        "class set operation `&&` (an intersection here; in Quay's Python `regex` two plain `&` characters of the class) at position 4",
    );
}

#[test]
fn check_policies_says_for_each_quay_policy_which_plugin_accepts_it() {
    let listed = write(
        "quay-policies.json",
        r#"{"policies": [
            {"uuid": "semver", "tagPattern": "^v[0-9]+\\.[0-9]+\\.[0-9]+$", "tagPatternMatches": true},
            {"uuid": "no-rc", "tagPattern": "v(?!.*-rc).*", "tagPatternMatches": true},
            {"uuid": "possessive", "tagPattern": "a++a"},
            {"uuid": "not-dev", "tagPattern": "^dev-.*$", "tagPatternMatches": false},
            {"uuid": "set-op", "tagPattern": "[a-z&&b]"},
            {"uuid": "broken", "tagPattern": "[invalid"},
            {"uuid": "empty"}
        ]}"#,
    );
    let o = tagguard(&["check-policies", listed.path()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let line = |uuid: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{uuid} ")) || l.starts_with(&format!("{uuid}:")))
            .unwrap_or_else(|| panic!("no line for {uuid}: {out}"))
            .to_string()
    };
    assert!(line("semver").ends_with(": accepted as is"), "{out}");
    assert!(
        line("not-dev").contains("\"!^dev-.*$\": accepted as is"),
        "{out}"
    );
    let no_rc = line("no-rc");
    assert!(
        no_rc.contains("accepted by quay-compat only (") && no_rc.contains("look-around"),
        "{no_rc}"
    );
    let possessive = line("possessive");
    assert!(
        possessive.contains("accepted by quay-compat only (")
            && possessive.contains("possessive quantifier"),
        "{possessive}"
    );
    let set_op = line("set-op");
    assert!(
        set_op.contains("rejected: ")
            && set_op.contains("quay-compat: ")
            && set_op.contains("class set operation `&&`"),
        "{set_op}"
    );
    assert!(
        line("broken").contains("rejected: ") && line("broken").contains("does not compile"),
        "{out}"
    );
    assert!(
        line("empty").ends_with("rejected: tagPattern: missing"),
        "{out}"
    );
    assert!(
        out.ends_with("7 policies: 2 accepted as is, 2 by quay-compat only, 3 rejected\n"),
        "{out}"
    );

    // A bare list, every policy accepted: exit 0.
    let bare = write(
        "quay-bare.json",
        r#"[{"uuid": "a", "tagPattern": "latest"}]"#,
    );
    let o = tagguard(&["check-policies", bare.path()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "a \"latest\": accepted as is\n1 policies: 1 accepted as is, 0 by quay-compat only, 0 rejected\n"
    );
    fails_with(
        &tagguard(&[
            "check-policies",
            write("quay-bad.json", r#"{"items": []}"#).path(),
        ]),
        "expected {\"policies\": [...]} or a list of policies",
    );
}

#[test]
fn preview_counts_a_scenario_files_tags_that_would_become_immutable() {
    let scenario = Scratch::new(
        "scenario.json",
        br#"{ "name": "s", "steps": [
            { "push": { "repo": "org/app", "prefix": "v1.", "count": 5 } },
            { "push": { "repo": "org/app", "tag": "main" } },
            { "push": { "repo": "org/web", "tag": "v2.0" } },
            { "expect_tag": { "repo": "org/app", "tag": "main", "immutable": false } } ] }"#,
    );
    let o = tagguard(&[
        "preview",
        scenario.path(),
        "--pattern",
        "v.*",
        "--sample",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "6 of 7 tags in org would become immutable\n  org/app:v1.0\n  org/app:v1.1\n"
    );
    let o = tagguard(&[
        "preview",
        scenario.path(),
        "--pattern",
        "v.*",
        "--invert",
        "--repo",
        "org/app",
    ]);
    assert_eq!(
        stdout(&o),
        "1 of 6 tags in org/app would become immutable\n  org/app:main\n"
    );
    fails_with(
        &tagguard(&["preview", "/no/such/scenario.json", "--pattern", "v.*"]),
        "reading /no/such/scenario.json",
    );
}

#[test]
fn check_says_why_a_plugin_passes_or_fails_as_a_swap_would() {
    let o = tagguard(&["check", &plugin("tagguard-guest")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("PASS tagguard-default@"),
        "{}",
        stdout(&o)
    );
    let o = tagguard(&["check", &plugin("missing-record-plugin")]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.starts_with("FAIL missing-record@"), "{out}");
    assert!(out.contains("tag_made_immutable_by_policy"), "{out}");
    // `info` no longer exits 0 for a plugin a swap refuses.
    let o = tagguard(&["--plugin", &plugin("missing-record-plugin"), "info"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("\"self_test\": \"failed: "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_guest_panic_is_reported_without_the_backtrace_hint() {
    let o = tagguard(&["check", &plugin("hostile-plugin-panic")]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("deliberate panic in on-push"), "{out}");
    assert!(!out.contains("RUST_BACKTRACE"), "{out}");
}

#[test]
fn a_file_that_is_not_a_component_gets_one_line_with_a_hint() {
    let text = Scratch::new("notes.txt", b"not wasm at all");
    let core = Scratch::new(
        "core.wasm",
        &[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    );
    for (file, what) in [
        (text.path(), "not a WebAssembly component"),
        (core.path(), "a core WebAssembly module, not a component"),
    ] {
        let o = tagguard(&["check", file]);
        fails_with(&o, what);
        let err = stderr(&o);
        assert!(err.contains(file), "names the file: {err}");
        assert!(err.contains("cargo build --target wasm32-wasip2"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn an_error_prints_each_cause_once() {
    let o = tagguard(&["--plugin", "/no/such/plugin.wasm", "info"]);
    fails_with(&o, "reading plugin /no/such/plugin.wasm");
    let err = stderr(&o);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn plugins_lists_each_built_plugin_with_its_digest_and_path() {
    let o = tagguard(&["plugins"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for package in [
        "tagguard-guest",
        "glob-policy",
        "missing-record-plugin",
        "hostile-plugin-liar",
    ] {
        let path = built_plugin_path(package);
        let digest = tagguard_engine::plugin::digest(&std::fs::read(&path).unwrap());
        let line = format!(
            "{}  {digest}  {}",
            package.replace('-', "_"),
            path.display()
        );
        assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
    }
}

fn entry(n: u64) -> AuditEntry {
    let mut metadata = serde_json::Map::new();
    metadata.insert("n".into(), n.into());
    AuditEntry {
        kind: "change_tag_immutability",
        namespace: "org".into(),
        repository: Some("app".into()),
        tag: Some(format!("v{n}")),
        performer: Performer {
            kind: "user",
            name: "alice".into(),
            ip: None,
            request_id: None,
        },
        time: "2026-11-27T00:00:00Z".into(),
        metadata,
        plugin: PluginStamp {
            name: "tagguard-default".into(),
            version: "0.1.0".into(),
            digest: "sha256:00".into(),
            generation: 1,
        },
    }
}

fn write(name: &str, text: &str) -> Scratch {
    Scratch::new(name, text.as_bytes())
}

#[test]
fn verify_log_checks_an_exported_chain_and_a_checkpoint() {
    let mut chain = AuditChain::new();
    for n in 1..=3 {
        chain.append(entry(n));
    }
    let key_bytes = b"a secret key of the registry";
    let key = CheckpointKey::from_bytes(key_bytes).unwrap();
    let checkpoint = chain.checkpoint(&key).unwrap();
    let log = write(
        "log.jsonl",
        &export(chain.entries(), ExportFormat::Json, "/t"),
    );
    let o = tagguard(&["verify-log", log.path()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("verified 3 entries: the chain is intact"));
    // An edited entry breaks the chain.
    let edited = export(chain.entries(), ExportFormat::Json, "/t").replacen("alice", "mallory", 1);
    let bad = write("edited.jsonl", &edited);
    fails_with(&tagguard(&["verify-log", bad.path()]), "fails verification");
    // A rewritten chain passes alone but not against the checkpoint.
    chain.entries_mut()[0].entry.performer.name = "mallory".into();
    let mut prev = tagguard_engine::audit::GENESIS_HASH.to_string();
    for e in chain.entries_mut().iter_mut() {
        e.prev_hash = prev.clone();
        e.hash = tagguard_engine::audit::entry_hash(e.seq, &e.prev_hash, &e.entry);
        prev = e.hash.clone();
    }
    let rewritten = write(
        "rewritten.jsonl",
        &export(chain.entries(), ExportFormat::Json, "/t"),
    );
    assert!(tagguard(&["verify-log", rewritten.path()]).status.success());
    let cp = write(
        "checkpoint.json",
        &serde_json::to_string(&checkpoint).unwrap(),
    );
    let key_file = Scratch::new("key", key_bytes);
    let args = |log: &Scratch| {
        vec![
            "verify-log".to_string(),
            log.path().to_string(),
            "--checkpoint".into(),
            cp.path().into(),
            "--key-file".into(),
            key_file.path().into(),
        ]
    };
    let run = |a: Vec<String>| tagguard(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(args(&log));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("covers them up to seq 3"),
        "{}",
        stdout(&o)
    );
    fails_with(&run(args(&rewritten)), "fails verification");
    fails_with(
        &tagguard(&["verify-log", "/no/such/log"]),
        "reading /no/such/log",
    );
    let not_a_log = write("not-a-log", "{\"seq\": 1}\n");
    fails_with(&tagguard(&["verify-log", not_a_log.path()]), "line 1");
}
