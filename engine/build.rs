//! Builds the plugins (the default guest and every crate under
//! `examples/plugins/`) for `wasm32-wasip2`, so the engine can embed the
//! default plugin and tests can load the others, with no manual step.
//!
//! The plugins land in `$OUT_DIR/plugins` (what the engine embeds and
//! `built_plugin_path` names) and are copied to `<target-dir>/plugins`, a
//! place that does not depend on the build configuration.

use std::env;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

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
    let build_started = Instant::now();
    let mut names = Vec::new();
    let mut rebuilt = 0;
    let mut progress = Progress::new();
    let total: usize = crates.iter().map(|c| c.variants.len().max(1)).sum();
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
            if names.is_empty() {
                progress.live(format!("building {total} wasm plugins for {TARGET}..."));
            }
            let output = built.join(&file);
            let before = modified(&output);
            let started = Instant::now();
            build_plugin(&cargo, &root, &target_dir, &c.package, feature);
            let secs = started.elapsed().as_secs_f64();
            fs::copy(&output, plugins.join(&name)).unwrap_or_else(|e| panic!("copy {name}: {e}"));
            // Cargo only rewrites the output when it compiled the plugin again.
            if modified(&output) != before {
                rebuilt += 1;
                progress.say(format!("built plugin {name} in {secs:.1} s"));
            }
            names.push(name);
        }
    }
    if rebuilt > 0 {
        progress.say(format!(
            "built {rebuilt} of {total} wasm plugins for {TARGET} in {:.1} s",
            build_started.elapsed().as_secs_f64()
        ));
    }
    progress.finish();
    publish(&plugins, &names, &out);
    println!("cargo:rustc-env=TAGGUARD_PLUGIN_DIR={}", plugins.display());
}

/// When a file was last written, if it exists.
fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Tells the person running the build which plugins it compiled and how long
/// each took. A build script's output is hidden, and cargo replays a build
/// script's `cargo:warning=` lines on every later build until the script runs
/// again, so with a terminal the lines go straight to it (live, and never
/// repeated by a no-op build); without one, or in CI, they become warnings.
/// Plugins that were up to date are not mentioned.
struct Progress {
    tty: Option<fs::File>,
    warnings: Vec<String>,
}

impl Progress {
    /// Lines go to the terminal if there is one, except in CI (`CI` set), where a log
    /// should keep them.
    fn new() -> Self {
        let tty = match env::var_os("CI") {
            Some(_) => None,
            None => fs::OpenOptions::new().write(true).open("/dev/tty").ok(),
        };
        Self {
            tty,
            warnings: Vec::new(),
        }
    }

    /// Shows one line now on the terminal, or keeps it as a warning.
    fn say(&mut self, line: String) {
        eprintln!("{line}");
        match &mut self.tty {
            // Clear cargo's progress bar first; cargo redraws it.
            Some(tty) => {
                let _ = writeln!(tty, "\r\x1b[K   tagguard-engine: {line}");
            }
            None => self.warnings.push(line),
        }
    }

    /// Shows a line only on a terminal: it would be noise as a replayed warning.
    fn live(&mut self, line: String) {
        if let Some(tty) = &mut self.tty {
            let _ = writeln!(tty, "\r\x1b[K   tagguard-engine: {line}");
        }
    }

    /// Emits the kept lines as cargo warnings.
    fn finish(self) {
        for line in self.warnings {
            println!("cargo:warning={line}");
        }
    }
}

/// The cargo target directory this build writes into.
///
/// `CARGO_TARGET_DIR` when it is set to an absolute path; otherwise derived
/// from `OUT_DIR`, which is `<target-dir>[/<triple>]/<profile>/build/<pkg>-<hash>/out`.
fn cargo_target_dir(out: &Path) -> Option<PathBuf> {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return Some(dir);
    }
    let build = out
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))?;
    let mut dir = build.parent()?.parent()?;
    let triple = env::var("TARGET").ok();
    if dir.file_name().and_then(|n| n.to_str()) == triple.as_deref() {
        dir = dir.parent()?;
    }
    Some(dir.to_path_buf())
}

/// Copies the built plugins to `<target-dir>/plugins/NAME.wasm`, a place that
/// does not change with the build configuration, for people and other hosts.
/// A file already equal to the plugin is left alone.
fn publish(plugins: &Path, names: &[String], out: &Path) {
    let Some(dir) = cargo_target_dir(out) else {
        println!(
            "cargo:warning=no target directory found above {}; plugins stay there",
            plugins.display()
        );
        return;
    };
    let dir = dir.join("plugins");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    for name in names {
        let from = plugins.join(name);
        let to = dir.join(name);
        let bytes = fs::read(&from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
        if fs::read(&to).is_ok_and(|old| old == bytes) {
            continue;
        }
        // Write beside it and rename, so a reader never sees half a plugin.
        let part = dir.join(format!("{name}.part"));
        fs::write(&part, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", part.display()));
        fs::rename(&part, &to).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
    }
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
