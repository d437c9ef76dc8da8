//! tagguard engine: the wasmtime host a container registry embeds to run
//! tag immutability policy plugins.
//!
//! A registry implements [`TagStore`] and [`AuditSink`], loads a [`Plugin`]
//! (the embedded default, or a component file) into a [`Runtime`], and calls
//! the typed methods of [`TagGuard`]. Every outcome is checked against the
//! records the plugin staged with it, and committed together with them.

pub mod audit;
pub mod bindings;
pub mod cache;
mod decide;
pub mod entry;
pub mod error;
mod generation;
pub mod guard;
mod hex;
pub mod host;
pub mod limits;
pub mod memory;
pub mod names;
pub mod plugin;
pub mod policy_set;
mod push;
pub mod registry;
pub mod removal;
mod request;
pub mod runtime;
mod selftest;
pub mod tagguard;
pub mod utc;

pub use bindings::policy_engine::{Granularity, PluginInfo, PreviewReport, RunSummary, RunTrigger};
pub use bindings::types::{Actor, ActorKind, Policy, PolicyError, RecordKind, Scope, Tag};
pub use cache::CacheStats;
pub use entry::{AuditEntry, Performer, PluginStamp};
pub use error::EngineError;
pub use host::RecordLimits;
pub use limits::Limits;
pub use memory::MemoryStore;
pub use plugin::{DEFAULT_PLUGIN_WASM, Plugin, built_plugin_path};
pub use policy_set::PolicyMatch;
pub use push::PushRequest;
pub use registry::{
    AuditSink, Change, MarkBatch, MarkImmutable, ScanRequest, SinkError, StoreError, TagRef,
    TagStore,
};
pub use removal::{Removal, RemovalAction};
pub use runtime::{Runtime, RuntimeConfig};
pub use tagguard::{
    DeleteOutcome, PLUGIN_SWAPPED, PolicyOutcome, PushOutcome, Settings, SwapOutcome, TagGuard,
};
