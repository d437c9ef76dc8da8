//! The shared wasmtime engine and linker every plugin is loaded into.

use crate::bindings::TagPolicy;
use crate::error::EngineError;
use crate::host::HostState;
use wasmtime::component::{HasSelf, Linker};

/// One wasmtime engine, configured for synchronous calls, plus the linker with
/// the sandboxed WASI context and the tagguard imports.
pub struct Runtime {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
}

fn setup(reason: impl std::fmt::Display) -> EngineError {
    EngineError::Load {
        plugin: "(engine)".into(),
        reason: reason.to_string(),
    }
}

impl Runtime {
    /// Builds the engine: synchronous component calls only (`concurrency_support` off).
    pub fn new() -> Result<Self, EngineError> {
        let mut config = wasmtime::Config::new();
        config.concurrency_support(false);
        let engine = wasmtime::Engine::new(&config).map_err(setup)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
        TagPolicy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(setup)?;
        Ok(Runtime { engine, linker })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// The linker with WASI and the tagguard imports.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }
}
