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

    /// Print each result as one JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The longest session lifetime the component accepts, in seconds (400 days).
const MAX_AGE_LIMIT: i64 = 34_560_000;

/// The longest `serve --cleanup-interval`, in seconds (a week).
const MAX_CLEANUP_INTERVAL: u64 = 7 * 86_400;

/// One `KEY=VALUE` argument.
pub type Pair = (String, String);

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the schema migrations as the schema's owner (--owner-url / DATABASE_OWNER_URL, else the
    /// database URL; idempotent).
    Migrate,
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
    Create {
        /// Lifetime in seconds (default: the store's configured max age).
        #[arg(
            long,
            value_name = "SECONDS",
            value_parser = clap::value_parser!(i64).range(1..=MAX_AGE_LIMIT)
        )]
        max_age: Option<i64>,
        /// Authenticated user id.
        #[arg(long, value_name = "ID", allow_negative_numbers = true)]
        user: Option<i64>,
        /// Data to store, repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_pair)]
        set: Vec<Pair>,
    },
    /// Show a session.
    Get {
        /// The session token.
        token: String,
    },
    /// Store data in a session.
    Set {
        /// The session token.
        token: String,
        /// Data to store.
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_pair)]
        pairs: Vec<Pair>,
    },
    /// Remove keys from a session.
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
    /// Delete one session by the handle `sessions` lists.
    RevokeSession {
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
    /// Print the Set-Cookie header value for a session.
    Cookie {
        /// The session token.
        token: String,
        /// The request came over plain HTTP (no `Secure` attribute).
        #[arg(long)]
        http: bool,
    },
    /// Stop the embedded PostgreSQL cluster in --data-dir.
    StopDb,
    /// Print what the bundled session component imports and exports (no database needed).
    Component,
    /// Walk through the session API once on the chosen database, explaining each step.
    Demo,
    /// Serve the JSON API (OpenAPI at /openapi.json) and the demo web app until SIGINT/SIGTERM.
    Serve {
        /// The address to listen on (port 0 picks a free port; the URL is printed).
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
        /// Trust X-Forwarded-Proto for the cookie's Secure attribute (only behind a TLS proxy).
        #[arg(long)]
        trust_proxy: bool,
    },
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

/// Parses `KEY=VALUE` (the value may contain `=`; the key must not be empty).
fn parse_pair(arg: &str) -> Result<Pair, String> {
    match arg.split_once('=') {
        Some(("", _)) => Err("expected KEY=VALUE, but the key is empty".into()),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err("expected KEY=VALUE, but there is no '='".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_pair_splits_at_the_first_equals_sign() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair("a="), Ok(("a".into(), String::new())));
        assert!(parse_pair("a").is_err());
        assert!(parse_pair("=b").is_err());
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
    fn numeric_options_report_their_ranges() {
        use clap::error::ErrorKind;
        let parse = |args: &[&str]| Cli::try_parse_from([&["wasm-sessions"], args].concat());
        for bad in [
            &["cleanup", "--batch-size", "0"][..],
            &["cleanup", "--batch-size", "100001"],
            &["create", "--max-age", "0"],
            &["create", "--max-age", "34560001"],
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
        assert!(parse(&["cleanup", "--batch-size", "100000"]).is_ok());
        assert!(parse(&["serve", "--cleanup-interval", "0"]).is_ok());
        assert!(parse(&["grant-runtime-role", "--role", "app_rt", "--apply"]).is_ok());
    }

    #[test]
    fn the_grammar_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
