//! The test harness: a fresh PostgreSQL database per test, migrated by the same code as the binary, and
//! used as the same least-privilege runtime role.
//!
//! The server is `DATABASE_URL` when set (its user must be able to create databases and roles: it is
//! the owner); otherwise a throwaway cluster started once per test process from the local PostgreSQL
//! binaries (and stopped when the process exits). Each test database is migrated as that owner and the
//! runtime role ([`RuntimeRole`], the library's own SQL, as the CLI applies it) is granted its row
//! privileges there; the store and the drivers connect as the runtime role. On a server that wants a
//! password, set `DATABASE_RUNTIME_PASSWORD`: the harness gives it to the runtime role and connects
//! with it.

pub mod failover;
pub mod pgbouncer;
mod support;

/// The private clusters the harness starts (e.g. `Cluster::throwaway_durable` for the pooler benchmark).
pub use embedded_pg;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use embedded_pg::Cluster;
use wasm_sessions::{
    PostgresDriver, PostgresOptions, PrepareFuture, QueryFuture, RuntimeRole, SessionStore,
    SqlDriver, SqlValue,
};

/// The runtime role every test database grants (the CLI's default role), with the password from
/// `DATABASE_RUNTIME_PASSWORD` when that is set.
#[must_use]
pub fn runtime_role() -> RuntimeRole {
    let role = RuntimeRole::default();
    match std::env::var("DATABASE_RUNTIME_PASSWORD") {
        Ok(password) if !password.is_empty() => role.with_password(password),
        _ => role,
    }
}

/// The server every test database is created on, as its owner: `DATABASE_URL`, or the throwaway
/// cluster.
#[must_use]
pub fn server_url() -> String {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                static CLUSTER: OnceLock<Cluster> = OnceLock::new();
                let cluster = CLUSTER.get_or_init(|| {
                    Cluster::throwaway().unwrap_or_else(|e| {
                        panic!("DATABASE_URL is not set and no throwaway cluster could start: {e}")
                    })
                });
                cluster.url("postgres")
            }
        })
        .clone()
}

/// `url` pointing at database `name` instead (URL or `key=value` form).
#[must_use]
pub fn with_database(url: &str, name: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let (scheme, rest) = url.split_at(scheme_end + 3);
        let (rest, query) = match rest.find('?') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        format!("{scheme}{authority}/{name}{query}")
    } else {
        format!("{url} dbname={name}")
    }
}

/// A database of its own for one test, dropped when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// The runtime role's connection URL: row privileges on `wasm_sessions.sessions` only. The drivers
    /// and stores of [`TestDb::driver`] and [`TestDb::store`] use it; so should a CLI's
    /// `--database-url`.
    pub url: String,
    /// The owner's connection URL (the migrations, `--owner-url`, checks that need more than rows).
    pub owner_url: String,
    name: String,
}

impl TestDb {
    /// Creates a fresh database, applies the migrations as the owner, and grants the runtime role its
    /// privileges there.
    ///
    /// # Panics
    /// When no server is reachable, or the migrations or grants fail: a test cannot run without them.
    pub async fn new() -> Self {
        let server = server_url();
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).expect("OS randomness");
        let name = format!(
            "wst_{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let admin = connect(&server).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let owner_url = with_database(&server, &name);
        PostgresDriver::connect(&owner_url, &PostgresOptions::default())
            .expect("valid URL")
            .migrate()
            .await
            .expect("migrations apply");
        let role = runtime_role();
        role.apply(&connect(&owner_url).await, &name)
            .await
            .unwrap_or_else(|e| panic!("granting the runtime role {}: {e}", role.name()));
        let url = role
            .runtime_url(&owner_url)
            .expect("the runtime URL derives from the owner's");
        TestDb {
            url,
            owner_url,
            name,
        }
    }

    /// A fresh pooled driver on this database, as the runtime role.
    #[must_use]
    pub fn driver(&self) -> PostgresDriver {
        PostgresDriver::connect(&self.url, &PostgresOptions::default()).expect("valid URL")
    }

    /// A session store (bundled component, default configuration) on this database, as the runtime role.
    pub async fn store(&self) -> SessionStore {
        SessionStore::builder(self.driver())
            .build()
            .await
            .expect("store builds")
    }

    /// A plain client on this database as the owner, for checking (and arranging) what the store wrote.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.owner_url).await
    }

    /// A plain client on this database as the runtime role, for checking what that role may do.
    pub async fn runtime_client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = server_url();
        let name = self.name.clone();
        // Async drop does not exist; drop the database from a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok((client, conn)) =
                        tokio_postgres::connect(&server, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// A plain tokio-postgres client.
///
/// # Panics
/// When the server is unreachable.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test server failed: {e}"));
    tokio::spawn(connection);
    client
}

/// The real [`PostgresDriver`], counting the statements sent through it (to prove round-trip counts and
/// that malformed input sends no SQL). Clones share the counter. Preparing a statement
/// ([`SqlDriver::prepare`], which runs nothing) is passed through uncounted.
#[derive(Clone, Debug)]
pub struct CountingDriver {
    inner: PostgresDriver,
    statements: Arc<AtomicUsize>,
}

impl CountingDriver {
    /// A counting driver on `db`.
    #[must_use]
    pub fn new(db: &TestDb) -> Self {
        Self {
            inner: db.driver(),
            statements: Arc::default(),
        }
    }

    /// The statements sent so far (since the last [`take`](Self::take)).
    #[must_use]
    pub fn count(&self) -> usize {
        self.statements.load(Ordering::SeqCst)
    }

    /// The statements sent since the last call, resetting the count.
    pub fn take(&self) -> usize {
        self.statements.swap(0, Ordering::SeqCst)
    }
}

impl SqlDriver for CountingDriver {
    fn query<'a>(&'a self, statement: &'a str, params: &'a [SqlValue]) -> QueryFuture<'a> {
        self.statements.fetch_add(1, Ordering::SeqCst);
        self.inner.query(statement, params)
    }

    fn prepare<'a>(&'a self, statement: &'a str) -> PrepareFuture<'a> {
        self.inner.prepare(statement)
    }
}
