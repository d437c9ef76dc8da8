//! Builds the plugins (the default guest and every crate under
//! `examples/plugins/`) for `wasm32-wasip2`, so the engine can embed the
//! default plugin and tests can load the others, with no manual step.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

/// A plugin crate to build: its package name and the feature sets it is built with.
struct PluginCrate {
    package: String,
    /// Each variant is built with `--features <variant>` into `<crate>_<variant>.wasm`;
    /// a crate without variants is built once into `<crate>.wasm`.
    variants: Vec<String>,
}

/// Reads `name = "..."` and `variants = ["...", ...]` (under `[package.metadata.tagguard]`).
fn plugin_crate(manifest: &Path) -> Option<PluginCrate> {
    let text = fs::read_to_string(manifest).ok()?;
    let value = |key: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(key) && l[key.len()..].trim_start().starts_with('='))
            .map(|l| l.split_once('=').map_or("", |(_, v)| v).trim().to_string())
    };
    let package = value("name")?.trim_matches('"').to_string();
    let variants = value("variants")
        .map(|v| {
            v.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|x| x.trim().trim_matches('"').to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Some(PluginCrate { package, variants })
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

    let mut crates = vec![PluginCrate {
        package: "tagguard-guest".into(),
        variants: Vec::new(),
    }];
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
        if let Some(c) = plugin_crate(&dir.join("Cargo.toml")) {
            watch(&dir);
            crates.push(c);
        }
    }

    let target_dir = out.join("plugin-target");
    let built = target_dir.join(TARGET).join(PROFILE);
    let plugins = out.join("plugins");
    fs::create_dir_all(&plugins).expect("create plugins dir");
    // One cargo invocation per crate and variant, so features never unify across plugins.
    for c in &crates {
        let file = format!("{}.wasm", c.package.replace('-', "_"));
        let builds: Vec<(Option<&str>, String)> = if c.variants.is_empty() {
            vec![(None, file.clone())]
        } else {
            c.variants
                .iter()
                .map(|v| {
                    (
                        Some(v.as_str()),
                        format!(
                            "{}_{}.wasm",
                            c.package.replace('-', "_"),
                            v.replace('-', "_")
                        ),
                    )
                })
                .collect()
        };
        for (feature, name) in builds {
            build_plugin(&cargo, &root, &target_dir, &c.package, feature);
            fs::copy(built.join(&file), plugins.join(&name))
                .unwrap_or_else(|e| panic!("copy {name}: {e}"));
        }
    }
    println!("cargo:rustc-env=TAGGUARD_PLUGIN_DIR={}", plugins.display());
}

/// Runs cargo for one plugin crate (and feature) with its own environment.
fn build_plugin(cargo: &str, root: &Path, target_dir: &Path, package: &str, feature: Option<&str>) {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(target_dir)
        .args(["-p", package]);
    if let Some(f) = feature {
        cmd.args(["--features", f]);
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
    assert!(
        status.success(),
        "building plugin {package} {feature:?} for {TARGET} failed"
    );
}
