//! PgBouncer in transaction pooling mode in front of a PostgreSQL server, for the tests and the pooler
//! benchmark: Debian's `pgbouncer` (installed with apt-get when missing and this process is root), run
//! as [`embedded_pg::UNPRIVILEGED_USER`] when this process is root (PgBouncer refuses root), listening on
//! a free port of 127.0.0.1, every database of the server behind it. In transaction mode a server
//! connection serves one client's transaction and then the next client's: named prepared statements do
//! not survive from one transaction to the next, so a client must use
//! [`StatementMode::Unnamed`](wasm_sessions::StatementMode::Unnamed).
//!
//! Dropping the [`PgBouncer`] kills it and removes its directory; [`PgBouncer::shared`] lives until this
//! process exits (a watchdog then stops it).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{self, Scratch};

/// A running PgBouncer.
pub struct PgBouncer {
    port: u16,
    scratch: Scratch,
}

impl std::fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBouncer")
            .field("port", &self.port)
            .field("dir", &self.scratch.path())
            .finish()
    }
}

/// Where Debian installs PgBouncer (`/usr/sbin` is not on every user's `PATH`).
fn binary() -> Option<PathBuf> {
    support::on_path("pgbouncer").or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/pgbouncer");
        sbin.is_file().then_some(sbin)
    })
}

impl PgBouncer {
    /// Starts PgBouncer with `pool_mode = transaction` in front of the server `server_url` names (its
    /// first host and port; every database), with `pool_size` server connections per database and
    /// user. `users` are the roles clients may connect as, each with the password PgBouncer logs in to
    /// the server with (`None`: the server trusts it); clients themselves are trusted (127.0.0.1 only).
    ///
    /// # Panics
    /// When PgBouncer is missing (and cannot be installed) or does not listen within a minute.
    #[must_use]
    pub fn start(server_url: &str, users: &[(&str, Option<&str>)], pool_size: u32) -> Self {
        support::ensure_packages("the pooler test", &["pgbouncer"], || binary().is_some());
        let pgbouncer = binary().expect("pgbouncer is installed");
        let config: tokio_postgres::Config = server_url.parse().expect("a valid server URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(dir)) => dir.display().to_string(),
            None => "127.0.0.1".to_owned(),
        };
        let server_port = config.get_ports().first().copied().unwrap_or(5432);
        let mut scratch = Scratch::new("wasm-sessions-pgbouncer");
        let dir = scratch.path().to_owned();
        let port = support::free_port();
        let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
        let userlist: String = users
            .iter()
            .map(|(name, password)| format!("{} {}\n", quote(name), quote(password.unwrap_or(""))))
            .collect();
        let ini = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {userlist}\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 2000\n\
             ignore_startup_parameters = extra_float_digits\n",
            userlist = dir.join("userlist.txt").display(),
        );
        // Written by the user PgBouncer runs as (the directory is its, mode 0700).
        for (name, text) in [("userlist.txt", userlist), ("pgbouncer.ini", ini)] {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            if let Some(user) = support::run_as() {
                let status = std::process::Command::new("chown")
                    .arg(format!("{user}:{user}"))
                    .arg(&path)
                    .status()
                    .expect("running chown");
                assert!(status.success(), "chown {}", path.display());
            }
        }
        let mut command = scratch.command(&pgbouncer, &[("PATH", "/usr/bin:/bin".to_owned())]);
        command.arg(dir.join("pgbouncer.ini"));
        scratch.spawn("pgbouncer", command);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "PgBouncer did not listen on 127.0.0.1:{port} within a minute:\n{}",
                scratch.log_tail("pgbouncer", 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, scratch }
    }

    /// One PgBouncer for this test process, in front of [`crate::server_url`], letting in the server's
    /// user and the runtime role ([`crate::runtime_role`]), 20 server connections per database and user.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<PgBouncer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let server = crate::server_url();
            let config: tokio_postgres::Config = server.parse().expect("a valid server URL");
            let owner = config.get_user().unwrap_or("postgres").to_owned();
            let owner_password = config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let role = crate::runtime_role();
            Self::start(
                &server,
                &[
                    (&owner, owner_password.as_deref()),
                    (role.name(), role.password()),
                ],
                20,
            )
        })
    }

    /// The port it listens on, on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `url` (a `postgres://` URL of the server behind it) pointed at PgBouncer instead: the same user,
    /// password, database and parameters.
    ///
    /// # Panics
    /// When `url` is not a `postgres://` or `postgresql://` URL.
    #[must_use]
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let credentials = authority
            .rsplit_once('@')
            .map(|(credentials, _)| format!("{credentials}@"))
            .unwrap_or_default();
        format!("{scheme}://{credentials}127.0.0.1:{}{tail}", self.port)
    }

    /// The end of PgBouncer's log, for failure messages.
    #[must_use]
    pub fn log(&self, lines: usize) -> String {
        self.scratch.log_tail("pgbouncer", lines)
    }
}
