//! The command-line grammar (clap derive types), and the default of `--cache-dir`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

/// Manage HTTP sessions stored by the wasm-sessions WebAssembly component in PostgreSQL.
///
/// Two roles: the schema's owner applies the migrations (`migrate`) and the runtime role's grants
/// (`grant-runtime-role`); every other command connects as the runtime role, which can only read and
/// write rows of wasm_sessions.sessions. Without --database-url / DATABASE_URL, a private PostgreSQL
/// cluster (no TCP listener, a Unix socket only its owner can reach) is started or reused in
/// --data-dir, migrated as its owner, and used as the runtime role.
#[derive(Debug, Parser)]
#[command(name = "wasm-sessions", version)]
pub struct Cli {
    /// PostgreSQL connection URL of the runtime role (rows of wasm_sessions.sessions only), used by every
    /// command but `migrate` and `grant-runtime-role`. Unset: the embedded cluster. It must not be empty.
    #[arg(
        long,
        value_name = "URL",
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// PostgreSQL connection URL of the schema's owner, used by `migrate` and `grant-runtime-role
    /// --apply` [default: the database URL, for a server where one role does both].
    #[arg(
        long,
        value_name = "URL",
        env = "DATABASE_OWNER_URL",
        global = true,
        hide_env_values = true
    )]
    pub owner_url: Option<String>,

    /// Data directory of the embedded PostgreSQL cluster, used when no database URL is given.
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        default_value = ".wasm-sessions/pgdata"
    )]
    pub data_dir: PathBuf,

    /// Where the compiled session component is cached between runs [default: $XDG_CACHE_HOME/wasm-sessions,
    /// else $HOME/.cache/wasm-sessions].
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        env = "WASM_SESSIONS_CACHE_DIR"
    )]
    pub cache_dir: Option<PathBuf>,

    /// How the runtime role's connections send statements: `prepared` (named prepared statements cached
    /// per connection) or `unnamed` (one unnamed statement per call with typed parameters, nothing left
    /// on the server connection), for a pooler in transaction mode such as PgBouncer's
    /// `pool_mode = transaction`, which does not support prepared statements.
    #[arg(
        long,
        value_name = "MODE",
        global = true,
        env = "WASM_SESSIONS_STATEMENT_MODE",
        value_enum,
        default_value_t = StatementMode::Prepared
    )]
    pub statement_mode: StatementMode,

    /// Print each result as one JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--statement-mode`: [`wasm_sessions::StatementMode`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatementMode {
    /// Named prepared statements, cached per connection (PostgreSQL directly, or a session pooler).
    Prepared,
    /// Unnamed statements with typed parameters (a pooler in transaction mode).
    Unnamed,
}

impl From<StatementMode> for wasm_sessions::StatementMode {
    fn from(mode: StatementMode) -> Self {
        match mode {
            StatementMode::Prepared => Self::Prepared,
            StatementMode::Unnamed => Self::Unnamed,
        }
    }
}

/// The absolute session lifetime of the CLI's store, in seconds: the guest's default `max-age` (the CLI
/// does not change the configuration; a unit test keeps the two equal). The per-session expiry options
/// of `create` cannot reach past it.
pub const SESSION_MAX_AGE: i64 = 86_400;

/// The longest `serve --cleanup-interval`, in seconds (a week).
const MAX_CLEANUP_INTERVAL: u64 = 7 * 86_400;

/// One `KEY=VALUE` (a string) or `KEY:=JSON` (any JSON value) argument.
pub type Pair = (String, serde_json::Value);

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the schema migrations as the schema's owner (--owner-url / DATABASE_OWNER_URL, else the
    /// database URL; idempotent), then prepare every statement the component declares against the
    /// migrated schema, so one that does not fit is reported now.
    ///
    /// The statements are prepared as the owner (the runtime role's grants come after the schema: see
    /// `grant-runtime-role`); `check` prepares them as the runtime role, privileges included. On the
    /// embedded cluster, where the grants are applied with the migrations, it checks as the runtime role.
    Migrate,
    /// Prepare every statement the component declares as the runtime role (without running any), so a
    /// statement the schema or the role's privileges do not allow is reported before traffic arrives.
    /// `serve` runs the same check before it listens.
    Check,
    /// Print the SQL that creates the runtime role and grants it exactly its privileges (rows of
    /// wasm_sessions.sessions), or run it with --apply as the schema's owner.
    ///
    /// Run after `migrate`. The SQL also revokes TEMPORARY on the database and CREATE on schema public
    /// from PUBLIC (every role). The role's password is the one in --database-url / DATABASE_URL when
    /// that URL logs in as the role; otherwise none is set.
    GrantRuntimeRole {
        /// The runtime role [default: the user of --database-url when it differs from the owner's,
        /// else wasm_sessions_runtime].
        #[arg(long, value_name = "NAME", value_parser = parse_role)]
        role: Option<String>,
        /// Run the SQL on the owner's connection instead of printing it.
        #[arg(long)]
        apply: bool,
    },
    /// Create and save a new session; prints its token.
    ///
    /// Without an expiry option the session follows the store's configuration (ends 86400 s after its
    /// creation). No session outlives that absolute deadline, whatever its expiry.
    Create {
        /// End the session this many seconds from now, however it is used (a fixed time).
        #[arg(
            long,
            value_name = "SECONDS",
            group = "expiry",
            value_parser = clap::value_parser!(i64).range(1..=SESSION_MAX_AGE)
        )]
        expires_in: Option<i64>,
        /// End the session after this many seconds without use (sliding; each use extends it).
        #[arg(
            long,
            value_name = "SECONDS",
            group = "expiry",
            value_parser = clap::value_parser!(i64).range(1..=SESSION_MAX_AGE)
        )]
        idle_timeout: Option<i64>,
        /// End the session with the browser session: its cookie has no Max-Age (the server still ends
        /// it at the absolute deadline).
        #[arg(long, group = "expiry")]
        browser_session: bool,
        /// Authenticated user id.
        #[arg(long, value_name = "ID", allow_negative_numbers = true)]
        user: Option<i64>,
        /// A label for the session (e.g. the device); session data cannot overwrite it.
        #[arg(long, value_name = "TEXT")]
        label: Option<String>,
        /// Data to store, repeatable: KEY=VALUE stores the string VALUE, KEY:=JSON any JSON value
        /// (e.g. n:=1, tags:='["a"]').
        #[arg(long = "set", value_name = "KEY=VALUE|KEY:=JSON", value_parser = parse_pair)]
        set: Vec<Pair>,
    },
    /// Show a session.
    Get {
        /// The session token.
        token: String,
    },
    /// Store data in a session: writes only these keys (concurrent changes of other keys merge).
    Set {
        /// The session token.
        token: String,
        /// Data to store: KEY=VALUE stores the string VALUE, KEY:=JSON any JSON value (e.g. n:=1,
        /// tags:='["a"]').
        #[arg(required = true, value_name = "KEY=VALUE|KEY:=JSON", value_parser = parse_pair)]
        pairs: Vec<Pair>,
    },
    /// Remove keys from a session: writes only these keys.
    Unset {
        /// The session token.
        token: String,
        /// Keys to remove.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Authenticate a session as USER and rotate its token; prints the new token.
    Login {
        /// The session token.
        token: String,
        /// The user id.
        #[arg(allow_negative_numbers = true)]
        user: i64,
    },
    /// Remove the session's user and rotate its token; prints the new token.
    Logout {
        /// The session token.
        token: String,
    },
    /// Delete a session; prints whether it existed.
    Delete {
        /// The session token.
        token: String,
    },
    /// List a user's unexpired sessions by revocable handle.
    Sessions {
        /// The user id.
        #[arg(allow_negative_numbers = true)]
        user: i64,
    },
    /// Delete every session of a user ("log out everywhere"); prints the count.
    Revoke {
        /// The user id.
        #[arg(allow_negative_numbers = true)]
        user: i64,
        /// Keep this session (the current device): "log out my other devices".
        #[arg(long, value_name = "TOKEN")]
        except: Option<String>,
    },
    /// Delete one of a user's sessions by the handle `sessions` lists (a handle of another user's
    /// session deletes nothing).
    RevokeSession {
        /// The user id.
        #[arg(allow_negative_numbers = true)]
        user: i64,
        /// The session handle.
        handle: String,
    },
    /// Delete expired sessions in batches, with a progress bar on a terminal; prints the count.
    Cleanup {
        /// Rows removed per statement.
        #[arg(
            long,
            value_name = "ROWS",
            default_value_t = wasm_sessions::DEFAULT_CLEANUP_BATCH,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(wasm_sessions::MAX_CLEANUP_BATCH))
        )]
        batch_size: u32,
    },
    /// Print the Set-Cookie header value for a session (Secure, as the store's configuration says).
    Cookie {
        /// The session token.
        token: String,
    },
    /// Stop the embedded PostgreSQL cluster in --data-dir.
    StopDb,
    /// Print what the bundled session component imports and exports, and the SQL statements it declares
    /// (the only ones the host will send for it; no database needed).
    Component,
    /// Walk through the session API once on the chosen database, explaining each step.
    Demo,
    /// Serve the JSON API (OpenAPI at /openapi.json) and the demo web app until SIGINT/SIGTERM, after
    /// checking the component's statements as `check` does.
    ///
    /// Safe by default: the API under /api needs `Authorization: Bearer TOKEN` (--api-token /
    /// WASM_SESSIONS_API_TOKEN, else a token generated at start, printed once and written to
    /// $XDG_STATE_HOME/wasm-sessions/api-token, else $HOME/.local/state/wasm-sessions/api-token, mode
    /// 0600); requests whose Host names another server are refused (DNS rebinding); state-changing
    /// requests from other sites are refused (CSRF); the session cookie is `__Host-wasm_session`
    /// (Secure, HttpOnly, SameSite=Strict). /openapi.json and the demo need no token.
    Serve {
        /// The address to listen on (port 0 picks a free port; the address bound is printed). An address
        /// other than a loopback one needs an API token given with --api-token or
        /// WASM_SESSIONS_API_TOKEN.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Seconds between background deletions of expired sessions (0 turns them off).
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = 300,
            value_parser = clap::value_parser!(u64).range(0..=MAX_CLEANUP_INTERVAL)
        )]
        cleanup_interval: u64,
        /// The bearer token the JSON API requires: at least 32 visible ASCII characters (e.g. `openssl
        /// rand -hex 32`). Prefer the environment variable: a command-line argument is visible to other
        /// users in `ps`. Unset: a token is generated for this run.
        #[arg(
            long,
            value_name = "TOKEN",
            env = "WASM_SESSIONS_API_TOKEN",
            hide_env_values = true
        )]
        api_token: Option<Secret>,
        /// Another host name clients may send in the Host header, repeatable: NAME (any port) or
        /// NAME:PORT, e.g. the name of the machine or of a reverse proxy that passes Host on. Loopback
        /// names and the bound address are always allowed.
        #[arg(long = "allowed-host", value_name = "NAME[:PORT]")]
        allowed_hosts: Vec<wasm_sessions_cli::serve::HostPattern>,
    },
}

/// A secret argument: `Debug` does not show it, and clap never echoes it in an error (it takes any
/// text; the caller checks it).
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Where `serve` writes the token it generates: `$XDG_STATE_HOME/wasm-sessions/api-token`, else
/// `$HOME/.local/state/wasm-sessions/api-token` (relative values ignored, as for the cache).
///
/// # Errors
/// Neither variable holds an absolute path.
pub fn api_token_file() -> Result<PathBuf> {
    match default_api_token_file(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
        Some(path) => Ok(path),
        None => bail!(
            "no directory for the generated API token: neither XDG_STATE_HOME nor HOME is an \
             absolute path; give a token with --api-token or WASM_SESSIONS_API_TOKEN"
        ),
    }
}

fn default_api_token_file(
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let absolute = |value: Option<OsString>| value.map(PathBuf::from).filter(|p| p.is_absolute());
    let dir = match absolute(xdg_state_home) {
        Some(state) => state,
        None => absolute(home)?.join(".local").join("state"),
    };
    Some(dir.join("wasm-sessions").join("api-token"))
}

/// Checks a runtime role name (`[a-z_][a-z0-9_]{0,62}`, not reserved by PostgreSQL).
fn parse_role(arg: &str) -> Result<String, String> {
    wasm_sessions::RuntimeRole::new(arg)
        .map(|role| role.name().to_owned())
        .map_err(|e| e.to_string())
}

/// The compilation cache directory: `given` (`--cache-dir` / `WASM_SESSIONS_CACHE_DIR`) when it is not
/// empty, else `$XDG_CACHE_HOME/wasm-sessions`, else `$HOME/.cache/wasm-sessions`: never under the
/// working directory or the data directory.
///
/// # Errors
/// Neither variable holds an absolute path and no directory was given.
pub fn cache_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = given.filter(|d| !d.as_os_str().is_empty()) {
        return Ok(dir);
    }
    match default_cache_dir(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME")) {
        Some(dir) => Ok(dir),
        None => bail!(
            "no directory for the compilation cache: neither XDG_CACHE_HOME nor HOME is an absolute \
             path; set --cache-dir or WASM_SESSIONS_CACHE_DIR"
        ),
    }
}

/// `$XDG_CACHE_HOME/wasm-sessions`, else `$HOME/.cache/wasm-sessions`; relative values are ignored (the
/// XDG base directory rules), so the cache never lands under the working directory.
fn default_cache_dir(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |value: Option<OsString>| value.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute(xdg_cache_home) {
        return Some(xdg.join("wasm-sessions"));
    }
    absolute(home).map(|home| home.join(".cache").join("wasm-sessions"))
}

/// Parses `KEY=VALUE` (the string VALUE) or `KEY:=JSON` (a JSON value), as httpie does: the first `=`
/// separates, and a `:` right before it makes the value JSON. The value may contain `=`; the key must not
/// be empty.
fn parse_pair(arg: &str) -> Result<Pair, String> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err("expected KEY=VALUE or KEY:=JSON, but there is no '='".into());
    };
    let (key, json) = match key.strip_suffix(':') {
        Some(key) => (key, true),
        None => (key, false),
    };
    if key.is_empty() {
        return Err("expected KEY=VALUE or KEY:=JSON, but the key is empty".into());
    }
    let value = if json {
        serde_json::from_str(value).map_err(|e| {
            format!("the value of {key}:= is not JSON ({e}); for a string use {key}=...")
        })?
    } else {
        serde_json::Value::String(value.to_owned())
    };
    Ok((key.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_pair_splits_at_the_first_equals_sign_and_colon_equals_means_json() {
        use serde_json::json;
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), json!("b=c"))));
        assert_eq!(parse_pair("a="), Ok(("a".into(), json!(""))));
        assert_eq!(parse_pair("a=1"), Ok(("a".into(), json!("1"))));
        assert_eq!(parse_pair("n:=1"), Ok(("n".into(), json!(1))));
        assert_eq!(
            parse_pair(r#"tags:=["a", 2]"#),
            Ok(("tags".into(), json!(["a", 2])))
        );
        assert_eq!(parse_pair("a=b:=c"), Ok(("a".into(), json!("b:=c"))));
        assert_eq!(parse_pair("a:b=c"), Ok(("a:b".into(), json!("c"))));
        assert!(parse_pair("n:=not json").is_err());
        assert!(parse_pair("a").is_err());
        assert!(parse_pair("=b").is_err());
        assert!(parse_pair(":=1").is_err());
    }

    #[test]
    fn the_cache_defaults_to_the_user_cache_directory() {
        let dir = |xdg: Option<&str>, home: Option<&str>| {
            default_cache_dir(xdg.map(OsString::from), home.map(OsString::from))
        };
        assert_eq!(
            dir(Some("/x/cache"), Some("/home/u")),
            Some(PathBuf::from("/x/cache/wasm-sessions"))
        );
        assert_eq!(
            dir(Some("relative"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/wasm-sessions"))
        );
        assert_eq!(
            dir(Some(""), Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/wasm-sessions"))
        );
        assert_eq!(dir(None, Some("")), None);
        assert_eq!(dir(None, None), None);
        assert_eq!(
            cache_dir(Some(PathBuf::from("mine"))).unwrap(),
            Path::new("mine")
        );
    }

    #[test]
    fn the_generated_token_goes_to_the_user_state_directory() {
        let file = |xdg: Option<&str>, home: Option<&str>| {
            default_api_token_file(xdg.map(OsString::from), home.map(OsString::from))
        };
        assert_eq!(
            file(Some("/x/state"), Some("/home/u")),
            Some(PathBuf::from("/x/state/wasm-sessions/api-token"))
        );
        assert_eq!(
            file(Some("rel"), Some("/home/u")),
            Some(PathBuf::from(
                "/home/u/.local/state/wasm-sessions/api-token"
            ))
        );
        assert_eq!(file(None, Some("rel")), None);
    }

    #[test]
    fn serve_takes_a_token_and_allowed_hosts_and_never_echoes_a_token() {
        let parsed = Cli::try_parse_from([
            "wasm-sessions",
            "serve",
            "--api-token",
            "t0ps3cr3t",
            "--allowed-host",
            "Example.com:8443",
            "--allowed-host",
            "[::1]",
        ])
        .unwrap();
        let Command::Serve {
            api_token,
            allowed_hosts,
            ..
        } = &parsed.command
        else {
            panic!("{parsed:?}")
        };
        assert_eq!(api_token.as_ref().map(|t| t.0.as_str()), Some("t0ps3cr3t"));
        assert_eq!(allowed_hosts.len(), 2);
        assert_eq!(allowed_hosts[0].to_string(), "example.com:8443");
        assert!(!format!("{parsed:?}").contains("t0ps3cr3t"));
        assert!(
            Cli::try_parse_from(["wasm-sessions", "serve", "--allowed-host", "*.example"]).is_err()
        );
    }

    #[test]
    fn numeric_options_report_their_ranges() {
        use clap::error::ErrorKind;
        let parse = |args: &[&str]| Cli::try_parse_from([&["wasm-sessions"], args].concat());
        for bad in [
            &["cleanup", "--batch-size", "0"][..],
            &["cleanup", "--batch-size", "100001"],
            &["create", "--expires-in", "0"],
            &["create", "--expires-in", "86401"],
            &["create", "--idle-timeout", "0"],
            &["create", "--idle-timeout", "86401"],
            &["serve", "--cleanup-interval", "604801"],
            &["grant-runtime-role", "--role", "Bad-Name"],
            &["grant-runtime-role", "--role", "pg_monitor"],
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{bad:?}");
        }
        assert!(
            parse(&["cleanup", "--batch-size", "0"])
                .unwrap_err()
                .to_string()
                .contains("1..=100000")
        );
        assert!(
            parse(&["create", "--expires-in", "0"])
                .unwrap_err()
                .to_string()
                .contains("1..=86400")
        );
        assert!(parse(&["cleanup", "--batch-size", "100000"]).is_ok());
        assert!(parse(&["create", "--expires-in", "86400"]).is_ok());
        assert_eq!(
            parse(&["create", "--expires-in", "5", "--browser-session"])
                .unwrap_err()
                .kind(),
            ErrorKind::ArgumentConflict
        );
        assert!(parse(&["cookie", "x", "--http"]).is_err());
        assert!(parse(&["serve", "--trust-proxy"]).is_err());
        assert!(parse(&["serve", "--cleanup-interval", "0"]).is_ok());
        assert!(parse(&["grant-runtime-role", "--role", "app_rt", "--apply"]).is_ok());
    }

    #[test]
    fn the_grammar_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
