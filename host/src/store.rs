//! [`SessionStore`]: build the engine and component once, then serve many calls concurrently, each on a
//! guest instance of its own (a fresh one per call, or a warm one from a pool: see [`Isolation`]), each
//! within a wall-clock deadline.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing::Instrument as _;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Cache, CacheConfig, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    Store, UpdateDeadline,
};

use crate::bindings::exports::wasm_sessions::store::store as wit;
use crate::bindings::{SessionStore as GuestWorld, SessionStorePre};
use crate::clock::{Clock, SystemClock};
use crate::convert::{
    config_from_wit, config_to_wit, expiry_to_wit, micros_from_time, save_request,
    session_from_wit, session_from_wit_with_data, session_to_wit, store_error_from_wit,
    user_session_from_wit,
};
use crate::driver::{SqlDriver, is_data_statement};
use crate::entropy::{EntropySource, OsEntropy};
use crate::error::{BuildError, StoreError};
use crate::host::{DeadlinePassed, Declared, Grants, HostState};
use crate::inspect::{check_contract, world_of};
use crate::session::{Config, Expiry, Session, UserSession};

/// The session component built into this library: the `guest/` crate compiled to a component, shipped
/// prebuilt in `component/session-store.wasm` so that the crate builds without the wasm target (a test in
/// the repository rebuilds it from the sources and fails when the bytes differ).
pub const BUNDLED_COMPONENT: &[u8] = include_bytes!("../component/session-store.wasm");

/// The largest linear memory a guest instance may grow to; a guest that allocates past it traps.
pub const GUEST_MEMORY_LIMIT: usize = 64 << 20;

/// How long one guest call may take by default, guest work and database time together (see
/// [`SessionStoreBuilder::call_timeout`]).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Rows one [`SessionStore::cleanup_in_batches`] step removes at most, unless told otherwise.
pub const DEFAULT_CLEANUP_BATCH: u32 = 1000;

/// The largest cleanup batch the guest accepts (one statement never locks more rows than this). The
/// guest enforces it; this constant lets a command line state the range up front, and a test keeps the
/// two equal.
pub const MAX_CLEANUP_BATCH: u32 = 100_000;

/// The most statements a component may declare, and the longest one, in bytes.
const MAX_DECLARED_STATEMENTS: usize = 256;
const MAX_STATEMENT_BYTES: usize = 16 * 1024;

/// How often the engine's epoch advances: a running guest checks its deadline (and yields to the async
/// runtime) at most this far apart.
const EPOCH_TICK: Duration = Duration::from_millis(10);

type ConfigEdit = Box<dyn FnOnce(&mut Config) + Send>;

/// How guest instances are used across calls.
///
/// Both modes give every call an instance of its own (never two calls at once on one instance), and both
/// drop an instance whose call trapped, failed inside wasmtime or ran past its deadline: such an instance
/// is never used again. They differ in what a call may find in the instance's memory: nothing
/// ([`FreshInstancePerCall`]) or whatever earlier, successful calls left in the guest's heap
/// ([`ReuseInstances`]). The guest keeps no state between calls by design, so the results are the same;
/// the difference is how far a guest bug could reach. Measured costs are in `BENCHMARKS.md`.
///
/// [`FreshInstancePerCall`]: Isolation::FreshInstancePerCall
/// [`ReuseInstances`]: Isolation::ReuseInstances
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// Instantiate the component for every call and drop the instance afterwards: the strictest
    /// isolation, no memory is shared between calls. Costs one instantiation per call.
    FreshInstancePerCall,
    /// Keep up to `max_idle` instances whose last call succeeded and hand them to later calls; make a new
    /// one when none is idle. The default, with `max_idle` = [`Isolation::DEFAULT_MAX_IDLE`].
    ReuseInstances {
        /// The most idle instances kept (each holds its linear memory, usually a few hundred KiB).
        max_idle: usize,
    },
}

impl Isolation {
    /// The idle instances the default [`Isolation::ReuseInstances`] keeps: enough for 16 concurrent
    /// calls (the default PostgreSQL pool size) without instantiating.
    pub const DEFAULT_MAX_IDLE: usize = 16;
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation::ReuseInstances {
            max_idle: Self::DEFAULT_MAX_IDLE,
        }
    }
}

/// Counters of the store's guest instances ([`SessionStore::instance_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct InstanceStats {
    /// Guest calls started since the store was built (the builder's own calls are not counted).
    pub calls: u64,
    /// Instances created since the store was built.
    pub instantiated: u64,
    /// Instances dropped because their call trapped, failed inside wasmtime or ran past its deadline.
    pub discarded: u64,
    /// Instances idle in the pool right now (always 0 with [`Isolation::FreshInstancePerCall`]).
    pub idle: usize,
}

/// One cleanup step as reported to the callback of [`SessionStore::cleanup_in_batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupProgress {
    /// Rows removed by this step.
    pub removed_in_batch: u64,
    /// Rows removed so far by this cleanup.
    pub removed_total: u64,
    /// Steps run so far (one statement each).
    pub batches: u64,
}

/// Builds a [`SessionStore`]; see [`SessionStore::builder`].
pub struct SessionStoreBuilder {
    driver: Arc<dyn SqlDriver>,
    entropy: Arc<dyn EntropySource>,
    clock: Arc<dyn Clock>,
    component: Option<Vec<u8>>,
    config: Option<Config>,
    edits: Vec<ConfigEdit>,
    max_instances: u32,
    call_timeout: Duration,
    isolation: Isolation,
    cache_dir: Option<PathBuf>,
}

impl SessionStoreBuilder {
    /// Replaces the entropy source (the default is the OS CSPRNG, [`OsEntropy`]).
    #[must_use]
    pub fn entropy(mut self, entropy: impl EntropySource) -> Self {
        self.entropy = Arc::new(entropy);
        self
    }

    /// Replaces the clock (the default is [`SystemClock`]): the guest's `clock` import and the host's
    /// own cutoffs (cleanup) both read it. Tests use a [`ManualClock`](crate::ManualClock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Runs another build of the session component (binary or text form) instead of the bundled one.
    #[must_use]
    pub fn component(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.component = Some(bytes.into());
        self
    }

    /// Uses `config` instead of the guest's defaults.
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Edits the configuration (applied after [`config`](Self::config) or to the guest's defaults).
    #[must_use]
    pub fn configure(mut self, edit: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// The most guest instances alive at once (calls in flight plus idle warm instances); default 1000.
    /// The pooling allocator reserves this many instance slots up front.
    #[must_use]
    pub fn max_concurrent_calls(mut self, max: u32) -> Self {
        self.max_instances = max.max(1);
        self
    }

    /// How long one guest call may take, wall clock, guest work and time spent in host calls (the
    /// database) together; default [`DEFAULT_CALL_TIMEOUT`]. Past it the call fails with
    /// [`StoreError::DeadlineExceeded`], its instance is discarded, and a statement still running is
    /// abandoned by the driver (see [`SqlDriver`]). A guest that spins is stopped within about 10 ms of
    /// the deadline.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Chooses how guest instances are used across calls (default: [`Isolation::default`], warm
    /// instances reused).
    #[must_use]
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Keeps the compiled component in `dir` (wasmtime's compilation cache, keyed by the component's
    /// bytes, the wasmtime version and the engine settings), so a later start skips compiling. The
    /// directory is created (mode 0700) when missing. wasmtime maps cached code as executable without
    /// verifying it, so a directory that another user could write to (it, or an ancestor without the
    /// sticky bit, is group- or world-writable or owned by another user) is refused. Without this the
    /// component is compiled at every build.
    #[must_use]
    pub fn compilation_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Compiles the component (or loads it from the [compilation cache](Self::compilation_cache)), links
    /// the three imports, asks the guest for its defaults and its statements, and validates the
    /// configuration once.
    ///
    /// # Errors
    /// [`BuildError::UnsafeCacheDir`], [`BuildError::Engine`], [`BuildError::Component`] (not a valid
    /// `session-store` component), [`BuildError::Contract`] (a component of another contract version,
    /// or one that imports what this host does not provide), [`BuildError::Statements`], or [`BuildError::Config`] naming the
    /// configuration rule that failed.
    pub async fn build(self) -> Result<SessionStore, BuildError> {
        let cache = match &self.cache_dir {
            Some(dir) => Some(compilation_cache(dir)?),
            None => None,
        };
        let engine = engine(self.max_instances, cache).map_err(BuildError::engine)?;
        let bytes = self.component.as_deref().unwrap_or(BUNDLED_COMPONENT);
        let component = Component::new(&engine, bytes).map_err(BuildError::component)?;
        check_contract(&world_of(&engine, &component))?;
        let mut linker = Linker::<HostState>::new(&engine);
        GuestWorld::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(BuildError::component)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(SessionStorePre::new)
            .map_err(BuildError::component)?;
        start_epoch_ticker(&engine);

        // The builder's own calls run on throwaway instances that may send no SQL: the statement set is
        // empty until the guest has declared it.
        let grants = Grants {
            driver: self.driver,
            entropy: self.entropy,
            clock: self.clock,
            statements: Declared::new(Vec::new()),
        };
        let bootstrap = SessionStore {
            inner: Arc::new(Inner {
                engine: engine.clone(),
                pre: pre.clone(),
                grants: grants.clone(),
                call_timeout: self.call_timeout,
                config: None,
                wit_config: None,
                pool: InstancePool::new(Isolation::FreshInstancePerCall),
            }),
        };
        let mut config = match self.config {
            Some(config) => config,
            None => bootstrap
                .call_default_config()
                .await
                .map_err(BuildError::Config)?,
        };
        for edit in self.edits {
            edit(&mut config);
        }
        let wit_config = config_to_wit(&config);
        bootstrap
            .validate(&wit_config)
            .await
            .map_err(BuildError::Config)?;
        let statements = bootstrap
            .declared_statements()
            .await
            .map_err(BuildError::Config)?;
        check_declared(&statements)?;
        Ok(SessionStore {
            inner: Arc::new(Inner {
                engine,
                pre,
                grants: Grants {
                    statements: Declared::new(statements),
                    ..grants
                },
                call_timeout: self.call_timeout,
                config: Some(config),
                wit_config: Some(wit_config),
                pool: InstancePool::new(self.isolation),
            }),
        })
    }
}

/// Refuses a declared statement set the host will not record: too many, too long, or empty.
fn check_declared(statements: &[String]) -> Result<(), BuildError> {
    if statements.len() > MAX_DECLARED_STATEMENTS {
        return Err(BuildError::Statements(format!(
            "{} statements declared; the limit is {MAX_DECLARED_STATEMENTS}",
            statements.len()
        )));
    }
    if let Some(long) = statements.iter().find(|s| s.len() > MAX_STATEMENT_BYTES) {
        return Err(BuildError::Statements(format!(
            "a statement of {} bytes; the limit is {MAX_STATEMENT_BYTES}",
            long.len()
        )));
    }
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("wasm-sessions-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(error) = spawned {
        // Without the ticker a spinning guest is still stopped by the call's timer when it yields at a
        // host call; log it, the store stays usable.
        tracing::error!(error = %error, "could not start the epoch ticker thread");
    }
}

/// wasmtime's compilation cache in `dir` (made absolute; created 0700 when missing; refused when another
/// user could write to it).
fn compilation_cache(dir: &Path) -> Result<Cache, BuildError> {
    let dir = std::path::absolute(dir).map_err(|e| BuildError::Engine(Box::new(e)))?;
    ensure_private_dir(&dir)?;
    let mut config = CacheConfig::new();
    config.with_directory(dir);
    Cache::new(config).map_err(BuildError::engine)
}

/// Creates `dir` (0700) when missing, then checks it and every ancestor: owned by this user or root, and
/// not writable by group or others (an ancestor may be, with the sticky bit, as `/tmp` is).
#[cfg(unix)]
fn ensure_private_dir(dir: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};

    let refuse = |path: &Path, reason: String| BuildError::UnsafeCacheDir {
        path: path.to_owned(),
        reason,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| refuse(dir, format!("it cannot be created: {e}")))?;
    let me = rustix::process::geteuid().as_raw();
    let mut current = Some(dir);
    while let Some(path) = current {
        let meta = std::fs::metadata(path)
            .map_err(|e| refuse(path, format!("it cannot be inspected: {e}")))?;
        let (owner, mode) = (meta.uid(), meta.mode());
        if owner != me && owner != 0 {
            return Err(refuse(
                path,
                format!("it belongs to user {owner}, not to this user ({me}) or root"),
            ));
        }
        let writable_by_others = mode & 0o022 != 0;
        let sticky = mode & 0o1000 != 0;
        if writable_by_others && (path == dir || !sticky) {
            return Err(refuse(
                path,
                format!("other users can write to it (mode {:o})", mode & 0o7777),
            ));
        }
        current = path.parent();
    }
    Ok(())
}

#[cfg(not(unix))]
fn ensure_private_dir(dir: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(dir).map_err(|e| BuildError::UnsafeCacheDir {
        path: dir.to_owned(),
        reason: format!("it cannot be created: {e}"),
    })
}

fn engine(max_instances: u32, cache: Option<Cache>) -> wasmtime::Result<Engine> {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(max_instances)
        .total_core_instances(max_instances.saturating_mul(4))
        .total_memories(max_instances.saturating_mul(2))
        .total_tables(max_instances.saturating_mul(4))
        .max_memory_size(GUEST_MEMORY_LIMIT)
        // Reset a reused slot by rewriting only the pages the last instance dirtied (found with Linux's
        // PAGEMAP_SCAN where available) instead of `madvise` + a page fault per touched page on the next
        // instantiation; see BENCHMARKS.md for the measured effect. The price: slots that were used keep
        // the pages their guest touched resident (at most `max_unused_warm_slots` such idle slots, 100
        // by default; the bench's peak RSS is in BENCHMARKS.md).
        .linear_memory_keep_resident(GUEST_MEMORY_LIMIT)
        .table_keep_resident(1 << 20)
        .pagemap_scan(Enabled::Auto);
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        // The guest uses no component-model async; leaving it off makes every call cheaper.
        .concurrency_support(false)
        // Deadlines instead of fuel: a load and compare at loop heads and function entries, where fuel
        // costs a counter update per basic block. The epoch advances every 10 ms (`EPOCH_TICK`).
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
        .cache(cache);
    Engine::new(&config)
}

struct Inner {
    engine: Engine,
    pre: SessionStorePre<HostState>,
    grants: Grants,
    call_timeout: Duration,
    /// Set by the builder; `None` only on the builder's own bootstrap store.
    config: Option<Config>,
    /// `config` as the guest takes it, converted once instead of on every call.
    wit_config: Option<wit::Config>,
    pool: InstancePool,
}

/// A guest instance with the wasmtime store it lives in.
struct Instance {
    store: Store<HostState>,
    guest: GuestWorld,
    /// The same instance, untyped: for calls by export name (the conformance suite).
    raw: wasmtime::component::Instance,
}

/// Where calls get their instance: idle warm ones (in [`Isolation::ReuseInstances`]) or a new one.
struct InstancePool {
    max_idle: usize,
    idle: Mutex<Vec<Instance>>,
    calls: AtomicU64,
    instantiated: AtomicU64,
    discarded: AtomicU64,
}

impl InstancePool {
    fn new(isolation: Isolation) -> Self {
        let max_idle = match isolation {
            Isolation::FreshInstancePerCall => 0,
            Isolation::ReuseInstances { max_idle } => max_idle,
        };
        Self {
            max_idle,
            idle: Mutex::new(Vec::with_capacity(max_idle)),
            calls: AtomicU64::new(0),
            instantiated: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    /// An idle instance, if there is one.
    fn take_idle(&self) -> Option<Instance> {
        if self.max_idle == 0 {
            return None;
        }
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps `instance`, whose call succeeded, for a later call; drops it when the pool is full.
    fn put_back(&self, instance: Instance) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(instance);
        }
    }
}

/// The session store: the seed's session API, every operation run by the guest component.
///
/// Cheap to clone and safe to share between tasks. Each call runs on a guest instance of its own, fresh
/// or warm as chosen by [`SessionStoreBuilder::isolation`], within a deadline; a guest that traps fails
/// only its own call, and its instance is dropped.
#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How the request's session cookie turned out ([`SessionStore::load_from_cookie`]).
#[cfg(feature = "tower")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieState {
    /// No session cookie.
    Absent,
    /// The cookie named a live session.
    Live,
    /// Malformed, unknown, expired or revoked.
    Stale,
}

/// The session of one HTTP request.
#[cfg(feature = "tower")]
pub(crate) struct RequestSession {
    pub(crate) session: Session,
    pub(crate) cookie: CookieState,
    pub(crate) removal_cookie: Option<String>,
}

/// What [`SessionStore::commit`] did.
pub(crate) struct CommitOutcome {
    pub(crate) session: Option<Session>,
    /// The `Set-Cookie` value, for the layer's response.
    #[cfg(feature = "tower")]
    pub(crate) set_cookie: Option<String>,
}

/// Calls one export of the `store` interface on an instance of its own, inside a tracing span, within
/// the call's deadline. The instance goes back to the pool only when the call completed without a trap;
/// a call that ran out of time drops it with its future. Session data and tokens are never recorded in
/// the span.
macro_rules! call_guest {
    ($self:ident, $op:literal, $method:ident ( $($arg:expr),* )) => {
        $self
            .run(async |instance: &mut Instance| {
                instance
                    .guest
                    .wasm_sessions_store_store()
                    .$method(&mut instance.store, $($arg),*)
                    .await
            })
            .instrument(tracing::info_span!(concat!("session.", $op)))
            .await
    };
}

impl SessionStore {
    /// Starts building a store on `driver` (usually a [`PostgresDriver`](crate::PostgresDriver)).
    pub fn builder(driver: impl SqlDriver) -> SessionStoreBuilder {
        Self::builder_shared(Arc::new(driver))
    }

    /// Like [`builder`](Self::builder), for a driver already shared elsewhere.
    pub fn builder_shared(driver: Arc<dyn SqlDriver>) -> SessionStoreBuilder {
        SessionStoreBuilder {
            driver,
            entropy: Arc::new(OsEntropy),
            clock: Arc::new(SystemClock),
            component: None,
            config: None,
            edits: Vec::new(),
            max_instances: 1000,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            isolation: Isolation::default(),
            cache_dir: None,
        }
    }

    /// The configuration in force (validated by the guest when the store was built).
    #[must_use]
    pub fn config(&self) -> &Config {
        self.inner
            .config
            .as_ref()
            .expect("the builder always sets the configuration")
    }

    /// The configuration in the guest's form.
    fn wit_config(&self) -> &wit::Config {
        self.inner
            .wit_config
            .as_ref()
            .expect("the builder always sets the configuration")
    }

    /// The clock the store and its guest read.
    #[must_use]
    pub fn now(&self) -> SystemTime {
        self.inner.grants.clock.now()
    }

    /// The SQL statements the component declared, verbatim: the only ones the host will send for it.
    #[must_use]
    pub fn statements(&self) -> &[String] {
        &self.inner.grants.statements
    }

    /// Asks the database to prepare every declared statement (without running it), so a statement that
    /// does not fit the schema or the role's privileges is reported before traffic arrives.
    ///
    /// # Errors
    /// [`StoreError::Database`] for the first statement the database refuses (the message names it).
    pub async fn check_statements(&self) -> Result<(), StoreError> {
        for statement in self.statements() {
            if !is_data_statement(statement) {
                return Err(StoreError::Database(crate::SqlError::Refused(format!(
                    "not a single data statement: {statement}"
                ))));
            }
            self.inner
                .grants
                .driver
                .prepare(statement)
                .await
                .map_err(|e| {
                    StoreError::Database(prefixed(e, &format!("preparing `{statement}`")))
                })?;
        }
        Ok(())
    }

    /// Counters of the guest instances: calls, instances created, discarded, idle now.
    #[must_use]
    pub fn instance_stats(&self) -> InstanceStats {
        let pool = &self.inner.pool;
        InstanceStats {
            calls: pool.calls.load(Ordering::Relaxed),
            instantiated: pool.instantiated.load(Ordering::Relaxed),
            discarded: pool.discarded.load(Ordering::Relaxed),
            idle: pool.idle.lock().unwrap_or_else(|e| e.into_inner()).len(),
        }
    }

    /// Runs `call` on an instance of its own within the call's deadline; see [`call_guest!`].
    async fn run<T>(
        &self,
        call: impl AsyncFnOnce(&mut Instance) -> wasmtime::Result<T>,
    ) -> Result<T, StoreError> {
        let timeout = self.inner.call_timeout;
        let deadline = Instant::now() + timeout;
        let pool = &self.inner.pool;
        pool.calls.fetch_add(1, Ordering::Relaxed);
        let attempt = async {
            let mut instance = self.instance(deadline).await?;
            match call(&mut instance).await {
                Ok(value) => {
                    pool.put_back(instance);
                    Ok(value)
                }
                Err(trap) => {
                    pool.discarded.fetch_add(1, Ordering::Relaxed);
                    Err(StoreError::guest(trap, timeout))
                }
            }
        };
        match tokio::time::timeout_at(deadline.into(), attempt).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => {
                // The instance was dropped with the future, mid-call: never reused.
                pool.discarded.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::DeadlineExceeded(timeout))
            }
        }
    }

    /// An idle warm instance, or a new one, armed with `deadline`.
    async fn instance(&self, deadline: Instant) -> Result<Instance, StoreError> {
        let timeout = self.inner.call_timeout;
        if let Some(mut instance) = self.inner.pool.take_idle() {
            instance.store.data_mut().deadline = deadline;
            instance.store.set_epoch_deadline(1);
            return Ok(instance);
        }
        let mut state = HostState::new(self.inner.grants.clone(), GUEST_MEMORY_LIMIT);
        state.deadline = deadline;
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            if Instant::now() >= context.data().deadline {
                Err(DeadlinePassed.into())
            } else {
                // Let other tasks run on this thread, then check again at the next tick.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let raw = self
            .inner
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| StoreError::guest(e, timeout))?;
        let guest = GuestWorld::new(&mut store, &raw).map_err(|e| StoreError::guest(e, timeout))?;
        self.inner.pool.instantiated.fetch_add(1, Ordering::Relaxed);
        Ok(Instance { store, guest, raw })
    }

    /// Calls the export `name` of the `store` interface with `args` in the JSON form of WIT values (see
    /// [`crate::conformance`]), on an instance of the store's own, and returns its result in that form
    /// (a `result<..>` export gives `{"ok": ..}` or `{"err": ..}`). The configuration is not implied:
    /// an export that takes one gets it in `args`.
    ///
    /// # Errors
    /// [`StoreError::InvalidData`] when `name` is no export or `args` do not fit its parameters; the
    /// sandbox's own errors (deadline, memory, trap) as for every call.
    #[doc(hidden)]
    pub async fn call_export(
        &self,
        name: &str,
        args: &[serde_json::Value],
    ) -> Result<serde_json::Value, StoreError> {
        use crate::conformance::{STORE_INTERFACE, to_json, to_val};
        use wasmtime::component::Val;
        let name = name.to_owned();
        let args = args.to_vec();
        self.run(async |instance: &mut Instance| {
            let store = &mut instance.store;
            let func = instance
                .raw
                .get_export_index(&mut *store, None, STORE_INTERFACE)
                .and_then(|interface| {
                    instance
                        .raw
                        .get_export_index(&mut *store, Some(&interface), &name)
                })
                .and_then(|index| instance.raw.get_func(&mut *store, index));
            let Some(func) = func else {
                return Ok(Err(StoreError::InvalidData(format!(
                    "no export named {name}"
                ))));
            };
            let ty = func.ty(&*store);
            let params: Vec<_> = ty.params().map(|(n, t)| (n.to_owned(), t)).collect();
            if params.len() != args.len() {
                return Ok(Err(StoreError::InvalidData(format!(
                    "{name} takes {} arguments, {} given",
                    params.len(),
                    args.len()
                ))));
            }
            let mut vals = Vec::with_capacity(args.len());
            for ((param, ty), arg) in params.iter().zip(&args) {
                match to_val(ty, arg, &format!("{name}({param})")) {
                    Ok(val) => vals.push(val),
                    Err(error) => return Ok(Err(error)),
                }
            }
            let mut results = vec![Val::Bool(false); ty.results().len()];
            func.call_async(&mut *store, &vals, &mut results).await?;
            Ok(Ok(match results.as_slice() {
                [] => serde_json::Value::Null,
                [one] => to_json(one),
                many => serde_json::Value::Array(many.iter().map(to_json).collect()),
            }))
        })
        .await?
    }

    async fn call_default_config(&self) -> Result<Config, StoreError> {
        call_guest!(self, "default_config", call_default_config()).map(config_from_wit)
    }

    async fn validate(&self, config: &wit::Config) -> Result<(), StoreError> {
        call_guest!(self, "validate_config", call_validate_config(config))?
            .map_err(store_error_from_wit)
    }

    async fn declared_statements(&self) -> Result<Vec<String>, StoreError> {
        call_guest!(self, "statements", call_statements())
    }

    /// A fresh token: 32 bytes from the entropy source as 64 lower-case hex characters.
    ///
    /// # Errors
    /// [`StoreError::Guest`] if the guest or the entropy source fails.
    pub async fn generate_session_id(&self) -> Result<String, StoreError> {
        call_guest!(self, "generate_session_id", call_generate_session_id())?
            .map_err(store_error_from_wit)
    }

    /// A new, unsaved session with a fresh token, created now, following the configuration's expiry
    /// (change it with [`Session::set_expiry`] before saving).
    ///
    /// # Errors
    /// [`StoreError::Guest`] if the guest or the entropy source fails.
    pub async fn new_session(&self) -> Result<Session, StoreError> {
        self.new_session_with(None).await
    }

    /// A new, unsaved session with a fresh token and the expiry mode `expiry`.
    ///
    /// # Errors
    /// [`StoreError::InvalidData`] for an expiry the configuration does not allow (an inactivity period
    /// over `max-age`, a time in the past).
    pub async fn new_session_with(&self, expiry: Option<Expiry>) -> Result<Session, StoreError> {
        let config = self.wit_config();
        let expiry = expiry.map(expiry_to_wit);
        let session = call_guest!(self, "new_session", call_new_session(config, expiry))?
            .map_err(store_error_from_wit)?;
        session_from_wit(session)
    }

    /// Whether the session's expiry time has passed, by the store's clock.
    #[must_use]
    pub fn is_expired(&self, session: &Session) -> bool {
        self.now() >= session.expires_at
    }

    /// Loads the session with token `id` (one statement; a second one when its idle deadline is due to
    /// be extended).
    ///
    /// # Errors
    /// [`StoreError::InvalidId`] (no SQL sent), [`StoreError::NotFound`], [`StoreError::Expired`] (no data
    /// returned), [`StoreError::Database`].
    pub async fn load(&self, id: &str) -> Result<Session, StoreError> {
        let config = self.wit_config();
        let session =
            call_guest!(self, "load", call_load(config, id))?.map_err(store_error_from_wit)?;
        session_from_wit(session)
    }

    /// The session a request's `Cookie` header names, or a fresh unsaved one (one guest call).
    #[cfg(feature = "tower")]
    pub(crate) async fn load_from_cookie(
        &self,
        header: &str,
    ) -> Result<RequestSession, StoreError> {
        let config = self.wit_config();
        let found = call_guest!(
            self,
            "load_from_cookie",
            call_load_from_cookie(config, header)
        )?
        .map_err(store_error_from_wit)?;
        Ok(RequestSession {
            session: session_from_wit(found.session)?,
            cookie: match found.cookie {
                wit::CookieState::Absent => CookieState::Absent,
                wit::CookieState::Live => CookieState::Live,
                wit::CookieState::Stale => CookieState::Stale,
            },
            removal_cookie: found.removal_cookie,
        })
    }

    /// Deletes the session with token `delete` (if given), then writes `save` (if given), in one guest
    /// call; returns what was written and the `Set-Cookie` value for the response.
    pub(crate) async fn commit(
        &self,
        delete: Option<&str>,
        save: Option<(&Session, bool)>,
    ) -> Result<CommitOutcome, StoreError> {
        let config = self.wit_config();
        let request = wit::CommitRequest {
            delete: delete.map(str::to_owned),
            save: save.map(|(session, rotate)| save_request(session, rotate)),
        };
        let outcome = call_guest!(self, "commit", call_commit(config, &request))?
            .map_err(store_error_from_wit)?;
        // An update's data comes back only when another request's changes were merged in; otherwise
        // what is stored is this copy's own data, which the request carried as a placeholder.
        let written = match (outcome.session, save) {
            (Some(written), Some((copy, _))) if !outcome.data_stored => {
                Some(session_from_wit_with_data(written, copy.data.clone()))
            }
            (written, _) => written.map(session_from_wit).transpose()?,
        };
        Ok(CommitOutcome {
            session: written,
            #[cfg(feature = "tower")]
            set_cookie: outcome.set_cookie,
        })
    }

    /// Writes what this copy changed in one statement, then refreshes it from the stored row: the stored
    /// data comes back only when another request wrote since this copy was loaded or saved (its changes
    /// merged in; never under [`Concurrency::LastWriteWins`](crate::Concurrency::LastWriteWins), where
    /// the copy keeps its own data), else the copy's own is what is stored. A new session is inserted
    /// whole.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`], [`StoreError::InvalidData`] (NUL characters, over the size limit),
    /// [`StoreError::Expired`], [`StoreError::NotFound`] (deleted meanwhile: never recreated),
    /// [`StoreError::Conflict`] (see [`Concurrency`](crate::Concurrency)), [`StoreError::Database`]. On
    /// error nothing is written and `session` is unchanged.
    pub async fn save(&self, session: &mut Session) -> Result<(), StoreError> {
        self.write(session, false).await
    }

    /// Gives the session a fresh token and writes it (do this at login, against session fixation): a
    /// saved session moves to the new token in the same statement that writes its changes, so afterwards
    /// the old token does not load and the new one does; a new session is saved under a fresh token.
    ///
    /// # Errors
    /// As for [`save`](Self::save). On error `session` is unchanged.
    pub async fn regenerate_id(&self, session: &mut Session) -> Result<(), StoreError> {
        self.write(session, true).await
    }

    async fn write(&self, session: &mut Session, rotate: bool) -> Result<(), StoreError> {
        let outcome = self.commit(None, Some((session, rotate))).await?;
        *session = outcome.session.ok_or_else(|| {
            StoreError::UnexpectedResult("the guest wrote no session for a save".into())
        })?;
        Ok(())
    }

    /// Deletes the session with token `id`; returns whether it existed.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`], [`StoreError::Database`].
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        call_guest!(self, "delete", call_delete(id))?.map_err(store_error_from_wit)
    }

    /// Deletes the sessions expired by now in batches of [`DEFAULT_CLEANUP_BATCH`]; returns how many were
    /// removed. See [`cleanup_in_batches`](Self::cleanup_in_batches).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn cleanup(&self) -> Result<u64, StoreError> {
        self.cleanup_in_batches(DEFAULT_CLEANUP_BATCH, |_| {}).await
    }

    /// Deletes the sessions expired by now (the store's clock) in steps of at most `batch_size` rows (one
    /// statement and one guest call each, oldest first, skipping rows another transaction holds locked),
    /// calling `progress` after every step; returns how many were removed. The cutoff is fixed when the
    /// cleanup starts, so sessions expiring meanwhile are left for the next one and the loop always ends.
    /// This is the one cleanup loop: the CLI, `serve` and [`cleanup`](Self::cleanup) all run it.
    ///
    /// # Errors
    /// [`StoreError::InvalidData`] for a `batch_size` of 0 or over [`MAX_CLEANUP_BATCH`] (the guest's
    /// rule), [`StoreError::Database`] (the rows removed by earlier steps stay removed).
    pub async fn cleanup_in_batches(
        &self,
        batch_size: u32,
        mut progress: impl FnMut(CleanupProgress),
    ) -> Result<u64, StoreError> {
        let cutoff = self.now();
        let mut report = CleanupProgress {
            removed_in_batch: 0,
            removed_total: 0,
            batches: 0,
        };
        loop {
            let removed = self.cleanup_batch(cutoff, batch_size).await?;
            report.removed_in_batch = removed;
            report.removed_total = report.removed_total.saturating_add(removed);
            report.batches += 1;
            progress(report);
            if removed < u64::from(batch_size) {
                return Ok(report.removed_total);
            }
        }
    }

    /// One cleanup step: deletes at most `limit` sessions that expired at or before `cutoff` (oldest
    /// first, one statement); returns how many were removed.
    ///
    /// # Errors
    /// [`StoreError::InvalidData`] for `limit` 0 or over [`MAX_CLEANUP_BATCH`], [`StoreError::Database`].
    pub async fn cleanup_batch(&self, cutoff: SystemTime, limit: u32) -> Result<u64, StoreError> {
        let cutoff = micros_from_time(cutoff);
        call_guest!(self, "cleanup_batch", call_cleanup_batch(cutoff, limit))?
            .map_err(store_error_from_wit)
    }

    /// How many sessions expired at or before `cutoff` (one statement), e.g. the total for a progress
    /// bar over [`cleanup_in_batches`](Self::cleanup_in_batches).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn count_expired(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        let cutoff = micros_from_time(cutoff);
        call_guest!(self, "count_expired", call_count_expired(cutoff))?
            .map_err(store_error_from_wit)
    }

    /// The user's unexpired sessions, newest first, each named by its revocable handle.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn get_user_sessions(&self, user_id: i64) -> Result<Vec<UserSession>, StoreError> {
        call_guest!(self, "get_user_sessions", call_get_user_sessions(user_id))?
            .map_err(store_error_from_wit)?
            .into_iter()
            .map(user_session_from_wit)
            .collect()
    }

    /// Deletes every session of the user ("log out everywhere"); returns how many were removed.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn delete_user_sessions(&self, user_id: i64) -> Result<u64, StoreError> {
        call_guest!(
            self,
            "delete_user_sessions",
            call_delete_user_sessions(user_id)
        )?
        .map_err(store_error_from_wit)
    }

    /// Deletes every session of the user except the one with token `keep_id` ("log out my other
    /// devices"); returns how many were removed.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`] for a malformed `keep_id` (nothing is deleted), [`StoreError::Database`].
    pub async fn delete_user_sessions_except(
        &self,
        user_id: i64,
        keep_id: &str,
    ) -> Result<u64, StoreError> {
        call_guest!(
            self,
            "delete_user_sessions_except",
            call_delete_user_sessions_except(user_id, keep_id)
        )?
        .map_err(store_error_from_wit)
    }

    /// Deletes the user's session with this handle (from [`get_user_sessions`](Self::get_user_sessions))
    /// in one statement; returns whether it existed. A handle of another user's session deletes nothing.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`] for a malformed handle (no SQL sent), [`StoreError::Database`].
    pub async fn revoke_session(&self, user_id: i64, handle: &str) -> Result<bool, StoreError> {
        call_guest!(self, "revoke_session", call_revoke_session(user_id, handle))?
            .map_err(store_error_from_wit)
    }

    /// The `Set-Cookie` header value that stores the session's token (no `Max-Age` or `Expires` for a
    /// session that ends with the browser session).
    ///
    /// # Errors
    /// [`StoreError::InvalidId`].
    pub async fn cookie_header(&self, session: &Session) -> Result<String, StoreError> {
        let config = self.wit_config();
        let session = session_to_wit(session);
        call_guest!(self, "cookie_header", call_cookie_header(config, &session))?
            .map_err(store_error_from_wit)
    }

    /// The `Set-Cookie` header value that removes the session cookie.
    ///
    /// # Errors
    /// [`StoreError::Guest`] if the guest fails.
    pub async fn removal_cookie_header(&self) -> Result<String, StoreError> {
        let config = self.wit_config();
        call_guest!(
            self,
            "removal_cookie_header",
            call_removal_cookie_header(config)
        )
    }
}

/// `error` with `context` in front of its message.
fn prefixed(error: crate::SqlError, context: &str) -> crate::SqlError {
    use crate::SqlError as E;
    match error {
        E::ConnectionFailed(m) => E::ConnectionFailed(format!("{context}: {m}")),
        E::ConstraintViolation { sqlstate, message } => E::ConstraintViolation {
            sqlstate,
            message: format!("{context}: {message}"),
        },
        E::BadParameter(m) => E::BadParameter(format!("{context}: {m}")),
        E::QueryFailed(m) => E::QueryFailed(format!("{context}: {m}")),
        E::Refused(m) => E::Refused(format!("{context}: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_set_that_is_too_large_or_too_long_is_refused() {
        assert!(check_declared(&["SELECT 1".to_owned()]).is_ok());
        let many = vec!["SELECT 1".to_owned(); MAX_DECLARED_STATEMENTS + 1];
        assert!(matches!(
            check_declared(&many),
            Err(BuildError::Statements(_))
        ));
        let long = vec!["x".repeat(MAX_STATEMENT_BYTES + 1)];
        assert!(matches!(
            check_declared(&long),
            Err(BuildError::Statements(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_dir_others_can_write_to_is_refused_and_a_private_one_is_created_0700() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let private = root.path().join("cache");
        ensure_private_dir(&private).unwrap();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&shared).unwrap_err();
        assert!(matches!(err, BuildError::UnsafeCacheDir { .. }), "{err}");
        // A private directory below a world-writable parent without the sticky bit is refused too.
        let below = shared.join("cache");
        assert!(matches!(
            ensure_private_dir(&below),
            Err(BuildError::UnsafeCacheDir { .. })
        ));
    }
}
