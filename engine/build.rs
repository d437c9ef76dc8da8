//! Builds the plugins (the default guest and every crate under
//! `examples/plugins/`) for `wasm32-wasip2`, so the engine can embed the
//! default plugin and tests can load the others, with no manual step.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

fn package_name(manifest: &Path) -> Option<String> {
    let text = fs::read_to_string(manifest).ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with("name"))?;
    Some(line.split('"').nth(1)?.to_string())
}

fn watch(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

/// Makes sure the standard library for the plugin target is installed. On a machine
/// whose pinned toolchain predates the target list in `rust-toolchain.toml`, adds it
/// with rustup, so the README's two commands stay the whole setup.
fn ensure_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output();
    let Ok(out) = sysroot else { return };
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if root.join("lib/rustlib").join(TARGET).exists() {
        return;
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        add.args(["--toolchain", &toolchain]);
    }
    match add.status() {
        Ok(s) if s.success() => {}
        _ => panic!("the {TARGET} target is missing; install it with `rustup target add {TARGET}`"),
    }
}

fn main() {
    ensure_target();
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("engine/ sits in the workspace")
        .to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let mut packages = vec!["tagguard-guest".to_string()];
    watch(&root.join("wit"));
    watch(&root.join("guest"));
    watch(&root.join("Cargo.lock"));
    let examples = root.join("examples/plugins");
    watch(&examples);
    let mut dirs: Vec<_> = fs::read_dir(&examples)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    for dir in dirs {
        if let Some(name) = package_name(&dir.join("Cargo.toml")) {
            watch(&dir);
            packages.push(name);
        }
    }

    let target_dir = out.join("plugin-target");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for p in &packages {
        cmd.args(["-p", p]);
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the plugins");
    assert!(status.success(), "building the plugins for {TARGET} failed");

    let built = target_dir.join(TARGET).join(PROFILE);
    let plugins = out.join("plugins");
    fs::create_dir_all(&plugins).expect("create plugins dir");
    for p in &packages {
        let file = format!("{}.wasm", p.replace('-', "_"));
        fs::copy(built.join(&file), plugins.join(&file))
            .unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    println!("cargo:rustc-env=TAGGUARD_PLUGIN_DIR={}", plugins.display());
}
