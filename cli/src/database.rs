//! Choosing the database: the given URL, or the embedded PostgreSQL cluster in the data directory.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use embedded_pg::Cluster;
use wasm_sessions::{PostgresDriver, PostgresOptions};

/// Connects to `url` when given (no migration); otherwise starts or reuses the embedded cluster in
/// `data_dir`, says so on stderr, and applies the migrations.
///
/// # Errors
/// An invalid URL, a cluster that cannot start (e.g. no PostgreSQL binaries), or failed migrations.
pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<PostgresDriver> {
    if let Some(url) = url {
        tracing::debug!("using the database from --database-url / DATABASE_URL");
        return connect(url);
    }
    let dir = absolute(data_dir)?;
    let cluster = {
        let owned = dir.clone();
        tokio::task::spawn_blocking(move || Cluster::persistent(&owned))
            .await
            .context("the embedded PostgreSQL start-up task failed")?
            .with_context(|| format!("starting the embedded PostgreSQL in {}", dir.display()))?
    };
    eprintln!(
        "using the embedded PostgreSQL in {} (127.0.0.1:{}); set DATABASE_URL to use another server",
        cluster.data_dir().display(),
        cluster.port()
    );
    let driver = connect(&cluster.url("postgres"))?;
    migrate(&driver).await?;
    Ok(driver)
}

/// Applies the schema migrations (idempotent).
///
/// # Errors
/// No connection, or a failing migration.
pub async fn migrate(driver: &PostgresDriver) -> Result<()> {
    driver
        .migrate()
        .await
        .context("migrating the database schema")
}

/// Stops the embedded cluster in `data_dir`; returns its absolute path and whether it was running.
///
/// # Errors
/// No PostgreSQL binaries, or a failing `pg_ctl stop`.
pub async fn stop(data_dir: &Path) -> Result<(PathBuf, bool)> {
    let dir = absolute(data_dir)?;
    let stopped = {
        let owned = dir.clone();
        tokio::task::spawn_blocking(move || Cluster::stop(&owned))
            .await
            .context("the embedded PostgreSQL stop task failed")?
            .with_context(|| format!("stopping the embedded PostgreSQL in {}", dir.display()))?
    };
    Ok((dir, stopped))
}

/// A pooled driver for `url` (connections open lazily).
fn connect(url: &str) -> Result<PostgresDriver> {
    PostgresDriver::connect(url, &PostgresOptions::default()).context("opening the database")
}

/// `dir` made absolute against the current directory.
fn absolute(dir: &Path) -> Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))
}
