//! A mock container registry that runs tagguard plugins through the engine,
//! the compliance checker, and the scenario runner.

pub mod compliance;
pub mod db;
pub mod registry;
pub mod scenario;

pub use registry::{AuditQuery, NewPolicy, Registry, RegistryError, TAG_IMMUTABLE, system, user};
