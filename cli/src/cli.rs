//! The command-line grammar (clap derive types).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Manage HTTP sessions stored by the wasm-sessions WebAssembly component in PostgreSQL.
///
/// Without --database-url / DATABASE_URL, a private PostgreSQL cluster is started (or reused) in
/// --data-dir and migrated automatically.
#[derive(Debug, Parser)]
#[command(name = "wasm-sessions", version)]
pub struct Cli {
    /// PostgreSQL connection URL; the schema is migrated only by `migrate`.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Data directory of the embedded PostgreSQL cluster, used when no database URL is given.
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        default_value = ".wasm-sessions/pgdata"
    )]
    pub data_dir: PathBuf,

    /// Where the compiled session component is cached between runs [default: $XDG_CACHE_HOME/wasm-sessions,
    /// else a `wasm-cache` directory beside --data-dir].
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

/// One `KEY=VALUE` argument.
pub type Pair = (String, String);

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the schema migrations (idempotent).
    Migrate,
    /// Create and save a new session; prints its token.
    Create {
        /// Lifetime in seconds (default: the store's configured max age).
        #[arg(long, value_name = "SECONDS")]
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
        /// Rows removed per statement (at most 100000).
        #[arg(long, value_name = "ROWS", default_value_t = wasm_sessions::DEFAULT_CLEANUP_BATCH)]
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
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        cleanup_interval: u64,
        /// Trust X-Forwarded-Proto for the cookie's Secure attribute (only behind a TLS proxy).
        #[arg(long)]
        trust_proxy: bool,
    },
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
    use super::*;

    #[test]
    fn a_pair_splits_at_the_first_equals_sign() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair("a="), Ok(("a".into(), String::new())));
        assert!(parse_pair("a").is_err());
        assert!(parse_pair("=b").is_err());
    }

    #[test]
    fn the_grammar_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
