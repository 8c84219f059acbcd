//! A private PostgreSQL cluster run from the machine's PostgreSQL binaries.
//!
//! - [`Cluster::persistent`]: data in a directory that outlives the process (the CLI's embedded default);
//!   started if it is not running, and left running for the next command. It is **private**: no TCP
//!   listener at all (`listen_addresses = ''`), only a Unix socket in a directory that only the cluster's
//!   OS user can enter (mode 0700), with `trust` authentication on that socket alone. Reaching the
//!   socket is the authentication: only the owner (and root) can.
//! - [`Cluster::throwaway`]: data in a temporary directory; the cluster stops and its files are removed
//!   when this process exits (used by the tests when `DATABASE_URL` is not set). It also listens on
//!   127.0.0.1 (tests connect over TCP), with its Unix socket in its private (0700) temporary directory.
//!
//! **The socket directory.** A Unix socket path is limited to 107 bytes (`sun_path`), and the socket is
//! `<dir>/.s.PGSQL.<port>`. The persistent cluster puts it in its data directory, which PostgreSQL already
//! requires to be private (0700, owned by the cluster's user), whenever that path is short enough (at most
//! 92 bytes, so that any port fits). Otherwise it creates a private directory (mode 0700, random name,
//! owned by the cluster's user) under `$XDG_RUNTIME_DIR` (not as root), else the temporary directory,
//! else `/tmp`, and records its path in the data directory's [`SOCKET_DIR_RECORD`] file, so that later
//! commands find it; a recorded directory that vanished (e.g. a reboot cleared `/tmp`) or is no longer
//! private is replaced by a new one.
//!
//! `initdb` and `postgres` refuse to run as root; as root, the cluster runs as the `postgres` user (via
//! `runuser`), which owns its data directory and socket directory (root can still connect).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The user a cluster runs as when this process is root.
pub const UNPRIVILEGED_USER: &str = "postgres";

/// The cluster's superuser, which owns the schema and applies the migrations.
pub const OWNER: &str = "postgres";

/// The file in a persistent cluster's data directory that names its socket directory when that is not
/// the data directory itself (whose path is too long for a Unix socket).
pub const SOCKET_DIR_RECORD: &str = "wasm-sessions-socket-dir";

/// The longest Unix socket path (`sun_path` is 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The longest socket file name PostgreSQL uses, with the separating '/': `/.s.PGSQL.65535`.
const SOCKET_NAME_MAX: usize = "/.s.PGSQL.65535".len();

/// Marks the settings this crate appended to a persistent cluster's `postgresql.conf`.
const PRIVATE_MARKER: &str = "# wasm-sessions: a private cluster";

/// Why a cluster could not be found or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No PostgreSQL server binaries (`initdb`, `pg_ctl`) were found.
    #[error(
        "no PostgreSQL server binaries found (looked in $PG_BIN_DIR, `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin and PATH); install them (Debian/Ubuntu: `apt-get install postgresql`) \
         or set DATABASE_URL to an existing server"
    )]
    BinariesNotFound,
    /// A PostgreSQL tool failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command that failed.
        command: String,
        /// What it printed, or why it could not run.
        detail: String,
    },
    /// The data directory cannot be used (a symbolic link, not empty, or not reachable by the cluster's
    /// user).
    #[error("the data directory {path} cannot be used: {reason}")]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// No directory short enough for the cluster's Unix socket could be made private.
    #[error("no private directory for the PostgreSQL socket: {0}")]
    SocketDir(String),
    /// A filesystem operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// The PostgreSQL server binaries of this machine.
#[derive(Debug, Clone)]
pub struct Binaries {
    bin_dir: PathBuf,
    as_root: bool,
}

impl Binaries {
    /// Finds `initdb` and `pg_ctl`: in `$PG_BIN_DIR` alone when it is set; otherwise in
    /// `pg_config --bindir`, the newest `/usr/lib/postgresql/*/bin`, then `PATH`.
    ///
    /// # Errors
    /// [`ClusterError::BinariesNotFound`], with the install hint.
    pub fn find() -> Result<Self, ClusterError> {
        let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
            let dir = PathBuf::from(dir);
            return if has_tools(&dir) {
                Ok(Self {
                    bin_dir: dir,
                    as_root: is_root(),
                })
            } else {
                Err(ClusterError::BinariesNotFound)
            };
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
        }
        if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
            let mut versions: Vec<(u32, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse().ok()?;
                    Some((version, e.path().join("bin")))
                })
                .collect();
            versions.sort();
            candidates.extend(versions.into_iter().rev().map(|(_, dir)| dir));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        let bin_dir = candidates
            .into_iter()
            .find(|dir| has_tools(dir))
            .ok_or(ClusterError::BinariesNotFound)?;
        Ok(Self {
            bin_dir,
            as_root: is_root(),
        })
    }

    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    #[must_use]
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A command for PostgreSQL tool `tool` (e.g. `pg_ctl`), run as [`UNPRIVILEGED_USER`] when this
    /// process is root.
    #[must_use]
    pub fn command(&self, tool: &str) -> Command {
        let program = self.bin_dir.join(tool);
        if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", UNPRIVILEGED_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Gives `dir` (and what is in it) to the user the cluster runs as (a no-op unless root). Symbolic
    /// links are never followed: `dir` itself must not be one, and links inside it are changed, not
    /// their targets (`chown -R -h`, which never traverses links).
    fn hand_over(&self, dir: &Path) -> Result<(), ClusterError> {
        if !self.as_root {
            return Ok(());
        }
        refuse_symlink(dir)?;
        run(Command::new("chown")
            .args(["-R", "-h"])
            .arg(format!("{UNPRIVILEGED_USER}:{UNPRIVILEGED_USER}"))
            .arg("--")
            .arg(dir))?;
        Ok(())
    }

    /// As root: checks that the cluster's user can enter and write `dir` (every parent must let it
    /// through), so that the failure is explained before `initdb` runs.
    fn check_reachable(&self, dir: &Path) -> Result<(), ClusterError> {
        if !self.as_root {
            return Ok(());
        }
        let reachable = Command::new("runuser")
            .args(["-u", UNPRIVILEGED_USER, "--", "test", "-x"])
            .arg(dir)
            .args(["-a", "-w"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if reachable {
            Ok(())
        } else {
            Err(ClusterError::DataDir {
                path: dir.to_owned(),
                reason: format!(
                    "this process is root, so PostgreSQL runs as user {UNPRIVILEGED_USER}, which cannot \
                     enter it (a parent directory is closed to it); choose a data directory it can reach"
                ),
            })
        }
    }

    /// Creates the cluster: superuser [`OWNER`], UTF-8, `trust` on the Unix socket; TCP connections are
    /// `trust` for a throwaway cluster (tests) and rejected for a persistent one (which has no TCP
    /// listener anyway).
    fn initdb(&self, data_dir: &Path, persistent: bool) -> Result<(), ClusterError> {
        let mut initdb = self.command("initdb");
        initdb.arg("-D").arg(data_dir).args([
            "-U",
            OWNER,
            "--auth-local=trust",
            if persistent {
                "--auth-host=reject"
            } else {
                "--auth-host=trust"
            },
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        if !persistent {
            initdb.arg("--no-sync");
        }
        run(&mut initdb)?;
        Ok(())
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(command: &mut Command) -> Result<String, ClusterError> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ClusterError::Command {
            command: shown.clone(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ClusterError::Command {
            command: shown,
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_owned(),
        })
    }
}

fn free_port() -> Result<u16, ClusterError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port();
    Ok(port)
}

/// `text` quoted for a POSIX shell (`pg_ctl -o` goes through `/bin/sh`).
fn shell_quote(text: &OsStr) -> String {
    format!(
        "'{}'",
        String::from_utf8_lossy(text.as_bytes()).replace('\'', r"'\''")
    )
}

/// Server options of a throwaway cluster, sockets in `socket_dir`: tuned for speed (no fsync, commits
/// acknowledged before their WAL is written), or durable (PostgreSQL's defaults) for crash tests.
fn throwaway_options(port: u16, socket_dir: &Path, durable: bool) -> String {
    let speed = if durable {
        ""
    } else {
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    };
    format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {} -c unix_socket_permissions=0700 \
         -c max_connections=300{speed}",
        shell_quote(socket_dir.as_os_str())
    )
}

/// Server options of a persistent cluster: no TCP listener, the socket in `socket_dir` only.
fn persistent_options(port: u16, socket_dir: &Path) -> String {
    format!(
        "-p {port} -c listen_addresses='' -k {} -c unix_socket_permissions=0700",
        shell_quote(socket_dir.as_os_str())
    )
}

/// A running private cluster: user [`OWNER`] with trust authentication, over its Unix socket (and, for a
/// throwaway cluster, over TCP on 127.0.0.1).
#[derive(Debug)]
pub struct Cluster {
    bins: Binaries,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    /// Whether it listens on 127.0.0.1 (throwaway clusters only).
    tcp: bool,
    durable: bool,
    /// For a throwaway cluster: the watchdog's stdin; closing it (at exit) stops the cluster.
    _watchdog: Option<(Child, ChildStdin)>,
}

impl Cluster {
    /// Starts (creating it first if needed) the private cluster whose data lives in `data_dir`, or finds
    /// it already running. It has no TCP listener; connect through [`Cluster::owner_url`] /
    /// [`Cluster::url_as`] (its Unix socket). It is left running when this process exits; stop it with
    /// [`Cluster::stop`].
    ///
    /// `data_dir` must not be a symbolic link; a new one is created with mode 0700, and an existing one
    /// must be a PostgreSQL data directory or empty. A running cluster that is not private (started by an
    /// older version, with a TCP listener) or whose socket is elsewhere is restarted. Concurrent calls on
    /// the same directory are serialized (a lock on the directory).
    ///
    /// # Errors
    /// [`ClusterError::BinariesNotFound`], [`ClusterError::DataDir`], [`ClusterError::SocketDir`], or a
    /// failing `initdb` / `pg_ctl` (with the end of the server's log).
    pub fn persistent(data_dir: &Path) -> Result<Self, ClusterError> {
        let bins = Binaries::find()?;
        let data_dir = prepare_data_dir(data_dir)?;
        // Serializes concurrent start-ups (flock on the directory; released when this returns).
        let lock = std::fs::File::open(&data_dir)
            .map_err(io(format!("opening {}", data_dir.display())))?;
        lock.lock()
            .map_err(io(format!("locking {}", data_dir.display())))?;
        if !data_dir.join("PG_VERSION").exists() {
            let mut entries = std::fs::read_dir(&data_dir)
                .map_err(io(format!("reading {}", data_dir.display())))?;
            if entries.next().is_some() {
                return Err(ClusterError::DataDir {
                    path: data_dir,
                    reason: "it is not empty and not a PostgreSQL data directory".into(),
                });
            }
            bins.hand_over(&data_dir)?;
            bins.check_reachable(&data_dir)?;
            bins.initdb(&data_dir, true)?;
        }
        make_private(&data_dir)?;
        let socket_dir = persistent_socket_dir(&bins, &data_dir)?;
        if let Some(pid) = PidFile::read(&data_dir)
            && status_running(&bins, &data_dir)
        {
            if pid.listen_addresses.is_empty() && Path::new(&pid.socket_dir) == socket_dir {
                return Ok(Self {
                    bins,
                    data_dir,
                    socket_dir,
                    port: pid.port,
                    tcp: false,
                    durable: true,
                    _watchdog: None,
                });
            }
            // Not private (an older version listened on 127.0.0.1), or its socket is elsewhere.
            run(bins
                .command("pg_ctl")
                .arg("-D")
                .arg(&data_dir)
                .args(["-m", "fast", "-w", "-s", "stop"]))?;
        }
        let port = free_port()?;
        let log = data_dir.join("postgres.log");
        run(bins
            .command("pg_ctl")
            .arg("-D")
            .arg(&data_dir)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(persistent_options(port, &socket_dir))
            .args(["-w", "-s", "start"]))
        .map_err(|error| with_log_tail(error, &log))?;
        drop(lock);
        Ok(Self {
            bins,
            data_dir,
            socket_dir,
            port,
            tcp: false,
            durable: true,
            _watchdog: None,
        })
    }

    /// Stops the persistent cluster in `data_dir` if it runs; returns whether it ran.
    ///
    /// # Errors
    /// A failing `pg_ctl stop`.
    pub fn stop(data_dir: &Path) -> Result<bool, ClusterError> {
        let bins = Binaries::find()?;
        if !status_running(&bins, data_dir) {
            return Ok(false);
        }
        run(bins
            .command("pg_ctl")
            .arg("-D")
            .arg(data_dir)
            .args(["-m", "fast", "-w", "-s", "stop"]))?;
        Ok(true)
    }

    /// Starts a new cluster in a temporary directory, tuned for tests (no fsync). A watchdog stops it and
    /// removes its files as soon as this process exits, however it exits.
    ///
    /// # Errors
    /// [`ClusterError::BinariesNotFound`], or a failing `initdb` / `pg_ctl`.
    pub fn throwaway() -> Result<Self, ClusterError> {
        Self::throwaway_with(false)
    }

    /// Like [`Cluster::throwaway`], but durable: a commit is acknowledged only once its WAL is flushed,
    /// so a crash ([`Cluster::stop_now`]) loses no acknowledged write.
    ///
    /// # Errors
    /// As [`Cluster::throwaway`].
    pub fn throwaway_durable() -> Result<Self, ClusterError> {
        Self::throwaway_with(true)
    }

    fn throwaway_with(durable: bool) -> Result<Self, ClusterError> {
        let bins = Binaries::find()?;
        // Private (0700): it holds the Unix socket as well as the data.
        let root = tempfile::Builder::new()
            .prefix("wasm-sessions-pg-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(io("creating a temporary directory"))?
            .keep();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("making {} private", root.display())))?;
        let data_dir = root.join("data");
        bins.hand_over(&root)?;
        bins.initdb(&data_dir, false)?;
        let port = free_port()?;
        let pg_ctl = bins.bin_dir.join("pg_ctl");
        // Starts the server, reports "ready", then waits for its stdin to close (this process exiting
        // closes it) and stops the server and removes the files.
        let script = r#"
            "$1" -D "$2/data" -l "$2/postgres.log" -o "$3" -w -s start || { cat "$2/postgres.log" >&2; exit 1; }
            echo ready
            cat >/dev/null
            "$1" -D "$2/data" -m immediate -s stop
            rm -rf "$2"
        "#;
        let mut command = if bins.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", UNPRIVILEGED_USER, "--", "sh", "-c", script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        };
        let mut child = command
            .arg("watchdog")
            .arg(&pg_ctl)
            .arg(&root)
            .arg(throwaway_options(port, &root, durable))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("starting the PostgreSQL watchdog"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(io("waiting for PostgreSQL to start"))?;
        if line.trim() != "ready" {
            let mut detail = String::new();
            if let Some(stderr) = child.stderr.take() {
                let _ = BufReader::new(stderr).read_line(&mut detail);
            }
            let _ = child.wait();
            return Err(ClusterError::Command {
                command: "pg_ctl start".into(),
                detail,
            });
        }
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let _ = stdin.flush();
        Ok(Self {
            bins,
            data_dir,
            socket_dir: root,
            port,
            tcp: true,
            durable,
            _watchdog: Some((child, stdin)),
        })
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`, like a crash), keeping its data: for
    /// fault-injection tests on a [`Cluster::throwaway_durable`] cluster. [`Cluster::start_again`] brings it back on the same port.
    ///
    /// # Errors
    /// A failing `pg_ctl stop`.
    pub fn stop_now(&self) -> Result<(), ClusterError> {
        run(self
            .bins
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "-s", "stop"]))?;
        Ok(())
    }

    /// Starts a cluster stopped by [`Cluster::stop_now`] again, with the same settings.
    ///
    /// # Errors
    /// A failing `pg_ctl start`.
    pub fn start_again(&self) -> Result<(), ClusterError> {
        let (log, options) = if self.tcp {
            let root = self.data_dir.parent().unwrap_or(&self.data_dir);
            (
                root.join("postgres.log"),
                throwaway_options(self.port, &self.socket_dir, self.durable),
            )
        } else {
            (
                self.data_dir.join("postgres.log"),
                persistent_options(self.port, &self.socket_dir),
            )
        };
        run(self
            .bins
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(options)
            .args(["-w", "-s", "start"]))
        .map_err(|error| with_log_tail(error, &log))?;
        Ok(())
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the Unix socket (`.s.PGSQL.<port>`); only the cluster's OS user can enter
    /// it (mode 0700).
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port: the TCP port on 127.0.0.1 of a throwaway cluster; for a persistent cluster only the
    /// number in the socket's name (it listens on no TCP port).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCP address it listens on: `127.0.0.1:<port>` for a throwaway cluster, `None` for a
    /// persistent one.
    #[must_use]
    pub fn tcp_address(&self) -> Option<SocketAddr> {
        self.tcp
            .then_some(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
    }

    /// A connection URL for `database` as the owner, [`OWNER`]; the same as [`Cluster::owner_url`].
    #[must_use]
    pub fn url(&self, database: &str) -> String {
        self.owner_url(database)
    }

    /// A connection URL for `database` as the owner, [`OWNER`] (a superuser): for migrations and
    /// grants.
    #[must_use]
    pub fn owner_url(&self, database: &str) -> String {
        self.url_as(OWNER, database)
    }

    /// A connection URL for `database` as `user`: over TCP on 127.0.0.1 for a throwaway cluster, over the
    /// Unix socket ([`Cluster::socket_url_as`]) for a persistent one. Authentication is `trust`: the
    /// server takes the user name as given.
    #[must_use]
    pub fn url_as(&self, user: &str, database: &str) -> String {
        if self.tcp {
            format!(
                "postgres://{}@127.0.0.1:{}/{}",
                percent_encode(user.as_bytes()),
                self.port,
                percent_encode(database.as_bytes())
            )
        } else {
            self.socket_url_as(user, database)
        }
    }

    /// A connection URL for `database` as `user` over the Unix socket: the socket directory as the
    /// percent-encoded host (`postgres://user@%2Fpath%2Fto%2Fdir:port/database`), which tokio-postgres
    /// and libpq (`psql`) both accept.
    #[must_use]
    pub fn socket_url_as(&self, user: &str, database: &str) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            percent_encode(user.as_bytes()),
            percent_encode(self.socket_dir.as_os_str().as_bytes()),
            self.port,
            percent_encode(database.as_bytes())
        )
    }
}

/// Every byte but the URL-unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Refuses `path` when it is a symbolic link (so that nothing is chowned or created through one).
fn refuse_symlink(path: &Path) -> Result<(), ClusterError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(ClusterError::DataDir {
            path: path.to_owned(),
            reason: "it is a symbolic link; give the directory it points to instead".into(),
        }),
        _ => Ok(()),
    }
}

/// Creates `data_dir` (mode 0700; its missing parents with the default mode) unless it exists, refuses a
/// symbolic link or a non-directory, and returns its canonical path.
fn prepare_data_dir(data_dir: &Path) -> Result<PathBuf, ClusterError> {
    refuse_symlink(data_dir)?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(data_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(format!("creating {}", data_dir.display()))(e)),
    }
    // Created meanwhile as a link? Checked again before anything follows it.
    refuse_symlink(data_dir)?;
    let canonical = data_dir
        .canonicalize()
        .map_err(io(format!("resolving {}", data_dir.display())))?;
    if !canonical.is_dir() {
        return Err(ClusterError::DataDir {
            path: canonical,
            reason: "it is not a directory".into(),
        });
    }
    Ok(canonical)
}

/// Makes a persistent cluster private for good, once (marked in `postgresql.conf`): no TCP listener
/// (`listen_addresses = ''`) and a 0700 socket even when it is started by hand, and a `pg_hba.conf` that
/// accepts Unix-socket connections only. (Start-up passes the same settings on the command line.)
fn make_private(data_dir: &Path) -> Result<(), ClusterError> {
    let conf = data_dir.join("postgresql.conf");
    let text = std::fs::read_to_string(&conf).map_err(io(format!("reading {}", conf.display())))?;
    if text.contains(PRIVATE_MARKER) {
        return Ok(());
    }
    let hba = data_dir.join("pg_hba.conf");
    // Written in place (no new file), so the files keep their owner.
    std::fs::write(
        &hba,
        format!(
            "{PRIVATE_MARKER}: Unix-socket connections only, in a directory only the cluster's OS \
             user can enter.\n\
             # TYPE  DATABASE  USER  ADDRESS  METHOD\n\
             local   all       all            trust\n"
        ),
    )
    .map_err(io(format!("writing {}", hba.display())))?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(io(format!("opening {}", conf.display())))?;
    writeln!(
        file,
        "\n{PRIVATE_MARKER}: no TCP listener, the Unix socket only (its directory is 0700).\n\
         listen_addresses = ''\n\
         unix_socket_permissions = 0700"
    )
    .map_err(io(format!("writing {}", conf.display())))?;
    Ok(())
}

/// Whether a socket in `dir` fits the Unix socket path limit, whatever the port.
fn socket_fits(dir: &Path) -> bool {
    dir.as_os_str().len() + SOCKET_NAME_MAX <= MAX_SOCKET_PATH
}

/// Whether `dir` is a real directory (not a link) of user `uid` that only it can enter (mode 0700).
fn is_private_dir(dir: &Path, uid: u32) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|meta| {
        meta.file_type().is_dir() && meta.uid() == uid && meta.mode() & 0o777 == 0o700
    })
}

/// The persistent cluster's socket directory: the data directory when its path is short enough and it is
/// private; else the recorded private directory, or a new one (recorded in [`SOCKET_DIR_RECORD`]).
fn persistent_socket_dir(bins: &Binaries, data_dir: &Path) -> Result<PathBuf, ClusterError> {
    let uid = std::fs::metadata(data_dir)
        .map_err(io(format!("reading {}", data_dir.display())))?
        .uid();
    let record = data_dir.join(SOCKET_DIR_RECORD);
    if socket_fits(data_dir) && is_private_dir(data_dir, uid) {
        let _ = std::fs::remove_file(&record);
        return Ok(data_dir.to_owned());
    }
    if let Ok(bytes) = std::fs::read(&record) {
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let dir = PathBuf::from(OsStr::from_bytes(bytes));
        if dir.is_absolute() && socket_fits(&dir) && is_private_dir(&dir, uid) {
            return Ok(dir);
        }
    }
    let dir = new_private_dir(bins, uid)?;
    let mut text = dir.as_os_str().as_bytes().to_vec();
    text.push(b'\n');
    std::fs::write(&record, text).map_err(io(format!("writing {}", record.display())))?;
    Ok(dir)
}

/// A new directory of mode 0700 with a random name, owned by user `uid` (the cluster's), whose path
/// leaves room for the socket: under `$XDG_RUNTIME_DIR` (when not root: root's is closed to the
/// cluster's user), else the temporary directory, else `/tmp`.
fn new_private_dir(bins: &Binaries, uid: u32) -> Result<PathBuf, ClusterError> {
    let mut bases: Vec<PathBuf> = Vec::new();
    if !bins.as_root
        && let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && runtime.is_absolute()
    {
        bases.push(runtime);
    }
    bases.push(std::env::temp_dir());
    bases.push(PathBuf::from("/tmp"));
    let mut tried = Vec::new();
    for base in bases {
        let Ok(dir) = tempfile::Builder::new()
            .prefix("wasm-sessions-pg-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
        else {
            tried.push(format!(
                "{} (cannot create a directory there)",
                base.display()
            ));
            continue;
        };
        let dir = dir.keep();
        if !socket_fits(&dir) {
            let _ = std::fs::remove_dir(&dir);
            tried.push(format!("{} (too long a path)", base.display()));
            continue;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("making {} private", dir.display())))?;
        bins.hand_over(&dir)?;
        if !is_private_dir(&dir, uid) {
            let _ = std::fs::remove_dir(&dir);
            tried.push(format!(
                "{} (not private to the cluster's user)",
                base.display()
            ));
            continue;
        }
        return Ok(dir);
    }
    Err(ClusterError::SocketDir(format!(
        "tried {}; use a data directory with a shorter path (at most {} bytes)",
        tried.join(", "),
        MAX_SOCKET_PATH - SOCKET_NAME_MAX
    )))
}

/// `error` with the last lines of the server log `log` appended (why `pg_ctl start` failed).
fn with_log_tail(error: ClusterError, log: &Path) -> ClusterError {
    let ClusterError::Command { command, detail } = error else {
        return error;
    };
    let tail = std::fs::read_to_string(log)
        .map(|text| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(5)..].join("\n")
        })
        .unwrap_or_default();
    ClusterError::Command {
        command,
        detail: if tail.is_empty() {
            detail
        } else {
            format!("{detail}\n{}: {tail}", log.display())
        },
    }
}

/// What a running server wrote in `postmaster.pid`.
#[derive(Debug)]
struct PidFile {
    /// Line 4.
    port: u16,
    /// Line 5: the first Unix socket directory (empty without one).
    socket_dir: String,
    /// Line 6: the first TCP listen address (empty without one).
    listen_addresses: String,
}

impl PidFile {
    /// Reads `postmaster.pid`, if the file exists and has the lines.
    fn read(data_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        Some(Self {
            port: lines.get(3)?.trim().parse().ok()?,
            socket_dir: lines.get(4)?.trim().to_owned(),
            listen_addresses: lines.get(5)?.trim().to_owned(),
        })
    }
}

fn status_running(bins: &Binaries, data_dir: &Path) -> bool {
    bins.command("pg_ctl")
        .arg("-D")
        .arg(data_dir)
        .arg("status")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
