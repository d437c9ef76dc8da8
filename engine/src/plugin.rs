//! Loading a plugin: compile the component, check it implements the
//! contract, and read its `info`.

use crate::bindings::TagPolicyPre;
use crate::bindings::policy_engine::PluginInfo;
use crate::entry::PluginStamp;
use crate::error::EngineError;
use crate::generation::{Budget, Generation};
use crate::host::{Access, HostState};
use crate::limits::Limits;
use crate::memory::MemoryStore;
use crate::registry::TagStore;
use crate::runtime::Runtime;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The contract version prefix a plugin must report.
pub const CONTRACT_PREFIX: &str = "tagguard:policy@0.3.";

/// The default plugin, built from `guest/` by the build and embedded here.
pub const DEFAULT_PLUGIN_WASM: &[u8] =
    include_bytes!(concat!(env!("TAGGUARD_PLUGIN_DIR"), "/tagguard_guest.wasm"));

/// Where the build put the plugins it built (the default one and `examples/plugins/*`).
pub fn built_plugin_path(package: &str) -> PathBuf {
    Path::new(env!("TAGGUARD_PLUGIN_DIR")).join(format!("{}.wasm", package.replace('-', "_")))
}

/// The `sha256:` digest of a component's bytes.
pub fn digest(bytes: &[u8]) -> String {
    crate::hex::sha256_prefixed(&Sha256::digest(bytes))
}

/// Why `bytes` cannot be a component, judged by its header, with a hint on building
/// one; `None` when the header is a component's.
fn not_a_component(bytes: &[u8]) -> Option<&'static str> {
    match (bytes.get(..4), bytes.get(4..8)) {
        (Some(b"\0asm"), Some([0x0d, 0x00, 0x01, 0x00])) => None,
        (Some(b"\0asm"), Some([0x01, 0x00, 0x00, 0x00])) => Some(
            "a core WebAssembly module, not a component; build one with `cargo build --target wasm32-wasip2` (a crate that uses wit-bindgen with the tagguard:policy world)",
        ),
        _ => Some(
            "not a WebAssembly component; build one with `cargo build --target wasm32-wasip2` (a crate that uses wit-bindgen with the tagguard:policy world)",
        ),
    }
}

/// A compiled plugin that implements the contract, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    pre: TagPolicyPre<HostState>,
    info: PluginInfo,
    stamp: Arc<PluginStamp>,
    limits: Limits,
}

impl Plugin {
    /// Loads the embedded default plugin.
    pub fn default_plugin(runtime: &Runtime) -> Result<Self, EngineError> {
        Self::from_bytes(runtime, DEFAULT_PLUGIN_WASM)
    }

    /// Loads a plugin component from a file.
    pub fn from_file(runtime: &Runtime, path: impl AsRef<Path>) -> Result<Self, EngineError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_bytes(runtime, &bytes).map_err(|e| match e {
            EngineError::Load { reason, .. } => EngineError::Load {
                plugin: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Compiles `bytes` (through the precompile cache), checks that the component
    /// implements the world with the sandbox's imports only, and checks the contract
    /// version `info` reports. `info` runs under the query deadline and memory cap.
    pub fn from_bytes(runtime: &Runtime, bytes: &[u8]) -> Result<Self, EngineError> {
        let digest = digest(bytes);
        if let Some(reason) = not_a_component(bytes) {
            return Err(EngineError::Load {
                plugin: digest,
                reason: reason.into(),
            });
        }
        let mismatch = |reason: String| EngineError::ContractMismatch {
            plugin: digest.clone(),
            reason,
        };
        let component = runtime
            .compile(bytes, &digest)
            .map_err(|e| EngineError::Load {
                plugin: digest.clone(),
                reason: format!("{e:#}"),
            })?;
        let pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| mismatch(format!("{e:#}")))?;
        let pre = TagPolicyPre::new(pre).map_err(|e| mismatch(format!("{e:#}")))?;
        let limits = *runtime.limits();
        let provisional = Arc::new(PluginStamp {
            name: "(loading)".into(),
            version: String::new(),
            digest: digest.clone(),
            generation: 0,
        });
        let probe = Generation::new(
            0,
            pre.clone(),
            provisional,
            limits,
            Arc::new(MemoryStore::with_tags(Vec::new())),
        );
        let (info, _) = probe.call("info", Access::ReadOnly, None, Budget::Query, |g, s| {
            g.call_info(s)
        });
        let info = info?;
        if !info.contract.starts_with(CONTRACT_PREFIX) {
            return Err(mismatch(format!(
                "info reports contract {:?}, expected {CONTRACT_PREFIX}x",
                info.contract
            )));
        }
        if info.name.trim().is_empty() {
            return Err(mismatch("info reports an empty name".into()));
        }
        let stamp = Arc::new(PluginStamp {
            name: info.name.clone(),
            version: info.version.clone(),
            digest,
            generation: 0,
        });
        Ok(Plugin {
            pre,
            info,
            stamp,
            limits,
        })
    }

    /// Runs the self-test a swap runs before it publishes a plugin: a few decisions and
    /// a small retroactive run against a scratch store, each checked by the
    /// completeness guard. `Ok` means a swap would accept it.
    pub fn self_test(&self) -> Result<(), EngineError> {
        crate::selftest::run(self)
    }

    /// What the plugin reports about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The limits the plugin runs under (those of the runtime it was loaded into).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Name, version and digest, as stamped on records.
    pub fn stamp(&self) -> &Arc<PluginStamp> {
        &self.stamp
    }

    /// A new generation of this plugin over `store`.
    pub(crate) fn generation(&self, id: u64, store: Arc<dyn TagStore>) -> Generation {
        Generation::new(id, self.pre.clone(), self.stamp.clone(), self.limits, store)
    }
}
