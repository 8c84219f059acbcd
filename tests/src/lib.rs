//! The test harness: a fresh PostgreSQL database per test, migrated by the same code as the binary.
//!
//! The server is `DATABASE_URL` when set; otherwise a throwaway cluster started once per test process
//! from the local PostgreSQL binaries (and stopped when the process exits).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use embedded_pg::Cluster;
use wasm_sessions::{
    PostgresDriver, PostgresOptions, QueryFuture, SessionStore, SqlDriver, SqlValue,
};

/// The server every test database is created on: `DATABASE_URL`, or the throwaway cluster.
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
    /// The database's connection URL.
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates a fresh database and applies the migrations.
    ///
    /// # Panics
    /// When no server is reachable: a test cannot run without one.
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
        let db = TestDb {
            url: with_database(&server, &name),
            name,
        };
        db.driver().migrate().await.expect("migrations apply");
        db
    }

    /// A fresh pooled driver on this database.
    #[must_use]
    pub fn driver(&self) -> PostgresDriver {
        PostgresDriver::connect(&self.url, &PostgresOptions::default()).expect("valid URL")
    }

    /// A session store (bundled component, default configuration) on this database.
    pub async fn store(&self) -> SessionStore {
        SessionStore::builder(self.driver())
            .build()
            .await
            .expect("store builds")
    }

    /// A plain client on this database, for checking what the store wrote.
    pub async fn client(&self) -> tokio_postgres::Client {
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
/// that malformed input sends no SQL). Clones share the counter.
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
}
