//! What [`crate::failover`] and [`crate::pgbouncer`] share: a scratch directory whose processes are
//! killed when it is dropped (or, should this process die first, by a watchdog), the user they run as,
//! free ports, and installing a missing Debian package.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// The OS user the servers run as: [`embedded_pg::UNPRIVILEGED_USER`] when this process is root
/// (PostgreSQL and PgBouncer refuse root), else `None` (this process's user).
pub(crate) fn run_as() -> Option<&'static str> {
    is_root().then_some(embedded_pg::UNPRIVILEGED_USER)
}

/// The name of the user the servers run as (the superuser `initdb` creates is named after it).
pub(crate) fn server_user() -> String {
    if let Some(user) = run_as() {
        return user.to_owned();
    }
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "postgres".to_owned())
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// `name` on `PATH`, if it is there.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Makes sure `present()` holds, installing `packages` with apt-get when it does not and this process
/// may (root, apt-get present); otherwise panics saying what to install. `what` names the need.
pub(crate) fn ensure_packages(what: &str, packages: &[&str], present: impl Fn() -> bool) {
    if present() {
        return;
    }
    let how = format!(
        "install them with `sudo apt-get install {}` (Debian/Ubuntu)",
        packages.join(" ")
    );
    let Some(apt) = on_path("apt-get") else {
        panic!("{what} needs {packages:?}, and apt-get is not available: {how}");
    };
    assert!(
        is_root(),
        "{what} needs {packages:?}; not root, so not installing them: {how}"
    );
    eprintln!("{what}: installing {packages:?} with apt-get");
    // Another test process may be installing at the same time: wait for the dpkg lock.
    let lock = ["-o", "DPkg::Lock::Timeout=300"];
    let install: Vec<&str> = lock
        .iter()
        .copied()
        .chain(["install", "-y", "--no-install-recommends"])
        .chain(packages.iter().copied())
        .collect();
    for args in [
        lock.iter().copied().chain(["update"]).collect::<Vec<_>>(),
        install,
    ] {
        let status = Command::new(&apt)
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .expect("running apt-get");
        assert!(
            status.success(),
            "apt-get {args:?} failed ({status}): {how}"
        );
    }
    assert!(
        present(),
        "apt-get ran but {what} still lacks {packages:?}: {how}"
    );
}

/// A private scratch directory for servers, and the processes started in it.
///
/// Every process runs in a process group of its own (as [`run_as`]), so that the whole tree of it
/// (pg_autoctl's services, the postmaster) can be killed at once. Dropping the scratch kills every group
/// with SIGKILL, kills any postmaster whose `postmaster.pid` is in the directory, and removes the
/// directory. A watchdog (a shell reading this process's pipe) does the same if this process dies
/// without dropping it.
pub(crate) struct Scratch {
    dir: PathBuf,
    children: Vec<(String, Child)>,
    watchdog: Option<(Child, ChildStdin)>,
}

/// The watchdog: waits for its stdin to close, then kills the groups listed in `pgids` and every
/// postmaster of the directory, and removes the directory. (`env kill`: the `kill` program, whose
/// `--` before a negative group id every shell's builtin does not take.)
const WATCHDOG: &str = r#"
    cat >/dev/null
    if [ -f "$1/pgids" ]; then
        for g in $(cat "$1/pgids"); do env kill -s KILL -- "-$g" 2>/dev/null; done
    fi
    for f in "$1"/*/postmaster.pid; do
        [ -f "$f" ] && env kill -s KILL -- "$(head -n 1 "$f")" 2>/dev/null
    done
    rm -rf "$1"
"#;

impl Scratch {
    /// A new directory `<temp>/<prefix>-<random>`, mode 0700, owned by the user the servers run as.
    pub(crate) fn new(prefix: &str) -> Self {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).expect("OS randomness");
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        // A short path: Unix socket paths are limited to 107 bytes.
        let base = if is_root() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("{prefix}-{name}"));
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        if let Some(user) = run_as() {
            let status = Command::new("chown")
                .arg(format!("{user}:{user}"))
                .arg(&dir)
                .status()
                .expect("running chown");
            assert!(status.success(), "chown {user} {}", dir.display());
        }
        let mut watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting the watchdog shell");
        let stdin = watchdog.stdin.take().expect("piped");
        Self {
            dir,
            children: Vec::new(),
            watchdog: Some((watchdog, stdin)),
        }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// A command running `program` as [`run_as`] with exactly `env` (and nothing else of this process's
    /// environment).
    pub(crate) fn command(&self, program: &Path, env: &[(&str, String)]) -> Command {
        let mut command = match run_as() {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "env", "-i"]);
                c
            }
            None => {
                let mut c = Command::new("env");
                c.arg("-i");
                c
            }
        };
        for (key, value) in env {
            command.arg(format!("{key}={value}"));
        }
        command.arg(program);
        command
    }

    /// Runs `command` to completion, its output in `<dir>/<name>.log`; `Err` with the log's end when it
    /// fails.
    pub(crate) fn run(&self, name: &str, mut command: Command) -> Result<(), String> {
        let log = self.log_file(name);
        let status = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .status()
            .map_err(|e| format!("{name}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "{name} failed ({status}):\n{}",
                self.log_tail(name, 30)
            ))
        }
    }

    /// Starts `command` in the background in a process group of its own, its output in
    /// `<dir>/<name>.log`. Returns the group's id (the child's pid).
    pub(crate) fn spawn(&mut self, name: &str, mut command: Command) -> u32 {
        let log = self.log_file(name);
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let pgid = child.id();
        let mut pgids = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pgids"))
            .expect("the list of process groups");
        writeln!(pgids, "{pgid}").expect("recording a process group");
        self.children.push((name.to_owned(), child));
        pgid
    }

    /// The process group of the process started as `name`.
    pub(crate) fn group_of(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, child)| child.id())
            .unwrap_or_else(|| panic!("no process named {name}"))
    }

    /// The last `lines` lines of `<dir>/<name>.log`.
    pub(crate) fn log_tail(&self, name: &str, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap_or_else(|e| panic!("opening the log of {name}: {e}"))
    }
}

/// Sends SIGKILL to `target` (a pid, or `-pgid` for a group); whether `kill` succeeded.
pub(crate) fn kill(target: &str) -> bool {
    signal("-KILL", target)
}

/// Sends `signal` (`-KILL`, `-STOP`, ...) to `target` with kill(1); whether it succeeded.
fn signal(signal: &str, target: &str) -> bool {
    Command::new("kill")
        .args([signal, "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The processes whose parent is `pid` (from `/proc/<pid>/stat`; none where there is no `/proc`).
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after
                // the last `)`.
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The postmaster's pid, from the first line of `<data_dir>/postmaster.pid`.
pub(crate) fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The servers first: killing the groups first would kill a postmaster that pg_autoctl started
        // in its own group and orphan the postmaster's children before they can be found.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.filter_map(Result::ok) {
                if let Some(pid) = postmaster_pid(&entry.path()) {
                    // Each server process is in a session of its own, and pg_auto_failover's
                    // health-check worker outlives a killed postmaster (with the logger, whose pipe it
                    // holds): stop the postmaster (so it starts no new child), kill its children by
                    // pid, then it.
                    signal("-STOP", &pid.to_string());
                    for child in children_of(pid) {
                        kill(&child.to_string());
                    }
                    kill(&pid.to_string());
                }
            }
        }
        for (_, child) in &self.children {
            kill(&format!("-{}", child.id()));
        }
        for (_, child) in &mut self.children {
            // Killed above; reaped here (bounded: a process in uninterruptible sleep is left).
            for _ in 0..50 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Nothing is left for the watchdog to kill (the group ids may be reused from now on).
        let _ = std::fs::remove_file(self.dir.join("pgids"));
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = watchdog.wait();
        }
    }
}
