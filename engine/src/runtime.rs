//! The shared wasmtime engine, its linker, the epoch ticker that drives
//! deadlines, and the precompile cache.

use crate::bindings::TagPolicy;
use crate::cache::{self, CacheStats, PrecompileCache};
use crate::error::EngineError;
use crate::host::HostState;
use crate::limits::{EPOCH_TICK, Limits};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::p2::bindings::{cli, random, sync::io as sync_io};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

/// How a runtime is set up.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// Sandbox limits for every plugin loaded into this runtime.
    pub limits: Limits,
    /// Where precompiled plugins are kept: `None` for [`cache::default_dir`] (no cache
    /// when that is `None` too). The directory must be the process's own, mode 0700.
    pub cache_dir: Option<PathBuf>,
    /// Turns the precompile cache off (every load compiles).
    pub no_cache: bool,
}

/// One wasmtime engine, configured for synchronous calls with epoch deadlines,
/// plus the linker with the sandboxed WASI subset and the tagguard imports.
pub struct Runtime {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    limits: Limits,
    cache: Option<Arc<PrecompileCache>>,
}

fn setup(reason: impl std::fmt::Display) -> EngineError {
    EngineError::Load {
        plugin: "(engine)".into(),
        reason: reason.to_string(),
    }
}

struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links only what Rust's `std` needs: I/O streams, the CLI environment and stdio
/// (all empty or discarded) and random seeds. No filesystem, sockets or clocks: a
/// plugin that imports them fails to load.
fn add_wasi_subset(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    sync_io::error::add_to_linker::<HostState, Io>(l, |t| t.ctx().table)?;
    sync_io::poll::add_to_linker::<HostState, Io>(l, |t| t.ctx().table)?;
    sync_io::streams::add_to_linker::<HostState, Io>(l, |t| t.ctx().table)?;
    random::random::add_to_linker::<HostState, WasiRandom>(
        l,
        <HostState as WasiRandomView>::random,
    )?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(
        l,
        <HostState as WasiRandomView>::random,
    )?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(
        l,
        <HostState as WasiRandomView>::random,
    )?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    cli::stdin::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)?;
    Ok(())
}

impl Runtime {
    /// A runtime with default limits and the default cache directory (none without
    /// `$XDG_CACHE_HOME` or `$HOME`).
    pub fn new() -> Result<Self, EngineError> {
        Self::with_config(RuntimeConfig::default())
    }

    /// A runtime with the given limits and cache; fails with [`EngineError::UnsafeCache`]
    /// if the cache directory is not one the process alone owns and can write.
    pub fn with_config(config: RuntimeConfig) -> Result<Self, EngineError> {
        let cache = if config.no_cache {
            None
        } else {
            (config.cache_dir.or_else(cache::default_dir))
                .map(|dir| PrecompileCache::open(dir).map(Arc::new))
                .transpose()?
        };
        let mut wasm = wasmtime::Config::new();
        wasm.concurrency_support(false);
        wasm.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&wasm).map_err(setup)?;
        let mut linker = Linker::new(&engine);
        add_wasi_subset(&mut linker).map_err(setup)?;
        TagPolicy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(setup)?;
        start_ticker(&engine).map_err(setup)?;
        Ok(Runtime {
            engine,
            linker,
            limits: config.limits,
            cache,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// The linker with the WASI subset and the tagguard imports.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// The limits plugins loaded here run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What the precompile cache did (all zero when it is off).
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.as_ref().map(|c| c.stats()).unwrap_or_default()
    }

    /// The precompile cache, if on.
    pub fn cache(&self) -> Option<&PrecompileCache> {
        self.cache.as_deref()
    }

    /// Compiles `wasm` (with digest `wasm_digest`), through the precompile cache when it is on.
    pub(crate) fn compile(
        &self,
        wasm: &[u8],
        wasm_digest: &str,
    ) -> wasmtime::Result<wasmtime::component::Component> {
        match &self.cache {
            Some(cache) => cache.load(&self.engine, wasm, wasm_digest),
            None => wasmtime::component::Component::new(&self.engine, wasm),
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_ticker(engine: &wasmtime::Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("tagguard-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}
