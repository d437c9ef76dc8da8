//! The scenario runner and the bench binary as a user meets them: the real binaries, run
//! with good and bad input, judged by their output and exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use tagguard_engine::built_plugin_path;

/// The package description, which neither binary's help may stand in for.
const PACKAGE_DESCRIPTION: &str = "A mock container registry and the end-to-end tests";

/// A directory under the system temp dir, unique to this process and call; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "tagguard-runner-cli-{}-{label}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name` (parent directories created) and returns its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `binary` with `args` in `cwd`, without backtraces.
fn run_in(binary: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// Runs the scenario runner's `run` with `files`, from the workspace root.
fn runner(files: &[&Path]) -> Output {
    let mut args = vec!["run"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    run_in(
        env!("CARGO_BIN_EXE_tagguard-host-test"),
        &workspace(),
        &args,
    )
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example(name: &str) -> PathBuf {
    workspace().join("examples/scenarios").join(name)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The check lines (`PASS step N: ...` or `FAIL step N: ...`) of a run.
fn check_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with("  PASS step") || l.starts_with("  FAIL step"))
        .collect()
}

#[test]
fn every_unloadable_scenario_file_is_reported_and_none_runs() {
    let dir = TempDir::new("parse");
    let good = dir.write(
        "good.json",
        r#"{"name": "fine", "steps": [{"push": {"repo": "org/r", "tag": "a"}}]}"#,
    );
    let truncated = dir.write("truncated.json", r#"{"name": "cut short", "steps": ["#);
    let unknown_step = dir.write(
        "unknown-step.json",
        r#"{"name": "typo", "steps": [{"jump": {"repo": "org/r"}}]}"#,
    );
    let missing = dir.0.join("missing.json");

    let out = runner(&[&good, &truncated, &unknown_step, &missing]);
    let (so, se) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{so}\n{se}");
    for (path, error) in [
        (&truncated, "EOF while parsing"),
        (&unknown_step, "unknown variant `jump`"),
        (&missing, "No such file"),
    ] {
        let line = se
            .lines()
            .find(|l| l.contains(path.to_str().unwrap()))
            .unwrap_or_else(|| panic!("no error for {}:\n{se}", path.display()));
        assert!(line.contains(error), "{line}");
    }
    assert!(!se.contains("good.json"), "{se}");
    assert!(
        se.contains("3 of 4 scenario files could not be loaded; no scenario was run"),
        "{se}"
    );
    assert!(
        so.is_empty(),
        "nothing runs, not even the plugin loads:\n{so}"
    );
}

#[test]
fn checks_are_worded_for_people_without_debug_formatting() {
    let out = runner(&[&example("swap-to-glob.json")]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}\n{}", stderr(&out));
    let checks = check_lines(&so);
    for want in [
        "  PASS step   1: create policy v1-policy matching \"v1.*\" succeeds",
        "  PASS step   2: push org/app:v1x succeeds",
        "  PASS step   3: org/app:v1x is immutable",
        "  PASS step   4: audit tag_made_immutable_by_policy for org/app:v1x: 1 record",
        "  PASS step   8: org/app:v1y is mutable",
        "  PASS step  15: rollback succeeds",
        "  PASS step  18: audit immutability_plugin_swapped: 2 records",
    ] {
        assert!(checks.contains(&want), "missing {want:?} in:\n{so}");
    }
    for line in &checks {
        let (_, what) = line.split_once(": ").unwrap();
        assert!(!what.contains("  "), "double space: {line}");
        for debug in ["Some(", "None", "-> ", "=true", "=false", "count="] {
            assert!(!what.contains(debug), "{debug:?} in: {line}");
        }
    }
}

#[test]
fn an_expected_error_shows_its_kind_and_message() {
    let out = runner(&[
        &example("swap-to-glob.json"),
        &example("report-1-push.json"),
    ]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}\n{}", stderr(&out));
    let checks = check_lines(&so);
    let swap = checks
        .iter()
        .find(|l| l.contains("swap to missing-record-plugin"))
        .unwrap();
    assert!(
        swap.contains("swap to missing-record-plugin fails with SwapRejected (AuditMissing): swap from tagguard-glob"),
        "{swap}"
    );
    assert!(swap.contains("refused"), "{swap}");
    assert!(
        checks.iter().any(|l| l.ends_with(
            "push org/repo:latest is denied with TAG_IMMUTABLE: push of latest denied: the tag is immutable"
        )),
        "{so}"
    );

    // The other way round: what happened instead of the outcome the step expected.
    let dir = TempDir::new("errors");
    let file = dir.write(
        "errors.json",
        r#"{"name": "errors", "steps": [
            {"rollback": {"expect": "error"}},
            {"delete_policy": {"id": "nope"}},
            {"push": {"repo": "org/r", "tag": "a", "expect": "error"}}
        ]}"#,
    );
    let out = runner(&[&file]);
    let so = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{so}");
    let lines: Vec<&str> = so.lines().collect();
    let after = |line: &str| {
        let i = lines.iter().position(|l| *l == line).unwrap_or_else(|| {
            panic!("missing {line:?} in:\n{so}");
        });
        lines[i + 1]
    };
    assert!(lines.contains(
        &"  PASS step   1: rollback fails with NoPreviousGeneration: no previous plugin generation to roll back to"
    ), "{so}");
    assert_eq!(
        after("  FAIL step   2: delete policy nope should succeed"),
        "      but it failed with UnknownPolicy: no policy nope"
    );
    assert_eq!(
        after("  FAIL step   3: push org/r:a should fail"),
        "      but it succeeded"
    );
}

#[test]
fn the_summary_counts_checks_in_scenarios() {
    let out = runner(&[
        &example("report-1-push.json"),
        &example("swap-to-glob.json"),
    ]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}\n{}", stderr(&out));
    let passed = check_lines(&so).len();
    assert!(passed > 20, "{so}");
    assert_eq!(
        so.lines().last(),
        Some(format!("{passed} checks in 2 scenarios passed").as_str())
    );

    let dir = TempDir::new("summary");
    let file = dir.write(
        "wrong.json",
        r#"{"name": "wrong on purpose", "steps": [
            {"push": {"repo": "org/r", "tag": "latest"}},
            {"expect_tag": {"repo": "org/r", "tag": "latest", "immutable": true}},
            {"expect_tag": {"repo": "org/r", "tag": "gone", "immutable": false}}
        ]}"#,
    );
    let out = runner(&[&file]);
    let (so, se) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{so}\n{se}");
    assert!(
        so.contains(
            "  FAIL step   2: org/r:latest is immutable\n      expected org/r:latest to be immutable, but it is mutable"
        ),
        "{so}"
    );
    assert!(
        so.contains(
            "  FAIL step   3: org/r:gone is mutable\n      expected org/r:gone to be mutable, but it does not exist"
        ),
        "{so}"
    );
    assert_eq!(
        so.lines().last(),
        Some("2 of 4 checks in 1 scenario passed, 2 failed")
    );
    assert!(se.contains("2 checks failed"), "{se}");
}

#[test]
fn swap_paths_resolve_against_the_scenario_and_unknown_names_list_the_valid_ones() {
    let dir = TempDir::new("swap");
    // A component file whose name does not end in .wasm, beside the scenario.
    std::fs::create_dir_all(dir.0.join("scenarios/plugins")).unwrap();
    std::fs::copy(
        built_plugin_path("glob-policy"),
        dir.0.join("scenarios/plugins/glob.component"),
    )
    .unwrap();
    let file = dir.write(
        "scenarios/swap.json",
        r#"{"name": "swap by path", "steps": [
            {"create_policy": {"id": "v1", "namespace": "org", "pattern": "v1.*"}},
            {"swap": {"plugin": "plugins/glob.component"}},
            {"push": {"repo": "org/app", "tag": "v1.2"}},
            {"expect_audit": {"kind": "tag_made_immutable_by_policy", "tag": "v1.2", "count": 1,
                              "plugin": "tagguard-glob"}},
            {"swap": {"plugin": "glob-polcy", "expect": "error"}},
            {"swap": {"plugin": "plugins/absent.wasm", "expect": "error"}}
        ]}"#,
    );
    // Run from elsewhere: the relative path must not resolve against the working directory.
    let elsewhere = TempDir::new("cwd");
    let out = run_in(
        env!("CARGO_BIN_EXE_tagguard-host-test"),
        &elsewhere.0,
        &["run", file.to_str().unwrap()],
    );
    let so = stdout(&out);
    assert!(out.status.success(), "{so}\n{}", stderr(&out));
    let checks = check_lines(&so);
    assert!(
        checks.contains(&"  PASS step   2: swap to plugins/glob.component succeeds"),
        "{so}"
    );
    let unknown = checks
        .iter()
        .find(|l| l.contains("swap to glob-polcy"))
        .unwrap();
    assert!(
        unknown.contains("fails with NotFound: no plugin named \"glob-polcy\""),
        "{unknown}"
    );
    for name in [
        "default",
        "glob-policy",
        "missing-record-plugin",
        "hostile-plugin-liar",
        "hostile-plugin-loop-push",
    ] {
        assert!(
            unknown.contains(&format!(" {name},")) || unknown.ends_with(&format!(" {name}")),
            "{name} not listed: {unknown}"
        );
    }
    let absent = checks
        .iter()
        .find(|l| l.contains("swap to plugins/absent.wasm"))
        .unwrap();
    let resolved = dir.0.join("scenarios").join("plugins/absent.wasm");
    assert!(
        absent.ends_with(&format!(
            "fails with NotFound: plugin file {} does not exist",
            resolved.display()
        )),
        "{absent}"
    );
}

#[test]
fn each_binary_describes_itself_in_its_help() {
    let here = workspace();
    let runner_help = run_in(env!("CARGO_BIN_EXE_tagguard-host-test"), &here, &["--help"]);
    let bench_help = run_in(env!("CARGO_BIN_EXE_bench"), &here, &["--help"]);
    let runner_short = run_in(env!("CARGO_BIN_EXE_tagguard-host-test"), &here, &["-h"]);
    let bench_short = run_in(env!("CARGO_BIN_EXE_bench"), &here, &["-h"]);
    for out in [&runner_help, &bench_help, &runner_short, &bench_short] {
        assert!(out.status.success(), "{}", stderr(out));
        assert!(
            !stdout(out).contains(PACKAGE_DESCRIPTION),
            "{}",
            stdout(out)
        );
    }
    let (runner_help, bench_help) = (stdout(&runner_help), stdout(&bench_help));
    let (runner_short, bench_short) = (stdout(&runner_short), stdout(&bench_short));

    let runner_about = "Runs tagguard scenario files against a mock container registry.";
    assert_eq!(runner_short.lines().next(), Some(runner_about));
    assert!(
        !runner_short.contains("docs/scenarios.md"),
        "{runner_short}"
    );
    assert!(runner_help.starts_with(runner_about), "{runner_help}");
    assert!(
        runner_help.contains("Every step prints PASS or FAIL"),
        "{runner_help}"
    );
    assert!(runner_help.contains("docs/scenarios.md"), "{runner_help}");

    let bench_about = "Benchmarks the tagguard plugin and engine against their baselines.";
    assert_eq!(bench_short.lines().next(), Some(bench_about));
    assert!(!bench_short.contains("Markdown table"), "{bench_short}");
    assert!(bench_help.starts_with(bench_about), "{bench_help}");
    assert!(bench_help.contains("Markdown table"), "{bench_help}");
    assert!(bench_help.contains("--smoke"), "{bench_help}");
}
