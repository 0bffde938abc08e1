//! The wasmtime engine shared by every plugin: compilation (cached on disk),
//! the pooling allocator, the epoch ticker that enforces call deadlines in
//! wasm code (the sandbox makes host calls keep them too), and the linker
//! that defines what a guest may import.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::plugin::{Plugin, PluginSpec};
use crate::sandbox::{GuestState, add_to_linker, check_imports};
use crate::{Error, PluginKind, Result};

/// How often the engine's epoch advances; call deadlines are counted in
/// these ticks, so a deadline is honoured to within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Settings of the plugin runtime as a whole (per-plugin limits live in
/// [`Limits`](crate::Limits)).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached, keyed by content hash and
    /// wasmtime's compatibility hash. `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Pre-allocate instance slots (faster instantiation after a trap or a
    /// reload). Falls back to on-demand allocation if the pool cannot be
    /// reserved.
    pub pooling: bool,
    /// The largest memory any one plugin may be given; sizes the pool's slots.
    pub max_memory_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            pooling: true,
            max_memory_bytes: 1 << 30,
        }
    }
}

/// A component compiled and checked against Weir's worlds.
#[derive(Clone)]
pub struct Compiled {
    pub kind: PluginKind,
    /// SHA-256 of the `.wasm` file, hex.
    pub digest: String,
    pub(crate) component: Component,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("kind", &self.kind)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<GuestState>,
    config: RuntimeConfig,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl PluginRuntime {
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let engine = match config.pooling {
            true => engine(Some(&config)).or_else(|e| {
                tracing::warn!(error = %e, "plugin instance pool unavailable; allocating on demand");
                engine(None)
            })?,
            false => engine(None)?,
        };
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker)
            .map_err(|e| Error::Runtime(format!("linking the plugin imports: {e:#}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("weir-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| Error::Runtime(format!("starting the epoch ticker: {e}")))?
        };
        Ok(Self {
            engine,
            linker,
            config,
            stop,
            ticker: Some(ticker),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads, compiles (or loads from the cache) and checks a component.
    pub fn compile(&self, path: &Path) -> Result<Compiled> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let component = match self.cached(&digest) {
            Some(component) => component,
            None => self.compile_and_cache(path, &bytes, &digest)?,
        };
        let kind = check_imports(&self.engine, &component).map_err(|reason| Error::Refused {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(Compiled {
            kind,
            digest,
            component,
        })
    }

    /// Compiles, instantiates and initializes a plugin. Fails if the
    /// component is refused or its `init` fails.
    pub fn load(&self, spec: PluginSpec) -> Result<Arc<Plugin>> {
        let compiled = self.compile(&spec.path)?;
        self.load_compiled(spec, compiled)
    }

    pub fn load_compiled(&self, spec: PluginSpec, compiled: Compiled) -> Result<Arc<Plugin>> {
        if spec.limits.memory_bytes > self.config.max_memory_bytes {
            return Err(Error::Init {
                plugin: spec.name.clone(),
                message: format!(
                    "memory limit {} is over the runtime's maximum of {}",
                    spec.limits.memory_bytes, self.config.max_memory_bytes
                ),
            });
        }
        Plugin::new(self.engine.clone(), &self.linker, spec, compiled).map(Arc::new)
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.config.cache_dir.as_ref()?;
        let mut hasher = DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish())))
    }

    fn cached(&self, digest: &str) -> Option<Component> {
        let path = self.cache_path(digest)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the cache holds only files this runtime wrote (atomically,
        // by rename) with `precompile_component` from a `.wasm` of the same
        // digest, for an engine of the same compatibility hash. wasmtime
        // still checks the header and refuses a mismatch.
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding an unusable cached plugin");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn compile_and_cache(&self, path: &Path, bytes: &[u8], digest: &str) -> Result<Component> {
        let compile_error = |e: wasmtime::Error| Error::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let Some(cache_path) = self.cache_path(digest) else {
            return Component::from_binary(&self.engine, bytes).map_err(compile_error);
        };
        let artifact = self
            .engine
            .precompile_component(bytes)
            .map_err(compile_error)?;
        if let Err(e) = write_atomically(&cache_path, &artifact) {
            tracing::warn!(path = %cache_path.display(), error = %e, "could not cache a compiled plugin");
        }
        // SAFETY: `artifact` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(compile_error)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn engine(pool: Option<&RuntimeConfig>) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if let Some(runtime) = pool {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(128)
            .total_core_instances(512)
            .total_memories(128)
            .total_tables(512)
            .max_memory_size(runtime.max_memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    Engine::new(&config).map_err(|e| Error::Runtime(format!("{e:#}")))
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}
