//! A private PostgreSQL cluster run from the machine's PostgreSQL binaries.
//!
//! - [`Cluster::persistent`]: data in a directory that outlives the process (the CLI's embedded default);
//!   started if it is not running, and left running for the next command.
//! - [`Cluster::throwaway`]: data in a temporary directory; the cluster stops and its files are removed
//!   when this process exits (used by the tests when `DATABASE_URL` is not set).
//!
//! `initdb` and `postgres` refuse to run as root; as root, the cluster runs as the `postgres` user (via
//! `runuser`), which owns its data directory.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The user a cluster runs as when this process is root.
pub const UNPRIVILEGED_USER: &str = "postgres";

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

    /// A command for PostgreSQL tool `tool`, run as [`UNPRIVILEGED_USER`] when this process is root.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin_dir.join(tool);
        if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", UNPRIVILEGED_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Gives `dir` to the user the cluster runs as (a no-op unless root).
    fn hand_over(&self, dir: &Path) -> Result<(), ClusterError> {
        if !self.as_root {
            return Ok(());
        }
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{UNPRIVILEGED_USER}:{UNPRIVILEGED_USER}"))
            .arg(dir))?;
        Ok(())
    }

    fn initdb(&self, data_dir: &Path, durable: bool) -> Result<(), ClusterError> {
        let mut initdb = self.command("initdb");
        initdb.arg("-D").arg(data_dir).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        if !durable {
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
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port();
    Ok(port)
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
        "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_connections=300{speed}",
        socket_dir.display()
    )
}

/// A running private cluster, reachable on 127.0.0.1 as user `postgres` with trust authentication.
#[derive(Debug)]
pub struct Cluster {
    bins: Binaries,
    data_dir: PathBuf,
    port: u16,
    durable: bool,
    /// For a throwaway cluster: the watchdog's stdin; closing it (at exit) stops the cluster.
    _watchdog: Option<(Child, ChildStdin)>,
}

impl Cluster {
    /// Starts (creating it first if needed) the cluster whose data lives in `data_dir`, or finds it
    /// already running. It is left running when this process exits; stop it with [`Cluster::stop`].
    ///
    /// # Errors
    /// [`ClusterError::BinariesNotFound`], or a failing `initdb` / `pg_ctl`.
    pub fn persistent(data_dir: &Path) -> Result<Self, ClusterError> {
        let bins = Binaries::find()?;
        std::fs::create_dir_all(data_dir)
            .map_err(io(format!("creating {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io(format!("resolving {}", data_dir.display())))?;
        if !data_dir.join("PG_VERSION").exists() {
            bins.hand_over(&data_dir)?;
            bins.initdb(&data_dir, true)?;
        }
        if let Some(port) = running_port(&data_dir)
            && status_running(&bins, &data_dir)
        {
            return Ok(Self {
                bins,
                data_dir,
                port,
                durable: true,
                _watchdog: None,
            });
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
            .arg(format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            ))
            .args(["-w", "-s", "start"]))?;
        Ok(Self {
            bins,
            data_dir,
            port,
            durable: true,
            _watchdog: None,
        })
    }

    /// Stops the persistent cluster in `data_dir` if it runs.
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
        let root = tempfile::Builder::new()
            .prefix("wasm-sessions-pg-")
            .tempdir()
            .map_err(io("creating a temporary directory"))?
            .keep();
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
            port,
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

    /// Starts a throwaway cluster stopped by [`Cluster::stop_now`] again, with the same settings.
    ///
    /// # Errors
    /// A failing `pg_ctl start`.
    pub fn start_again(&self) -> Result<(), ClusterError> {
        let root = self.data_dir.parent().unwrap_or(&self.data_dir);
        run(self
            .bins
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(root.join("postgres.log"))
            .arg("-o")
            .arg(throwaway_options(self.port, root, self.durable))
            .args(["-w", "-s", "start"]))?;
        Ok(())
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The TCP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as user `postgres`.
    #[must_use]
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// The port in `postmaster.pid` (line 4), if the file exists.
fn running_port(data_dir: &Path) -> Option<u16> {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    pid_file.lines().nth(3)?.trim().parse().ok()
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
