//! [`SessionStore`]: build the engine and component once, then serve many calls concurrently, each on a
//! guest instance of its own (a fresh one per call, or a warm one from a pool: see [`Isolation`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::Instrument as _;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Cache, CacheConfig, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};

use crate::bindings::exports::wasm_sessions::store::store::Config as WitConfig;
use crate::bindings::{SessionStore as GuestWorld, SessionStorePre};
use crate::convert::{
    config_from_wit, config_to_wit, micros_from_time, session_from_wit, session_to_wit,
    store_error_from_wit, user_session_from_wit,
};
use crate::driver::SqlDriver;
use crate::entropy::{EntropySource, OsEntropy};
use crate::error::{BuildError, StoreError};
use crate::host::HostState;
use crate::session::{Config, Session, UserSession};

/// The session component built into this library (the `guest/` crate compiled for `wasm32-wasip2`).
pub const BUNDLED_COMPONENT: &[u8] = include_bytes!(env!("WASM_SESSIONS_GUEST_COMPONENT"));

/// The largest linear memory a guest instance may grow to; a guest that allocates past it traps.
pub const GUEST_MEMORY_LIMIT: usize = 64 << 20;

/// The default fuel (roughly, WebAssembly instructions) one call may burn before it is stopped: about a
/// second of guest CPU, far above what any store operation needs (see `SessionStoreBuilder::fuel_per_call`).
pub const DEFAULT_FUEL_PER_CALL: u64 = 1_000_000_000;

/// How much fuel a running guest burns between yields to the async runtime, so a spinning guest
/// cannot hold a runtime thread until its fuel runs out.
const FUEL_YIELD_INTERVAL: u64 = 10_000_000;

type ConfigEdit = Box<dyn FnOnce(&mut Config) + Send>;

/// Rows one [`SessionStore::cleanup_in_batches`] step removes at most, unless told otherwise.
pub const DEFAULT_CLEANUP_BATCH: u32 = 1000;

/// How guest instances are used across calls.
///
/// Both modes give every call an instance of its own (never two calls at once on one instance), and both
/// drop an instance whose call trapped or failed inside wasmtime: such an instance is never used again.
/// They differ in what a call may find in the instance's memory: nothing ([`FreshInstancePerCall`]) or
/// whatever earlier, successful calls left in the guest's heap ([`ReuseInstances`]). The guest keeps no
/// state between calls by design, so the results are the same; the difference is how far a guest bug
/// could reach. Measured costs are in `BENCHMARKS.md`.
///
/// [`FreshInstancePerCall`]: Isolation::FreshInstancePerCall
/// [`ReuseInstances`]: Isolation::ReuseInstances
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Instantiate the component for every call and drop the instance afterwards: the strictest
    /// isolation, no memory is shared between calls. Costs one instantiation per call.
    FreshInstancePerCall,
    /// Keep up to `max_idle` instances whose last call succeeded and hand them to later calls; make a new
    /// one when none is idle. An instance whose call trapped is discarded. The default, with
    /// `max_idle` = [`Isolation::DEFAULT_MAX_IDLE`].
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
pub struct InstanceStats {
    /// Instances created since the store was built (including the builder's own calls).
    pub instantiated: u64,
    /// Instances dropped because their call trapped or failed inside wasmtime.
    pub discarded: u64,
    /// Instances idle in the pool right now (always 0 with [`Isolation::FreshInstancePerCall`]).
    pub idle: usize,
}

/// One cleanup step as reported to the callback of [`SessionStore::cleanup_in_batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    component: Option<Vec<u8>>,
    config: Option<Config>,
    edits: Vec<ConfigEdit>,
    max_instances: u32,
    fuel_per_call: u64,
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

    /// The fuel one call may burn (default [`DEFAULT_FUEL_PER_CALL`]); a call that runs out is stopped
    /// with [`StoreError::Guest`] and the store keeps serving.
    #[must_use]
    pub fn fuel_per_call(mut self, fuel: u64) -> Self {
        self.fuel_per_call = fuel;
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
    /// bytes, the wasmtime version and the engine settings), so a later start skips compiling. A
    /// relative `dir` is taken from the current directory; it is created when missing. Without this the
    /// component is compiled at every build.
    #[must_use]
    pub fn compilation_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Compiles the component (or loads it from the [compilation cache](Self::compilation_cache)),
    /// links the imports, and checks the configuration with the guest.
    ///
    /// # Errors
    /// [`BuildError::Engine`] (also for a cache directory that cannot be created),
    /// [`BuildError::Component`] (not a valid `session-store` component), or [`BuildError::Config`]
    /// naming the configuration rule that failed.
    pub async fn build(self) -> Result<SessionStore, BuildError> {
        let cache = match &self.cache_dir {
            Some(dir) => Some(compilation_cache(dir)?),
            None => None,
        };
        let engine = engine(self.max_instances, cache).map_err(BuildError::engine)?;
        let bytes = self.component.as_deref().unwrap_or(BUNDLED_COMPONENT);
        let component = Component::new(&engine, bytes).map_err(BuildError::component)?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(BuildError::component)?;
        GuestWorld::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(BuildError::component)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(SessionStorePre::new)
            .map_err(BuildError::component)?;
        let mut store = SessionStore {
            inner: Arc::new(Inner {
                engine,
                pre,
                driver: self.driver,
                entropy: self.entropy,
                fuel_per_call: self.fuel_per_call,
                config: None,
                wit_config: None,
                pool: InstancePool::new(self.isolation),
            }),
        };
        let mut config = match self.config {
            Some(config) => config,
            None => store.default_config().await.map_err(BuildError::Config)?,
        };
        for edit in self.edits {
            edit(&mut config);
        }
        store
            .validate_config(&config)
            .await
            .map_err(BuildError::Config)?;
        let inner =
            Arc::get_mut(&mut store.inner).expect("the store is not shared before build returns");
        inner.wit_config = Some(config_to_wit(&config));
        inner.config = Some(config);
        Ok(store)
    }
}

/// wasmtime's compilation cache in `dir` (made absolute; created when missing).
fn compilation_cache(dir: &std::path::Path) -> Result<Cache, BuildError> {
    let dir = std::path::absolute(dir).map_err(|e| BuildError::Engine(Box::new(e)))?;
    let mut config = CacheConfig::new();
    config.with_directory(dir);
    Cache::new(config).map_err(BuildError::engine)
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
        // A per-call budget of guest instructions: a guest that loops forever is stopped.
        .consume_fuel(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
        .cache(cache);
    Engine::new(&config)
}

struct Inner {
    engine: Engine,
    pre: SessionStorePre<HostState>,
    driver: Arc<dyn SqlDriver>,
    entropy: Arc<dyn EntropySource>,
    fuel_per_call: u64,
    /// Set once by the builder; `None` only while the builder asks the guest for its defaults.
    config: Option<Config>,
    /// `config` as the guest takes it, converted once instead of on every call.
    wit_config: Option<WitConfig>,
    pool: InstancePool,
}

/// A guest instance with the wasmtime store it lives in.
struct Instance {
    store: Store<HostState>,
    guest: GuestWorld,
}

/// Where calls get their instance: idle warm ones (in [`Isolation::ReuseInstances`]) or a new one.
struct InstancePool {
    max_idle: usize,
    idle: Mutex<Vec<Instance>>,
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
/// or warm as chosen by [`SessionStoreBuilder::isolation`]; a guest that traps fails only its own call,
/// and its instance is dropped.
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

/// Calls one export of the `store` interface on an instance of its own, inside a tracing span. The
/// instance goes back to the pool only when the call completed without a trap; a cancelled call drops
/// it with its future. Session data and tokens are never recorded in the span.
macro_rules! call_guest {
    ($self:ident, $op:literal, $method:ident ( $($arg:expr),* )) => {
        async {
            let mut instance = $self.instance().await?;
            let outcome = instance
                .guest
                .wasm_sessions_store_store()
                .$method(&mut instance.store, $($arg),*)
                .await;
            match outcome {
                Ok(value) => {
                    $self.inner.pool.put_back(instance);
                    Ok(value)
                }
                Err(trap) => {
                    $self.inner.pool.discarded.fetch_add(1, Ordering::Relaxed);
                    Err(StoreError::guest(trap))
                }
            }
        }
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
            component: None,
            config: None,
            edits: Vec::new(),
            max_instances: 1000,
            fuel_per_call: DEFAULT_FUEL_PER_CALL,
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
    fn wit_config(&self) -> &WitConfig {
        self.inner
            .wit_config
            .as_ref()
            .expect("the builder always sets the configuration")
    }

    /// Counters of the guest instances: created, discarded after a trap, idle now.
    #[must_use]
    pub fn instance_stats(&self) -> InstanceStats {
        let pool = &self.inner.pool;
        InstanceStats {
            instantiated: pool.instantiated.load(Ordering::Relaxed),
            discarded: pool.discarded.load(Ordering::Relaxed),
            idle: pool.idle.lock().unwrap_or_else(|e| e.into_inner()).len(),
        }
    }

    /// An idle warm instance, or a new one.
    async fn instance(&self) -> Result<Instance, StoreError> {
        if let Some(mut instance) = self.inner.pool.take_idle() {
            // Every call gets the full fuel budget, warm instance or not.
            instance
                .store
                .set_fuel(self.inner.fuel_per_call)
                .map_err(StoreError::guest)?;
            return Ok(instance);
        }
        let state = HostState::new(
            self.inner.driver.clone(),
            self.inner.entropy.clone(),
            GUEST_MEMORY_LIMIT,
        );
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        store
            .set_fuel(self.inner.fuel_per_call)
            .and_then(|()| store.fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL)))
            .map_err(StoreError::guest)?;
        let guest = self
            .inner
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(StoreError::guest)?;
        self.inner.pool.instantiated.fetch_add(1, Ordering::Relaxed);
        Ok(Instance { store, guest })
    }

    async fn default_config(&self) -> Result<Config, StoreError> {
        call_guest!(self, "default_config", call_default_config()).map(config_from_wit)
    }

    /// Checks `config` with the guest's rules.
    ///
    /// # Errors
    /// [`StoreError::InvalidConfig`] naming the first rule broken.
    pub async fn validate_config(&self, config: &Config) -> Result<(), StoreError> {
        call_guest!(
            self,
            "validate_config",
            call_validate_config(&config_to_wit(config))
        )?
        .map_err(store_error_from_wit)
    }

    /// A fresh token: 32 bytes from the entropy source as 64 lower-case hex characters.
    ///
    /// # Errors
    /// [`StoreError::Guest`] if the guest or the entropy source fails.
    pub async fn generate_session_id(&self) -> Result<String, StoreError> {
        call_guest!(self, "generate_session_id", call_generate_session_id())
    }

    /// A new, unsaved session with a fresh token that expires `max_age` seconds from now.
    ///
    /// # Errors
    /// [`StoreError::InvalidData`] for a non-positive or too-long `max_age`.
    pub async fn new_session(&self, max_age: i64) -> Result<Session, StoreError> {
        let config = self.wit_config();
        call_guest!(self, "new_session", call_new_session(config, max_age))?
            .map(session_from_wit)
            .map_err(store_error_from_wit)
    }

    /// Whether the session's expiry time has passed (by the guest's clock).
    ///
    /// # Errors
    /// [`StoreError::Guest`] if the guest fails.
    pub async fn is_expired(&self, session: &Session) -> Result<bool, StoreError> {
        call_guest!(
            self,
            "is_expired",
            call_is_expired(&session_to_wit(session))
        )
    }

    /// Gives the session a fresh token (do this at login). A saved session is moved to the new token and
    /// written in one statement: afterwards the old token does not load and the new one does.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the saved session was deleted meanwhile, [`StoreError::Expired`],
    /// [`StoreError::InvalidData`], [`StoreError::Database`]. On error `session` is unchanged.
    pub async fn regenerate_id(&self, session: &mut Session) -> Result<(), StoreError> {
        let config = self.wit_config();
        let renewed = call_guest!(
            self,
            "regenerate_id",
            call_regenerate_id(config, &session_to_wit(session))
        )?
        .map_err(store_error_from_wit)?;
        *session = session_from_wit(renewed);
        Ok(())
    }

    /// Inserts or updates the session in one round trip, then marks it saved.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`], [`StoreError::InvalidData`] (NUL characters, over the size limit),
    /// [`StoreError::Expired`], [`StoreError::Database`]. On error nothing is written and `session` is
    /// unchanged.
    pub async fn save(&self, session: &mut Session) -> Result<(), StoreError> {
        let config = self.wit_config();
        let saved = call_guest!(self, "save", call_save(config, &session_to_wit(session)))?
            .map_err(store_error_from_wit)?;
        *session = session_from_wit(saved);
        Ok(())
    }

    /// Loads the session with token `id` in one round trip.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`] (no SQL sent), [`StoreError::NotFound`], [`StoreError::Expired`] (no data
    /// returned), [`StoreError::Database`].
    pub async fn load(&self, id: &str) -> Result<Session, StoreError> {
        let config = self.wit_config();
        call_guest!(self, "load", call_load(config, id))?
            .map(session_from_wit)
            .map_err(store_error_from_wit)
    }

    /// Deletes the session with token `id`; returns whether it existed.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`], [`StoreError::Database`].
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        call_guest!(self, "delete", call_delete(id))?.map_err(store_error_from_wit)
    }

    /// Deletes expired sessions in bounded batches; returns how many were removed. One guest call; see
    /// [`cleanup_in_batches`](Self::cleanup_in_batches) for progress reports.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn cleanup(&self) -> Result<u64, StoreError> {
        call_guest!(self, "cleanup", call_cleanup())?.map_err(store_error_from_wit)
    }

    /// Deletes the sessions expired by now in steps of at most `batch_size` rows (one statement and one
    /// guest call each, oldest first, skipping rows another transaction holds locked), calling
    /// `progress` after every step; returns how many were removed. The cutoff is fixed when the cleanup
    /// starts, so sessions expiring meanwhile are left for the next one and the loop always ends.
    ///
    /// # Errors
    /// [`StoreError::InvalidData`] for a `batch_size` of 0 or over 100000, [`StoreError::Database`]
    /// (the rows removed by earlier steps stay removed).
    pub async fn cleanup_in_batches(
        &self,
        batch_size: u32,
        mut progress: impl FnMut(CleanupProgress),
    ) -> Result<u64, StoreError> {
        if batch_size == 0 {
            return Err(StoreError::InvalidData(
                "a cleanup batch must remove at least one row".into(),
            ));
        }
        let cutoff = SystemTime::now();
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
    /// [`StoreError::InvalidData`] for `limit` over 100000, [`StoreError::Database`].
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
            .map(|list| list.into_iter().map(user_session_from_wit).collect())
            .map_err(store_error_from_wit)
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

    /// Deletes one session by the handle from [`get_user_sessions`](Self::get_user_sessions).
    ///
    /// # Errors
    /// [`StoreError::InvalidId`] for a malformed handle, [`StoreError::Database`].
    pub async fn revoke_session(&self, handle: &str) -> Result<bool, StoreError> {
        call_guest!(self, "revoke_session", call_revoke_session(handle))?
            .map_err(store_error_from_wit)
    }

    /// The `Set-Cookie` header value that stores the session's token. `request_is_secure` (the request
    /// came over HTTPS) decides `Secure` when the configuration leaves it unset.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`], or [`StoreError::InvalidConfig`] for `SameSite=None` on a plain-HTTP
    /// request with `Secure` unset.
    pub async fn set_cookie_header(
        &self,
        session: &Session,
        request_is_secure: bool,
    ) -> Result<String, StoreError> {
        let config = self.wit_config();
        call_guest!(
            self,
            "set_cookie_header",
            call_set_cookie_header(config, &session_to_wit(session), request_is_secure)
        )?
        .map_err(store_error_from_wit)
    }

    /// The `Set-Cookie` header value that removes the session cookie.
    ///
    /// # Errors
    /// [`StoreError::InvalidConfig`] as for [`set_cookie_header`](Self::set_cookie_header).
    pub async fn removal_cookie_header(
        &self,
        request_is_secure: bool,
    ) -> Result<String, StoreError> {
        let config = self.wit_config();
        call_guest!(
            self,
            "removal_cookie_header",
            call_removal_cookie_header(config, request_is_secure)
        )?
        .map_err(store_error_from_wit)
    }

    /// The session token in a `Cookie` request header, if there is a well-formed one.
    ///
    /// # Errors
    /// [`StoreError::Guest`] if the guest fails.
    pub async fn session_id_from_cookie_header(
        &self,
        header: &str,
    ) -> Result<Option<String>, StoreError> {
        let config = self.wit_config();
        call_guest!(
            self,
            "session_id_from_cookie_header",
            call_session_id_from_cookie_header(config, header)
        )
    }
}
