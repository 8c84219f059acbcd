//! Choosing the database: a server given by URL (the runtime role's, and the owner's for migrations), or
//! the embedded PostgreSQL cluster in the data directory.
//!
//! Two roles, two URLs: `--database-url` / `DATABASE_URL` is the **runtime** role's (row privileges on
//! `wasm_sessions.sessions` only) and every store connection uses it; `--owner-url` /
//! `DATABASE_OWNER_URL` (default: the database URL) is the schema's **owner**'s, used by `migrate` and
//! `grant-runtime-role --apply`. Without either, the embedded cluster is started (or reused), migrated as
//! its owner over its private Unix socket, the runtime role's grants are applied, and the store connects
//! as the runtime role.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use embedded_pg::Cluster;
use wasm_sessions::{DEFAULT_RUNTIME_ROLE, PostgresDriver, PostgresOptions, RuntimeRole};

/// The database of the embedded cluster the CLI uses.
pub const EMBEDDED_DATABASE: &str = "postgres";

/// The variable (and flag) naming the runtime role's URL, for messages.
const DATABASE_URL: &str = "DATABASE_URL";

/// Where the commands' database is.
#[derive(Debug, Clone)]
pub enum Target {
    /// A server the user brings.
    Server {
        /// The runtime role's URL (`--database-url` / `DATABASE_URL`); `None` when only the owner's is
        /// given (enough for `migrate` and `grant-runtime-role`).
        runtime_url: Option<String>,
        /// The owner's URL (`--owner-url` / `DATABASE_OWNER_URL`, else the runtime URL).
        owner_url: String,
        /// Which variable the owner's URL came from, for messages.
        owner_source: &'static str,
    },
    /// The embedded cluster in this data directory.
    Embedded {
        /// The data directory (as given; made absolute when used).
        data_dir: PathBuf,
    },
}

impl Target {
    /// The target the flags and variables name: a server when either URL is given, else the embedded
    /// cluster in `data_dir`.
    ///
    /// # Errors
    /// A URL that is given but empty (an empty `DATABASE_URL` is a mistake, not a request for the
    /// embedded cluster: unset it for that).
    pub fn new(
        database_url: Option<String>,
        owner_url: Option<String>,
        data_dir: &Path,
    ) -> Result<Self> {
        let given = |url: Option<String>, name: &str, flag: &str| -> Result<Option<String>> {
            match url {
                Some(url) if url.trim().is_empty() => bail!(
                    "{name} (or {flag}) is set but empty; give a PostgreSQL connection URL, or unset \
                     it to use the embedded PostgreSQL"
                ),
                other => Ok(other.map(|u| u.trim().to_owned())),
            }
        };
        let runtime_url = given(database_url, DATABASE_URL, "--database-url")?;
        let owner_url = given(owner_url, "DATABASE_OWNER_URL", "--owner-url")?;
        Ok(match (runtime_url, owner_url) {
            (None, None) => Self::Embedded {
                data_dir: data_dir.to_owned(),
            },
            (runtime_url, Some(owner_url)) => Self::Server {
                runtime_url,
                owner_url,
                owner_source: "DATABASE_OWNER_URL",
            },
            (Some(runtime_url), None) => Self::Server {
                owner_url: runtime_url.clone(),
                runtime_url: Some(runtime_url),
                owner_source: DATABASE_URL,
            },
        })
    }
}

/// The schema owner's connection: a pool for the migrations and the URL for a plain client.
#[derive(Debug)]
pub struct Owner {
    /// A pool on the owner's URL (for [`migrate`]).
    pub driver: PostgresDriver,
    /// The owner's URL.
    url: String,
    /// The database it connects to (where grants apply).
    pub database: String,
    /// Which variable to check when it fails (or the embedded cluster's description).
    source: String,
}

impl Owner {
    /// Where the owner's URL came from (`DATABASE_OWNER_URL`, `DATABASE_URL`, or the embedded cluster),
    /// for messages.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A plain client of the owner (for [`RuntimeRole::apply`]).
    ///
    /// # Errors
    /// The server is unreachable or refuses the owner, with a message naming the server.
    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        client(&self.url, &self.source).await
    }
}

/// Connects the commands to their database as the runtime role and returns its pool.
///
/// - A server: checks that the runtime URL connects (so that a wrong URL fails with a message naming
///   the server, host and port, and `DATABASE_URL`), without migrating (that is `migrate`'s job).
/// - The embedded cluster: starts or reuses it (saying so on stderr), migrates it as the owner, applies
///   the runtime role's grants, and connects as the runtime role over the private Unix socket.
///
/// # Errors
/// An invalid or unreachable URL, only an owner URL, a cluster that cannot start (e.g. no PostgreSQL
/// binaries), failed migrations or grants.
pub async fn open(target: &Target) -> Result<PostgresDriver> {
    open_with(target, &PostgresOptions::default()).await
}

/// [`open`] with the runtime role's pool built with `options` (e.g. `--statement-mode`).
///
/// # Errors
/// As [`open`].
pub async fn open_with(target: &Target, options: &PostgresOptions) -> Result<PostgresDriver> {
    match target {
        Target::Server {
            runtime_url: Some(url),
            ..
        } => {
            tracing::debug!("using the database from --database-url / DATABASE_URL");
            client(url, DATABASE_URL).await?;
            connect_with(url, DATABASE_URL, options)
        }
        Target::Server {
            runtime_url: None, ..
        } => bail!(
            "DATABASE_OWNER_URL (--owner-url) is set but DATABASE_URL (--database-url) is not: the \
             commands connect as the runtime role; set DATABASE_URL to its URL (see `wasm-sessions \
             grant-runtime-role`)"
        ),
        Target::Embedded { data_dir } => {
            let cluster = start_embedded(data_dir).await?;
            let owner = embedded_owner(&cluster)?;
            migrate(&owner.driver).await?;
            let role = RuntimeRole::default();
            grant(&owner, &role).await?;
            connect_with(
                &cluster.url_as(role.name(), EMBEDDED_DATABASE),
                &embedded_source(&cluster),
                options,
            )
        }
    }
}

/// The schema owner's connection: the owner's URL of a server (checked to connect), or the embedded
/// cluster's superuser over its socket (the cluster started or reused).
///
/// # Errors
/// An invalid or unreachable URL, or a cluster that cannot start.
pub async fn open_owner(target: &Target) -> Result<Owner> {
    match target {
        Target::Server {
            owner_url,
            owner_source,
            ..
        } => {
            client(owner_url, owner_source).await?;
            let database = owner_database(target)?;
            Ok(Owner {
                driver: connect(owner_url, owner_source)?,
                url: owner_url.clone(),
                database,
                source: (*owner_source).to_owned(),
            })
        }
        Target::Embedded { data_dir } => {
            let cluster = start_embedded(data_dir).await?;
            embedded_owner(&cluster)
        }
    }
}

/// The database the owner's grants apply to, without connecting: the owner URL's (by default, as for the
/// server, the user's name), or the embedded cluster's [`EMBEDDED_DATABASE`].
///
/// # Errors
/// An owner URL that does not parse.
pub fn owner_database(target: &Target) -> Result<String> {
    let Target::Server {
        owner_url,
        owner_source,
        ..
    } = target
    else {
        return Ok(EMBEDDED_DATABASE.to_owned());
    };
    let config: tokio_postgres::Config = owner_url
        .parse()
        .map_err(|e| anyhow!("{owner_source} is not a valid PostgreSQL URL: {e}"))?;
    Ok(config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres")
        .to_owned())
}

/// Applies the schema migrations (idempotent). `driver` must connect as the schema's owner.
///
/// # Errors
/// No connection, or a failing migration.
pub async fn migrate(driver: &PostgresDriver) -> Result<()> {
    driver
        .migrate()
        .await
        .context("migrating the database schema")
}

/// Applies `role`'s grants on the owner's database.
///
/// # Errors
/// No connection, the schema is missing (migrate first), or the owner may not grant.
pub async fn grant(owner: &Owner, role: &RuntimeRole) -> Result<()> {
    let client = owner.client().await?;
    role.apply(&client, &owner.database).await.map_err(|error| {
        let hint = match error.code().map(tokio_postgres::error::SqlState::code) {
            Some("3F000" | "42P01") => {
                " (the schema is missing: run `wasm-sessions migrate` first)"
            }
            Some("42501") => " (the owner's role may not create roles or grant on this database)",
            _ => "",
        };
        anyhow!(
            "applying the grants of the runtime role {} on database {}: {}{hint}",
            role.name(),
            owner.database,
            db_message(&error)
        )
    })
}

/// The runtime role the flags name: `--role`, else the user of the runtime URL when it differs from the
/// owner's, else [`DEFAULT_RUNTIME_ROLE`]; with the runtime URL's password when that URL logs in as it.
///
/// # Errors
/// A runtime URL whose user is not a valid role name (give `--role`), or that does not parse.
pub fn runtime_role(target: &Target, role: Option<&str>) -> Result<RuntimeRole> {
    let Target::Server {
        runtime_url,
        owner_url,
        ..
    } = target
    else {
        return Ok(match role {
            Some(name) => RuntimeRole::new(name)?,
            None => RuntimeRole::default(),
        });
    };
    let runtime = runtime_url
        .as_deref()
        .map(|url| {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| anyhow!("{DATABASE_URL} is not a valid PostgreSQL URL: {e}"))
        })
        .transpose()?;
    let runtime_user = runtime.as_ref().and_then(|c| c.get_user());
    let owner_user = owner_url
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|c| c.get_user().map(str::to_owned));
    let name = match (role, runtime_user) {
        (Some(name), _) => name.to_owned(),
        (None, Some(user)) if Some(user) != owner_user.as_deref() => user.to_owned(),
        _ => DEFAULT_RUNTIME_ROLE.to_owned(),
    };
    let mut chosen = RuntimeRole::new(&name).with_context(|| {
        format!("the runtime role is the user of {DATABASE_URL}; give --role to choose another")
    })?;
    let password = runtime
        .as_ref()
        .filter(|c| c.get_user() == Some(name.as_str()))
        .and_then(|c| c.get_password());
    if let Some(password) = password {
        let password = String::from_utf8(password.to_vec())
            .map_err(|_| anyhow!("the password in {DATABASE_URL} is not UTF-8"))?;
        chosen = chosen.with_password(password);
    }
    Ok(chosen)
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

/// Starts or reuses the embedded cluster in `data_dir` and says so on stderr.
async fn start_embedded(data_dir: &Path) -> Result<Cluster> {
    let dir = absolute(data_dir)?;
    let cluster = {
        let owned = dir.clone();
        tokio::task::spawn_blocking(move || Cluster::persistent(&owned))
            .await
            .context("the embedded PostgreSQL start-up task failed")?
            .with_context(|| format!("starting the embedded PostgreSQL in {}", dir.display()))?
    };
    eprintln!(
        "using the embedded PostgreSQL in {} (no TCP listener; its Unix socket is in {}); set \
         DATABASE_URL to use another server",
        cluster.data_dir().display(),
        cluster.socket_dir().display()
    );
    Ok(cluster)
}

/// The embedded cluster's superuser on [`EMBEDDED_DATABASE`], over the socket.
fn embedded_owner(cluster: &Cluster) -> Result<Owner> {
    let url = cluster.owner_url(EMBEDDED_DATABASE);
    let source = embedded_source(cluster);
    Ok(Owner {
        driver: connect(&url, &source)?,
        url,
        database: EMBEDDED_DATABASE.to_owned(),
        source,
    })
}

/// What to check when the embedded cluster cannot be reached.
fn embedded_source(cluster: &Cluster) -> String {
    format!(
        "the embedded PostgreSQL in {} (its log: postgres.log there)",
        cluster.data_dir().display()
    )
}

/// A pooled driver for `url` (connections open lazily).
fn connect(url: &str, source: &str) -> Result<PostgresDriver> {
    connect_with(url, source, &PostgresOptions::default())
}

/// [`connect`] with `options`.
fn connect_with(url: &str, source: &str, options: &PostgresOptions) -> Result<PostgresDriver> {
    PostgresDriver::connect(url, options)
        .with_context(|| format!("opening the database of {source}"))
}

/// One connection to `url`, its connection task spawned; a failure names the server and `source`.
async fn client(url: &str, source: &str) -> Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow!("{source} is not a valid PostgreSQL URL: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(PostgresOptions::default().connect_timeout);
    }
    match config.connect(tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "a CLI connection ended with an error");
                }
            });
            Ok(client)
        }
        // With several hosts tokio-postgres tries each in turn and reports the last one's error.
        Err(error) => Err(anyhow!(
            "could not connect to PostgreSQL at {} ({}{}); check {source}",
            servers(&config),
            if config.get_hosts().len() > 1 {
                "the last one: "
            } else {
                ""
            },
            cause(&error)
        )),
    }
}

/// The servers a configuration names: `host:port` (`[v6]:port`), or the socket path
/// (`dir/.s.PGSQL.port`), comma-separated.
fn servers(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let port = |i: usize| match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(5432),
    };
    if config.get_hosts().is_empty() {
        return "(no host given)".to_owned();
    }
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", port(i)),
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            Host::Unix(dir) => dir
                .join(format!(".s.PGSQL.{}", port(i)))
                .display()
                .to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a connection failed, in a few words: the server's message, or the I/O error's kind.
fn cause(error: &tokio_postgres::Error) -> String {
    use std::io::ErrorKind;
    if error.as_db_error().is_some() {
        return db_message(error);
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                // tokio-postgres's own refusal of a server `target_session_attrs` rules out ("database
                // does not allow writes"): its message, not the kind's.
                ErrorKind::PermissionDenied if io.raw_os_error().is_none() => io.to_string(),
                ErrorKind::NotFound => "no server socket there".to_owned(),
                kind @ (ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::TimedOut
                | ErrorKind::PermissionDenied
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable) => kind.to_string(),
                _ => io.to_string(),
            };
        }
        source = inner.source();
    }
    error.to_string()
}

/// A database error's message with its SQLSTATE, or the error as displayed.
fn db_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// `dir` made absolute against the current directory.
fn absolute(dir: &Path) -> Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_url_is_an_error_not_the_embedded_cluster() {
        let dir = Path::new("data");
        for (db, owner) in [
            (Some(""), None),
            (Some("  "), None),
            (None, Some("")),
            (Some("postgres://h/db"), Some("")),
        ] {
            let error = Target::new(db.map(Into::into), owner.map(Into::into), dir).unwrap_err();
            assert!(error.to_string().contains("empty"), "{error}");
        }
        assert!(matches!(
            Target::new(None, None, dir).unwrap(),
            Target::Embedded { .. }
        ));
        let Target::Server {
            runtime_url,
            owner_url,
            owner_source,
        } = Target::new(Some("postgres://rt@h/db".into()), None, dir).unwrap()
        else {
            panic!("a server");
        };
        assert_eq!(runtime_url.as_deref(), Some("postgres://rt@h/db"));
        assert_eq!(owner_url, "postgres://rt@h/db");
        assert_eq!(owner_source, "DATABASE_URL");
    }

    #[test]
    fn the_runtime_role_follows_the_database_url() {
        let server = |db: &str, owner: &str| {
            Target::new(Some(db.into()), Some(owner.into()), Path::new("d")).unwrap()
        };
        let role = runtime_role(
            &server("postgres://app_rt:pw@h/db", "postgres://admin@h/db"),
            None,
        )
        .unwrap();
        assert_eq!(role.name(), "app_rt");
        assert_eq!(role.password(), Some("pw"));

        let same =
            Target::new(Some("postgres://admin:x@h/db".into()), None, Path::new("d")).unwrap();
        let role = runtime_role(&same, None).unwrap();
        assert_eq!(role.name(), DEFAULT_RUNTIME_ROLE);
        assert_eq!(role.password(), None);

        let role = runtime_role(
            &server("postgres://app_rt:pw@h/db", "postgres://admin@h/db"),
            Some("other"),
        )
        .unwrap();
        assert_eq!((role.name(), role.password()), ("other", None));

        assert!(
            runtime_role(
                &server("postgres://Bad-User@h/db", "postgres://a@h/db"),
                None
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_server_and_the_variable() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = client(&format!("postgres://u@127.0.0.1:{port}/db"), "DATABASE_URL")
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "could not connect to PostgreSQL at 127.0.0.1:{port} (connection refused); check \
                 DATABASE_URL"
            )
        );
        // Several hosts (failover): all are named, the cause is the last one's.
        let error = client(
            &format!(
                "postgres://u@127.0.0.1:{port},127.0.0.1:{port}/db?target_session_attrs=read-write"
            ),
            "DATABASE_URL",
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "could not connect to PostgreSQL at 127.0.0.1:{port}, 127.0.0.1:{port} (the last one: \
                 connection refused); check DATABASE_URL"
            )
        );
        let error = client("host=/nonexistent port=5 user=u", "DATABASE_URL")
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("at /nonexistent/.s.PGSQL.5 (no server socket there)"),
            "{error}"
        );
    }
}
