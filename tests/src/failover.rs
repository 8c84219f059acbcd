//! A pg_auto_failover formation for tests: a monitor, a primary and a synchronous secondary, started with
//! `pg_autoctl` from the machine's PostgreSQL binaries (Debian: `pg-auto-failover-cli` and
//! `postgresql-<major>-auto-failover`, installed with apt-get when missing and this process is root).
//!
//! Everything lives in a scratch directory (data directories, sockets, pg_autoctl's configuration and
//! state, logs) and runs as [`embedded_pg::UNPRIVILEGED_USER`] when this process is root, each node in a
//! process group of its own; dropping the [`Formation`] kills every process it started and removes the
//! directory, whatever state the formation is in. The nodes listen on 127.0.0.1 on free ports with
//! `trust` authentication, and the monitor's health checks are tuned with [`MonitorTuning`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{self, Scratch};

/// The monitor's failure-detection settings (`pgautofailover.*`, all in milliseconds but the retries),
/// applied with `ALTER SYSTEM` and a reload before the data nodes register.
#[derive(Debug, Clone, Copy)]
pub struct MonitorTuning {
    /// `health_check_period`: time between two health checks of a node (default 5000).
    pub health_check_period: u32,
    /// `health_check_timeout`: the health check's connect timeout (default 5000).
    pub health_check_timeout: u32,
    /// `health_check_max_retries`: retries before a node is marked unhealthy (default 2).
    pub health_check_max_retries: u32,
    /// `health_check_retry_delay`: time between two retries (default 2000).
    pub health_check_retry_delay: u32,
    /// `node_considered_unhealthy_timeout`: how long a node's keeper must have been silent, on top of a
    /// failed health check, before the monitor acts (default 20000).
    pub node_considered_unhealthy_timeout: u32,
    /// `primary_demote_timeout`: how long the monitor gives a failed primary to demote itself before
    /// the standby takes writes (default 30000).
    pub primary_demote_timeout: u32,
    /// `startup_grace_period`: no failover this soon after the monitor started (default 10000).
    pub startup_grace_period: u32,
}

impl MonitorTuning {
    /// pg_auto_failover's defaults.
    pub const DEFAULTS: Self = Self {
        health_check_period: 5000,
        health_check_timeout: 5000,
        health_check_max_retries: 2,
        health_check_retry_delay: 2000,
        node_considered_unhealthy_timeout: 20_000,
        primary_demote_timeout: 30_000,
        startup_grace_period: 10_000,
    };

    /// A fast failover for tests on one machine: a check every second, a node silent for 3 s is acted
    /// on, 2 s for the old primary to demote itself. (The unhealthy timeout stays above the keepers'
    /// one-second reporting period with room for a loaded machine, so that no failover starts before a
    /// failure.)
    pub const FAST: Self = Self {
        health_check_period: 1000,
        health_check_timeout: 1000,
        health_check_max_retries: 1,
        health_check_retry_delay: 500,
        node_considered_unhealthy_timeout: 3000,
        primary_demote_timeout: 2000,
        startup_grace_period: 1000,
    };

    fn settings(&self) -> [(&'static str, u32); 7] {
        [
            ("health_check_period", self.health_check_period),
            ("health_check_timeout", self.health_check_timeout),
            ("health_check_max_retries", self.health_check_max_retries),
            ("health_check_retry_delay", self.health_check_retry_delay),
            (
                "node_considered_unhealthy_timeout",
                self.node_considered_unhealthy_timeout,
            ),
            ("primary_demote_timeout", self.primary_demote_timeout),
            ("startup_grace_period", self.startup_grace_period),
        ]
    }
}

/// One data node as the monitor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// `node1` or `node2`.
    pub name: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The state its keeper last reported (`primary`, `secondary`, `wait_primary`, ...).
    pub reported: String,
    /// The state the monitor assigned.
    pub goal: String,
}

struct Node {
    name: String,
    port: u16,
    pgdata: PathBuf,
}

/// A running formation: a monitor and two data nodes. Dropping it kills all of them.
pub struct Formation {
    database: String,
    user: String,
    monitor_port: u16,
    nodes: Vec<Node>,
    // Last: kills the processes and removes the directory.
    scratch: Scratch,
}

impl std::fmt::Debug for Formation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Formation")
            .field("dir", &self.scratch.path())
            .field("monitor_port", &self.monitor_port)
            .field(
                "ports",
                &self.nodes.iter().map(|n| n.port).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// How long each start-up step may take (a loaded machine makes `initdb` and the base backup slow).
const STEP_TIMEOUT: Duration = Duration::from_secs(150);

impl Formation {
    /// Starts a monitor tuned with `tuning`, a primary `node1` with database `database`, and a secondary
    /// `node2` (synchronous: `synchronous_standby_names` names it while it is healthy), and waits until
    /// the monitor reports `primary` and `secondary`.
    ///
    /// # Panics
    /// When the tools are missing (and cannot be installed) or a step does not complete within
    /// [`STEP_TIMEOUT`]; the message carries the end of the logs.
    pub async fn start(database: &str, tuning: MonitorTuning) -> Self {
        let bins = embedded_pg::Binaries::find().expect("the PostgreSQL server binaries");
        ensure_pg_auto_failover(bins.bin_dir());
        let mut scratch = Scratch::new("wasm-sessions-pgaf");
        let dir = scratch.path().to_owned();
        let user = support::server_user();
        let pg_ctl = bins.bin_dir().join("pg_ctl");
        let pg_autoctl = support::on_path("pg_autoctl").expect("pg_autoctl on PATH");

        // pg_autoctl keeps its configuration and state under the XDG directories: all in the scratch.
        let env = pg_autoctl_env(&dir, bins.bin_dir());
        let mkdir = support::on_path("mkdir").expect("mkdir");
        let mut make = scratch.command(&mkdir, &[]);
        make.args(["-p", "-m", "0700"]);
        for sub in ["config", "data-home", "run", "sock"] {
            make.arg(dir.join(sub));
        }
        scratch.run("mkdir", make).expect("the scratch directories");

        let monitor_port = support::free_port();
        let mut create_monitor = scratch.command(&pg_autoctl, &env);
        create_monitor
            .args(["create", "monitor", "--pgdata"])
            .arg(dir.join("monitor"))
            .args(["--pgport", &monitor_port.to_string()])
            .args(["--hostname", "127.0.0.1", "--listen", "127.0.0.1"])
            .args(["--auth", "trust", "--no-ssl", "--pgctl"])
            .arg(&pg_ctl)
            .arg("--run");
        scratch.spawn("monitor", create_monitor);
        let mut formation = Self {
            database: database.to_owned(),
            user,
            monitor_port,
            nodes: Vec::new(),
            scratch,
        };
        formation
            .wait("the monitor to start", || async {
                let client = formation.monitor_client().await.ok()?;
                client
                    .query_one("SELECT count(*) FROM pgautofailover.formation", &[])
                    .await
                    .ok()
            })
            .await;
        let monitor = formation.monitor_client().await.expect("the monitor");
        for (name, value) in tuning.settings() {
            monitor
                .batch_execute(&format!("ALTER SYSTEM SET pgautofailover.{name} = {value}"))
                .await
                .unwrap_or_else(|e| panic!("setting pgautofailover.{name}: {e}"));
        }
        monitor
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .expect("reloading the monitor's settings");

        formation.add_node("node1", &pg_autoctl, &pg_ctl, &env);
        formation
            .wait_for_states("node1 to run as a single node", &[("node1", "single")])
            .await;
        // The standby's base backup starts with a checkpoint, spread over minutes by default: make it
        // short by writing the dirty pages now.
        formation
            .node_client(0)
            .await
            .expect("node1")
            .batch_execute("CHECKPOINT")
            .await
            .expect("CHECKPOINT on node1");
        formation.add_node("node2", &pg_autoctl, &pg_ctl, &env);
        formation
            .wait_for_states(
                "node1 to be primary and node2 its secondary",
                &[("node1", "primary"), ("node2", "secondary")],
            )
            .await;
        formation
    }

    fn add_node(&mut self, name: &str, pg_autoctl: &Path, pg_ctl: &Path, env: &[(&str, String)]) {
        let port = support::free_port();
        let pgdata = self.scratch.path().join(name);
        let mut create = self.scratch.command(pg_autoctl, env);
        create
            .args(["create", "postgres", "--pgdata"])
            .arg(&pgdata)
            .args(["--pgport", &port.to_string(), "--name", name])
            .args(["--hostname", "127.0.0.1", "--listen", "127.0.0.1"])
            .args(["--auth", "trust", "--no-ssl", "--dbname", &self.database])
            .args(["--monitor", &self.monitor_uri(), "--pgctl"])
            .arg(pg_ctl)
            .arg("--run");
        self.scratch.spawn(name, create);
        self.nodes.push(Node {
            name: name.to_owned(),
            port,
            pgdata,
        });
    }

    /// The superuser's URL of both nodes, for the schema: `postgres://USER@127.0.0.1:P1,127.0.0.1:P2/DB
    /// ?target_session_attrs=read-write`, which connects to whichever node takes writes.
    #[must_use]
    pub fn owner_url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!(
            "postgres://{}@{}/{}?target_session_attrs=read-write",
            self.user,
            hosts.join(","),
            self.database
        )
    }

    /// The superuser's URL of node `index` alone.
    #[must_use]
    pub fn node_url(&self, index: usize) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            self.user, self.nodes[index].port, self.database
        )
    }

    /// The database the nodes serve.
    #[must_use]
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The node names, in order (`node1`, `node2`).
    #[must_use]
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    fn monitor_uri(&self) -> String {
        format!(
            "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
            self.monitor_port
        )
    }

    async fn monitor_client(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        connect(&format!(
            "postgres://{}@127.0.0.1:{}/pg_auto_failover?connect_timeout=5",
            self.user, self.monitor_port
        ))
        .await
    }

    /// A superuser connection to node `index`.
    ///
    /// # Errors
    /// The node does not answer.
    pub async fn node_client(
        &self,
        index: usize,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        connect(&format!("{}?connect_timeout=5", self.node_url(index))).await
    }

    /// The data nodes' states as the monitor reports them.
    ///
    /// # Errors
    /// The monitor does not answer.
    pub async fn states(&self) -> Result<Vec<NodeState>, tokio_postgres::Error> {
        let client = self.monitor_client().await?;
        let rows = client
            .query(
                "SELECT nodename, nodeport, reportedstate::text, goalstate::text \
                 FROM pgautofailover.node ORDER BY nodeid",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| NodeState {
                name: row.get(0),
                port: u16::try_from(row.get::<_, i32>(1)).unwrap_or_default(),
                reported: row.get(2),
                goal: row.get(3),
            })
            .collect())
    }

    /// Waits (polling the monitor) until every `(name, state)` is both reported and assigned.
    ///
    /// # Panics
    /// After [`STEP_TIMEOUT`], with the states seen and the end of the logs.
    pub async fn wait_for_states(&self, what: &str, wanted: &[(&str, &str)]) -> Vec<NodeState> {
        self.wait(what, || async {
            let states = self.states().await.ok()?;
            wanted
                .iter()
                .all(|(name, state)| {
                    states
                        .iter()
                        .any(|s| s.name == *name && s.reported == *state && s.goal == *state)
                })
                .then_some(states)
        })
        .await
    }

    /// Polls `check` every 200 ms until it returns `Some`.
    async fn wait<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                started.elapsed() < STEP_TIMEOUT,
                "waited {STEP_TIMEOUT:?} for {what}; states: {:?}\n{}",
                self.states().await,
                self.logs(40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The end of every process's log, for failure messages.
    #[must_use]
    pub fn logs(&self, lines: usize) -> String {
        let mut names = vec!["monitor".to_owned()];
        names.extend(self.node_names());
        names
            .iter()
            .map(|name| format!("--- {name}:\n{}", self.scratch.log_tail(name, lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills node `index` as a machine failure would: its postmaster (the pid in `postmaster.pid`) and
    /// its `pg_autoctl` keeper (which would otherwise restart that postmaster) with SIGKILL, in one
    /// `kill` call. The backends of the killed postmaster end their connections as soon as they notice.
    /// Returns the postmaster's pid.
    ///
    /// # Panics
    /// When the node has no `postmaster.pid` or a process cannot be killed.
    pub fn kill_node(&mut self, index: usize) -> u32 {
        let node = &self.nodes[index];
        let pid = support::postmaster_pid(&node.pgdata)
            .unwrap_or_else(|| panic!("{} has no postmaster.pid", node.name));
        let pgid = self.scratch.group_of(&node.name);
        let status = Command::new("kill")
            .args(["-KILL", "--", &pid.to_string(), &format!("-{pgid}")])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {pid} -{pgid}: {status}");
        pid
    }
}

/// The environment of every `pg_autoctl` process: configuration, state and sockets in `dir`.
fn pg_autoctl_env(dir: &Path, bin_dir: &Path) -> Vec<(&'static str, String)> {
    let sock = dir.join("sock").display().to_string();
    vec![
        ("HOME", dir.display().to_string()),
        ("XDG_CONFIG_HOME", dir.join("config").display().to_string()),
        ("XDG_DATA_HOME", dir.join("data-home").display().to_string()),
        ("XDG_RUNTIME_DIR", dir.join("run").display().to_string()),
        // pg_autoctl starts postgres with `-k $PG_REGRESS_SOCK_DIR`, and connects through PGHOST.
        ("PG_REGRESS_SOCK_DIR", sock.clone()),
        ("PGHOST", sock),
        ("PATH", format!("{}:/usr/bin:/bin", bin_dir.display())),
        // initdb takes the encoding from the locale: UTF-8, as the session data needs.
        ("LANG", "C.UTF-8".to_owned()),
    ]
}

/// Installs pg_auto_failover's packages when `pg_autoctl` or the monitor's extension is missing.
fn ensure_pg_auto_failover(bin_dir: &Path) {
    let pg_config = bin_dir.join("pg_config");
    let output = |arg: &str| {
        Command::new(&pg_config)
            .arg(arg)
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let pkglibdir = PathBuf::from(output("--pkglibdir"));
    // "PostgreSQL 15.20 (Debian 15.20-0+deb12u1)" → 15.
    let major = output("--version")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').next())
        .unwrap_or("15")
        .to_owned();
    let extension = format!("postgresql-{major}-auto-failover");
    support::ensure_packages(
        "the failover test",
        &["pg-auto-failover-cli", &extension],
        || {
            support::on_path("pg_autoctl").is_some()
                && pkglibdir.join("pgautofailover.so").is_file()
        },
    );
}

/// A plain client, its connection task spawned.
async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}
