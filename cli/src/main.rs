//! `wasm-sessions`: manage the sessions of a wasm-sessions store from the command line.
//!
//! Parses the arguments, sets up logging to stderr (`RUST_LOG`, default `warn`), runs one command and
//! prints any error as a single `error: ...` line on stderr with exit code 1. A reader that closes stdout
//! early (`wasm-sessions create | head -1`) ends the command quietly with exit code 0.

mod admin;
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
    quiet_on_closed_stdout();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if stdout_closed(&error) => ExitCode::SUCCESS,
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

/// Whether `error` is a write to stdout that failed because the reader went away (`EPIPE`; Rust ignores
/// `SIGPIPE`, so the write returns the error instead of killing the process). Output is written with a
/// context naming stdout, which tells it from a broken pipe to the database.
fn stdout_closed(error: &anyhow::Error) -> bool {
    let broken_pipe = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken_pipe
        && error
            .chain()
            .any(|cause| cause.to_string().contains("stdout"))
}

/// `print!`/`println!` panic when stdout's reader is gone ("failed printing to stdout: Broken pipe");
/// that ends the process quietly with exit code 0 instead. Every other panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`, except the compilation cache's benign write
/// races), coloured only on a terminal.
fn init_tracing() {
    // wasmtime's compilation cache warns when two processes write the same entry at once ("File exists"):
    // the entry is there either way, so that race is not worth a line on stderr.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,wasmtime_internal_cache=error"));
    // Colours only on a terminal (a log file or pipe gets plain text), and never with NO_COLOR.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    fn pipe_error() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::BrokenPipe)
    }

    #[test]
    fn only_a_closed_stdout_is_quiet() {
        let stdout: anyhow::Result<()> = Err(pipe_error()).context("writing to stdout");
        assert!(stdout_closed(&stdout.unwrap_err()));
        let database: anyhow::Result<()> = Err(pipe_error()).context("loading the session");
        assert!(!stdout_closed(&database.unwrap_err()));
        assert!(!stdout_closed(&anyhow::anyhow!("writing to stdout")));
    }
}
