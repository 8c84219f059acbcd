//! The clusters are private, and the runtime role can do exactly what the component's contract needs.
//!
//! - The persistent cluster (the CLI's) has no TCP listener and its Unix socket is in a directory only its
//!   OS user can enter; the throwaway cluster (the tests') keeps TCP on 127.0.0.1 but its socket directory
//!   is private too.
//! - The runtime role's grants are the library's own (`host/src/role.rs`, included by path: the SQL lives
//!   in one place), checked against a real server: row privileges on `wasm_sessions.sessions`, nothing
//!   else.
//!
//! Every cluster lives in a temporary directory and is stopped at the end (persistent ones by a guard,
//! throwaway ones by their watchdog when the process exits).

// The library module is included whole; the tests use part of it.
#[allow(dead_code)]
#[path = "../../host/src/role.rs"]
mod role;

use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use embedded_pg::{Binaries, Cluster, ClusterError, SOCKET_DIR_RECORD};
use role::{DEFAULT_RUNTIME_ROLE, RuntimeRole};
use tokio_postgres::Client;

/// The schema as the host's migrations build it (the host crate applies them with refinery).
const MIGRATIONS: [&str; 4] = [
    include_str!("../../migrations/V1__create_sessions.sql"),
    include_str!("../../migrations/V2__concurrency_and_idle_timeout.sql"),
    include_str!("../../migrations/V3__schema_label_expiry.sql"),
    include_str!("../../migrations/V4__column_rules_as_domains.sql"),
];

/// A temporary directory the cluster's user can pass through (as root that is `postgres`, and a fresh
/// temporary directory is root's, mode 0700).
fn temp_base() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("epg-")
        .tempdir()
        .expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temporary directory");
    dir
}

/// A persistent cluster that is stopped (and its private socket directory removed) when dropped.
struct Persistent {
    cluster: Cluster,
}

impl Persistent {
    fn start(data_dir: &Path) -> Self {
        let cluster = Cluster::persistent(data_dir).expect("the persistent cluster starts");
        Self { cluster }
    }
}

impl Drop for Persistent {
    fn drop(&mut self) {
        let _ = Cluster::stop(self.cluster.data_dir());
        if !self
            .cluster
            .socket_dir()
            .starts_with(self.cluster.data_dir())
        {
            let _ = std::fs::remove_dir_all(self.cluster.socket_dir());
        }
    }
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("the directory exists")
        .permissions()
        .mode()
        & 0o777
}

/// The SQLSTATE of a failed statement.
async fn sqlstate(client: &Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("{sql:?} succeeded"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("{sql:?}: not a database error: {e}"))
            .code()
            .to_owned(),
    }
}

async fn migrate(owner: &Client) {
    for migration in MIGRATIONS {
        owner
            .batch_execute(migration)
            .await
            .expect("migration applies");
    }
    // Where refinery keeps its history: the runtime role must not see it.
    owner
        .batch_execute("CREATE TABLE public.refinery_schema_history (version int PRIMARY KEY)")
        .await
        .expect("history table");
}

fn accepts_tcp(port: u16) -> bool {
    let timeout = Duration::from_secs(1);
    [
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    ]
    .iter()
    .any(|addr| TcpStream::connect_timeout(addr, timeout).is_ok())
}

/// The port line (4) and the listen-address line (6) of `postmaster.pid`.
fn pid_file(data_dir: &Path) -> (u16, String) {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    let lines: Vec<&str> = text.lines().collect();
    (
        lines[3].trim().parse().expect("a port"),
        lines[5].trim().to_owned(),
    )
}

/// Everything the runtime role may do, and a list of what it may not, on a migrated database.
async fn check_runtime_role(runtime: &Client) {
    let row = runtime
        .query_one(
            "SELECT current_user::text, current_setting('search_path')",
            &[],
        )
        .await
        .expect("who am I");
    assert_eq!(row.get::<_, String>(0), DEFAULT_RUNTIME_ROLE);
    assert_eq!(row.get::<_, String>(1), "pg_catalog");

    runtime
        .batch_execute(
            "INSERT INTO wasm_sessions.sessions (id_hash, expires_at) \
               VALUES (pg_catalog.sha256('t'), pg_catalog.now() + interval '1 hour');
             UPDATE wasm_sessions.sessions SET data = '{\"a\": \"b\"}' WHERE id_hash = pg_catalog.sha256('t');
             SELECT data FROM wasm_sessions.sessions;
             DELETE FROM wasm_sessions.sessions WHERE id_hash = pg_catalog.sha256('t');",
        )
        .await
        .expect("row privileges on wasm_sessions.sessions");

    for denied in [
        "CREATE TABLE wasm_sessions.other (id int)",
        "CREATE TABLE public.other (id int)",
        "CREATE TABLE other (id int)",
        "CREATE TEMP TABLE scratch (id int)",
        "CREATE SCHEMA mine",
        "SELECT * FROM pg_catalog.pg_authid",
        "DROP TABLE wasm_sessions.sessions",
        "TRUNCATE wasm_sessions.sessions",
        "ALTER TABLE wasm_sessions.sessions ADD COLUMN x int",
        "CREATE INDEX ON wasm_sessions.sessions (label)",
        "SELECT * FROM public.refinery_schema_history",
        "SET ROLE postgres",
        "CREATE ROLE intruder",
        "CREATE DATABASE intruder",
    ] {
        assert_eq!(sqlstate(runtime, denied).await, "42501", "{denied}");
    }

    let attributes = runtime
        .query_one(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolreplication, rolbypassrls, \
                    rolcanlogin, \
                    (SELECT count(*) FROM pg_catalog.pg_auth_members WHERE member = r.oid) \
             FROM pg_catalog.pg_roles r WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("the role's attributes");
    for (i, what) in [
        "superuser",
        "createdb",
        "createrole",
        "inherit",
        "replication",
        "bypassrls",
    ]
    .iter()
    .enumerate()
    {
        assert!(!attributes.get::<_, bool>(i), "{what}");
    }
    assert!(attributes.get::<_, bool>(6), "login");
    assert_eq!(attributes.get::<_, i64>(7), 0, "memberships");
}

#[tokio::test]
async fn the_persistent_cluster_listens_on_no_tcp_port_and_its_socket_is_private() {
    let base = temp_base();
    let data_dir = base.path().join("pgdata");
    let db = Persistent::start(&data_dir);
    let cluster = &db.cluster;

    assert_eq!(cluster.socket_dir(), cluster.data_dir(), "a short path");
    assert_eq!(mode(cluster.socket_dir()), 0o700);
    assert_eq!(cluster.tcp_address(), None);
    let (port, listen) = pid_file(cluster.data_dir());
    assert_eq!(port, cluster.port());
    assert_eq!(listen, "", "postmaster.pid names no listen address");
    assert!(!accepts_tcp(port), "something accepts on port {port}");
    assert!(cluster.owner_url("postgres").contains("@%2F"));

    let owner = connect(&cluster.owner_url("postgres")).await;
    let listen: String = owner
        .query_one("SHOW listen_addresses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listen, "");
    let hba: i64 = owner
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_hba_file_rules WHERE type <> 'local'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(hba, 0, "pg_hba.conf accepts Unix-socket connections only");

    migrate(&owner).await;
    let role = RuntimeRole::default();
    role.apply(&owner, "postgres")
        .await
        .expect("the grants apply");
    role.apply(&owner, "postgres")
        .await
        .expect("and apply again");
    let runtime = connect(&cluster.url_as(role.name(), "postgres")).await;
    check_runtime_role(&runtime).await;
    // The URL the library derives from the owner's works as well.
    connect(&role.runtime_url(&cluster.owner_url("postgres")).unwrap()).await;

    // The next command finds it running, as it is.
    let again = Cluster::persistent(&data_dir).expect("found running");
    assert_eq!(again.port(), cluster.port());
    assert_eq!(again.socket_dir(), cluster.socket_dir());

    drop(runtime);
    drop(owner);
    assert!(Cluster::stop(&data_dir).expect("stops"));
    assert!(!Cluster::stop(&data_dir).expect("already stopped"));
    assert!(!accepts_tcp(port));
}

#[tokio::test]
async fn a_data_dir_too_long_for_a_socket_gets_a_private_socket_dir_elsewhere() {
    let base = temp_base();
    let data_dir = base.path().join("d".repeat(90)).join("pgdata");
    let db = Persistent::start(&data_dir);
    let cluster = &db.cluster;

    let socket_dir = cluster.socket_dir().to_owned();
    assert!(!socket_dir.starts_with(cluster.data_dir()));
    assert!(socket_dir.as_os_str().len() + "/.s.PGSQL.65535".len() <= 107);
    assert_eq!(mode(&socket_dir), 0o700);
    let recorded =
        std::fs::read_to_string(cluster.data_dir().join(SOCKET_DIR_RECORD)).expect("recorded");
    assert_eq!(PathBuf::from(recorded.trim_end()), socket_dir);
    assert!(!accepts_tcp(cluster.port()));
    connect(&cluster.owner_url("postgres")).await;

    // Restarted, it uses the recorded directory again.
    Cluster::stop(cluster.data_dir()).expect("stops");
    let again = Cluster::persistent(&data_dir).expect("starts again");
    assert_eq!(again.socket_dir(), socket_dir);
    connect(&again.owner_url("postgres")).await;

    // A recorded directory that vanished (a reboot cleared /tmp) is replaced.
    Cluster::stop(cluster.data_dir()).expect("stops");
    std::fs::remove_dir_all(&socket_dir).expect("remove the socket directory");
    let fresh = Persistent::start(&data_dir);
    assert_ne!(fresh.cluster.socket_dir(), socket_dir);
    assert_eq!(mode(fresh.cluster.socket_dir()), 0o700);
    connect(&fresh.cluster.owner_url("postgres")).await;
}

#[tokio::test]
async fn a_cluster_started_with_a_tcp_listener_is_restarted_privately() {
    let base = temp_base();
    let data_dir = base.path().join("pgdata");
    let db = Persistent::start(&data_dir);
    let data_dir = db.cluster.data_dir().to_owned();
    Cluster::stop(&data_dir).expect("stops");

    // As an older version started it: on 127.0.0.1, without a Unix socket.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let status = Binaries::find()
        .unwrap()
        .command("pg_ctl")
        .arg("-D")
        .arg(&data_dir)
        .arg("-l")
        .arg(data_dir.join("postgres.log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        ))
        .args(["-w", "-s", "start"])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(accepts_tcp(port), "the old way listens on TCP");

    let again = Cluster::persistent(&data_dir).expect("restarted");
    let (pid_port, listen) = pid_file(&data_dir);
    assert_eq!(pid_port, again.port());
    assert_eq!(listen, "");
    assert!(!accepts_tcp(port) && !accepts_tcp(again.port()));
    connect(&again.owner_url("postgres")).await;
}

#[test]
fn a_symlinked_or_foreign_data_dir_is_refused() {
    let base = temp_base();
    let target = base.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(matches!(
        Cluster::persistent(&link),
        Err(ClusterError::DataDir { .. })
    ));
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "nothing was done through the link"
    );

    std::fs::write(target.join("precious.txt"), "keep").unwrap();
    assert!(matches!(
        Cluster::persistent(&target),
        Err(ClusterError::DataDir { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(target.join("precious.txt")).unwrap(),
        "keep"
    );
}

#[tokio::test]
async fn the_throwaway_cluster_keeps_tcp_but_its_socket_dir_is_private() {
    let cluster = Cluster::throwaway().expect("a throwaway cluster");
    assert_eq!(mode(cluster.socket_dir()), 0o700);
    assert_eq!(
        cluster.tcp_address(),
        Some(SocketAddr::from(([127, 0, 0, 1], cluster.port())))
    );
    let owner = connect(&cluster.owner_url("postgres")).await;
    let listen: String = owner
        .query_one("SHOW listen_addresses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listen, "127.0.0.1");
    connect(&cluster.socket_url_as("postgres", "postgres")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_apply_concurrently_and_refuse_what_is_not_a_runtime_role() {
    let cluster = Cluster::throwaway().expect("a throwaway cluster");
    let admin = connect(&cluster.owner_url("postgres")).await;
    let names: Vec<String> = (0..8).map(|i| format!("grants_{i}")).collect();
    for name in &names {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    let role = RuntimeRole::new("concurrent_runtime")
        .unwrap()
        .with_password("it's \\ secret");
    let tasks: Vec<_> = names
        .iter()
        .map(|name| {
            let url = cluster.owner_url(name);
            let (role, name) = (role.clone(), name.clone());
            tokio::spawn(async move {
                let owner = connect(&url).await;
                migrate(&owner).await;
                role.apply(&owner, &name).await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap()
            .expect("concurrent grants on several databases");
    }
    let url = role.runtime_url(&cluster.owner_url("grants_0")).unwrap();
    let runtime = connect(&url).await;
    assert_eq!(
        sqlstate(&runtime, "CREATE TEMP TABLE t (id int)").await,
        "42501"
    );

    // Not migrated yet: the schema is missing.
    admin.batch_execute("CREATE DATABASE bare").await.unwrap();
    let bare = connect(&cluster.owner_url("bare")).await;
    let error = RuntimeRole::default()
        .apply(&bare, "bare")
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "3F000");

    let owner = connect(&cluster.owner_url("grants_1")).await;
    let refused = |e: tokio_postgres::Error| e.code().map(|c| c.code().to_owned());
    // The owner itself, the wrong database, a superuser, the schema's owner.
    let postgres = RuntimeRole::new("postgres").unwrap();
    assert_eq!(
        refused(postgres.apply(&owner, "grants_1").await.unwrap_err()),
        Some("55000".into())
    );
    assert_eq!(
        refused(
            RuntimeRole::default()
                .apply(&owner, "grants_2")
                .await
                .unwrap_err()
        ),
        Some("55000".into())
    );
    owner
        .batch_execute(
            "CREATE ROLE mighty SUPERUSER; CREATE ROLE keeper; \
             ALTER SCHEMA wasm_sessions OWNER TO keeper",
        )
        .await
        .unwrap();
    for name in ["mighty", "keeper"] {
        let role = RuntimeRole::new(name).unwrap();
        assert_eq!(
            refused(role.apply(&owner, "grants_1").await.unwrap_err()),
            Some("55000".into()),
            "{name}"
        );
    }
    let still: bool = owner
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'mighty'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(still, "an existing superuser is never demoted silently");
}
