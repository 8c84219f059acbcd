//! `wasm-sessions`: manage the sessions of a wasm-sessions store from the command line.
//!
//! Parses the arguments, sets up logging to stderr (`RUST_LOG`, default `warn`), runs one command and
//! prints any error as a single `error: ...` line on stderr with exit code 1.

mod cli;
mod commands;
mod database;
mod output;

use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` joins the whole cause chain with ": "; folding newlines keeps it to one line.
            let message = format!("{error:#}");
            let message: Vec<&str> = message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", message.join(" "));
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`, except the compilation cache's benign write
/// races).
fn init_tracing() {
    // wasmtime's compilation cache warns when two processes write the same entry at once ("File exists"):
    // the entry is there either way, so that race is not worth a line on stderr.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,wasmtime_internal_cache=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
