//! Shared test setup: one compiled default plugin per test binary.
#![allow(dead_code)]

use std::sync::OnceLock;
use tagguard_engine::{Plugin, Runtime, Settings, built_plugin_path};
use tagguard_host_test::Registry;

/// The shared runtime.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().expect("runtime"))
}

/// The embedded default plugin, compiled once.
pub fn default_plugin() -> Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN
        .get_or_init(|| Plugin::default_plugin(runtime()).expect("default plugin"))
        .clone()
}

/// A plugin the build put in its plugin directory.
pub fn built_plugin(package: &str) -> Plugin {
    Plugin::from_file(runtime(), built_plugin_path(package)).expect("built plugin")
}

/// A fresh registry with the default plugin and the given batch size.
pub fn registry(batch_size: u32) -> Registry {
    Registry::new(
        default_plugin(),
        Settings {
            batch_size,
            ..Settings::default()
        },
    )
}
