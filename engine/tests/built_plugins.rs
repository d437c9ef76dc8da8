//! The build copies every plugin it built to `<target-dir>/plugins/NAME.wasm`.

use std::fs;
use std::path::{Path, PathBuf};
use tagguard_engine::{DEFAULT_PLUGIN_WASM, built_plugin_path};

/// The cargo target directory, found independently of the build script:
/// cargo gives integration tests `<target-dir>/tmp`.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target-dir>/tmp")
        .to_path_buf()
}

#[test]
fn every_built_plugin_is_copied_to_the_target_dir() {
    let built = built_plugin_path("tagguard-guest");
    let dir = built.parent().expect("plugins dir");
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read the build's plugins dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .filter(|n| n.ends_with(".wasm"))
        .collect();
    names.sort();
    for expected in [
        "tagguard_guest.wasm",
        "glob_policy.wasm",
        "quay_compat.wasm",
        "missing_record_plugin.wasm",
        "hostile_plugin_liar.wasm",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not built: {names:?}"
        );
    }

    let copies = target_dir().join("plugins");
    for name in &names {
        let package = name.trim_end_matches(".wasm");
        let original = fs::read(built_plugin_path(package)).expect("built plugin");
        let copy = copies.join(name);
        let copied = fs::read(&copy).unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
        assert!(
            copied == original,
            "{} differs from the build's {name}",
            copy.display()
        );
    }
}

#[test]
fn the_embedded_default_plugin_is_the_copied_one() {
    let copy = target_dir().join("plugins/tagguard_guest.wasm");
    assert_eq!(
        fs::read(copy).expect("copied default plugin"),
        DEFAULT_PLUGIN_WASM
    );
}
