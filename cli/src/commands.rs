//! One function per command. Tokens and session data never go to tracing.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use wasm_sessions::{Session, SessionStore, StoreError};

use crate::admin;
use crate::cli::{Cli, Command, Pair};
use crate::database;
use crate::output::{Output, rfc3339};

/// Runs the parsed command line.
///
/// # Errors
/// Anything the database, the cluster or the store reports, with context naming the step.
pub async fn run(cli: Cli) -> Result<()> {
    let out = Output::new(cli.json);
    if let Command::StopDb = cli.command {
        return stop_db(out, &cli.data_dir).await;
    }
    if let Command::Component = cli.command {
        return component(out);
    }
    let target = database::Target::new(cli.database_url, cli.owner_url, &cli.data_dir)?;
    if let Command::Migrate = cli.command {
        return admin::migrate(out, &target).await;
    }
    if let Command::GrantRuntimeRole { role, apply } = &cli.command {
        return admin::grant_runtime_role(out, &target, role.as_deref(), *apply).await;
    }
    let cache_dir = crate::cli::cache_dir(cli.cache_dir)?;
    let driver = database::open(&target).await?;
    let store = SessionStore::builder(driver)
        .compilation_cache(&cache_dir)
        .build()
        .await
        .with_context(|| {
            format!(
                "starting the session store (compilation cache in {})",
                cache_dir.display()
            )
        })?;
    match cli.command {
        Command::Migrate
        | Command::StopDb
        | Command::Component
        | Command::GrantRuntimeRole { .. } => unreachable!("handled above"),
        Command::Create { max_age, user, set } => create(out, &store, max_age, user, set).await,
        Command::Get { token } => get(out, &store, &token).await,
        Command::Set { token, pairs } => set(out, &store, &token, pairs).await,
        Command::Unset { token, keys } => unset(out, &store, &token, &keys).await,
        Command::Login { token, user } => login(out, &store, &token, user).await,
        Command::Logout { token } => logout(out, &store, &token).await,
        Command::Delete { token } => delete(out, &store, &token).await,
        Command::Sessions { user } => sessions(out, &store, user).await,
        Command::Revoke { user, except } => revoke(out, &store, user, except.as_deref()).await,
        Command::RevokeSession { handle } => revoke_session(out, &store, &handle).await,
        Command::Cleanup { batch_size } => cleanup(out, &store, batch_size).await,
        Command::Cookie { token, http } => cookie(out, &store, &token, http).await,
        Command::Demo => demo(out, &store).await,
        Command::Serve {
            listen,
            cleanup_interval,
            trust_proxy,
        } => {
            let options = wasm_sessions_cli::serve::ServeOptions {
                trust_forwarded_proto: trust_proxy,
            };
            wasm_sessions_cli::serve::run(
                store,
                listen,
                Duration::from_secs(cleanup_interval),
                options,
            )
            .await
        }
    }
}

/// `component`: the bundled component's imports and exports, one per line.
fn component(out: Output) -> Result<()> {
    let world = wasm_sessions::component_world(wasm_sessions::BUNDLED_COMPONENT)
        .context("reading the bundled component")?;
    for import in &world.imports {
        out.result(format!("import {import}"), json!({ "import": import }))?;
    }
    for export in &world.exports {
        out.result(format!("export {export}"), json!({ "export": export }))?;
    }
    Ok(())
}

/// `stop-db`: stops the embedded cluster, saying whether it was running.
async fn stop_db(out: Output, data_dir: &Path) -> Result<()> {
    let (dir, stopped) = database::stop(data_dir).await?;
    let human = if stopped {
        format!("stopped the embedded PostgreSQL in {}", dir.display())
    } else {
        format!(
            "the embedded PostgreSQL in {} was not running",
            dir.display()
        )
    };
    out.result(
        human,
        json!({ "stopped": stopped, "data_dir": dir.display().to_string() }),
    )
}

/// `create`: a new saved session with optional user and data; prints it with its token.
async fn create(
    out: Output,
    store: &SessionStore,
    max_age: Option<i64>,
    user: Option<i64>,
    pairs: Vec<Pair>,
) -> Result<()> {
    let max_age = max_age.unwrap_or(store.config().max_age);
    let mut session = store
        .new_session(max_age)
        .await
        .context("creating the session")?;
    if let Some(user) = user {
        session.set_user(user);
    }
    for (key, value) in pairs {
        session.set(key, value);
    }
    save(store, &mut session).await?;
    out.session(&session, true)
}

/// `get`: prints a session.
async fn get(out: Output, store: &SessionStore, token: &str) -> Result<()> {
    let session = load(store, token).await?;
    out.session(&session, false)
}

/// `set`: stores each pair and prints the session.
async fn set(out: Output, store: &SessionStore, token: &str, pairs: Vec<Pair>) -> Result<()> {
    let mut session = load(store, token).await?;
    for (key, value) in pairs {
        session.set(key, value);
    }
    save(store, &mut session).await?;
    out.session(&session, false)
}

/// `unset`: removes each key and prints the session.
async fn unset(out: Output, store: &SessionStore, token: &str, keys: &[String]) -> Result<()> {
    let mut session = load(store, token).await?;
    for key in keys {
        session.delete(key);
    }
    save(store, &mut session).await?;
    out.session(&session, false)
}

/// `login`: sets the user and rotates the token (one statement); prints the session with its new token.
async fn login(out: Output, store: &SessionStore, token: &str, user: i64) -> Result<()> {
    let mut session = load(store, token).await?;
    session.set_user(user);
    regenerate(store, &mut session).await?;
    out.session(&session, true)
}

/// `logout`: clears the user and rotates the token; prints the session with its new token.
async fn logout(out: Output, store: &SessionStore, token: &str) -> Result<()> {
    let mut session = load(store, token).await?;
    session.clear_user();
    regenerate(store, &mut session).await?;
    out.session(&session, true)
}

/// `delete`: deletes a session; prints whether it existed.
async fn delete(out: Output, store: &SessionStore, token: &str) -> Result<()> {
    let deleted = store.delete(token).await.context("deleting the session")?;
    let human = if deleted {
        "deleted"
    } else {
        "no such session"
    };
    out.result(human, json!({ "deleted": deleted }))
}

/// `sessions`: one line per unexpired session of the user.
async fn sessions(out: Output, store: &SessionStore, user: i64) -> Result<()> {
    let list = store
        .get_user_sessions(user)
        .await
        .context("listing the user's sessions")?;
    if list.is_empty() && !out.is_json() {
        return out.result(format!("user {user} has no sessions"), json!(null));
    }
    for session in &list {
        out.user_session(session)?;
    }
    Ok(())
}

/// `revoke`: deletes every session of the user (but `except`, when given); prints the count.
async fn revoke(out: Output, store: &SessionStore, user: i64, except: Option<&str>) -> Result<()> {
    let revoked = match except {
        Some(keep) => store.delete_user_sessions_except(user, keep).await,
        None => store.delete_user_sessions(user).await,
    }
    .context("revoking the user's sessions")?;
    out.result(
        format!("revoked {revoked} session(s) of user {user}"),
        json!({ "revoked": revoked }),
    )
}

/// `revoke-session`: deletes one session by handle; prints whether it existed.
async fn revoke_session(out: Output, store: &SessionStore, handle: &str) -> Result<()> {
    let revoked = store
        .revoke_session(handle)
        .await
        .context("revoking the session")?;
    let human = if revoked {
        "revoked"
    } else {
        "no such session"
    };
    out.result(human, json!({ "revoked": revoked }))
}

/// `cleanup`: deletes expired sessions in batches of `batch_size`, drawing a progress bar on stderr
/// when it is a terminal; prints the count (one JSON line with `--json`).
async fn cleanup(out: Output, store: &SessionStore, batch_size: u32) -> Result<()> {
    let total = store
        .count_expired(SystemTime::now())
        .await
        .context("counting expired sessions")?;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} removing expired sessions [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
        )
        .context("the progress bar template")?
        .progress_chars("=> "),
    );
    let removed = store
        .cleanup_in_batches(batch_size, |progress| {
            if progress.removed_total > bar.length().unwrap_or(0) {
                // Sessions that expired after the count was taken.
                bar.set_length(progress.removed_total);
            }
            bar.set_position(progress.removed_total);
        })
        .await;
    bar.finish_and_clear();
    let removed = removed.context("removing expired sessions")?;
    out.result(
        format!("removed {removed} expired session(s)"),
        json!({ "removed": removed }),
    )
}

/// `cookie`: prints the Set-Cookie header value (`Secure` unless `http`).
async fn cookie(out: Output, store: &SessionStore, token: &str, http: bool) -> Result<()> {
    let session = load(store, token).await?;
    let header = store
        .set_cookie_header(&session, !http)
        .await
        .context("building the Set-Cookie header")?;
    out.result(&header, json!({ "set_cookie": header }))
}

/// `demo`: walks through the API once, printing each step in plain words (tokens shortened).
async fn demo(out: Output, store: &SessionStore) -> Result<()> {
    let mut step = 0u32;
    let mut say = |text: String| {
        step += 1;
        out.result(
            format!("{step:>2}. {text}"),
            json!({ "step": step, "message": text }),
        )
    };

    let mut session = store
        .new_session(store.config().max_age)
        .await
        .context("creating the session")?;
    session.set("theme", "dark");
    session.set("cart", "3 items");
    say(format!(
        "created session {} in memory with data theme=dark, cart=3 items",
        short(&session.id)
    ))?;

    save(store, &mut session).await?;
    say(format!(
        "saved it; it expires at {}",
        rfc3339(session.expires_at)
    ))?;

    let loaded = load(store, &session.id).await?;
    say(format!(
        "loaded it back: theme={}, cart={}",
        loaded.get("theme").unwrap_or("?"),
        loaded.get("cart").unwrap_or("?")
    ))?;

    let old = session.id.clone();
    session.set_user(42);
    regenerate(store, &mut session).await?;
    say(format!(
        "logged in as user 42: the id was regenerated, {} -> {}",
        short(&old),
        short(&session.id)
    ))?;

    match store.load(&old).await {
        Err(StoreError::NotFound) => say(format!(
            "the old token {} no longer loads: {}",
            short(&old),
            StoreError::NotFound
        ))?,
        Ok(_) => bail!("the old token still loads after the id was regenerated"),
        Err(error) => return Err(error).context("loading the old token"),
    }

    let list = store
        .get_user_sessions(42)
        .await
        .context("listing the user's sessions")?;
    say(format!("user 42 has {} session(s):", list.len()))?;
    for listed in &list {
        say(format!(
            "  handle {} created {} with {} key(s)",
            short(&listed.handle),
            rfc3339(listed.created_at),
            listed.data.len()
        ))?;
    }

    let header = store
        .set_cookie_header(&session, true)
        .await
        .context("building the Set-Cookie header")?;
    say(format!(
        "Set-Cookie: {}",
        header.replace(&session.id, &short(&session.id))
    ))?;

    let mut brief = store
        .new_session(1)
        .await
        .context("creating the 1-second session")?;
    save(store, &mut brief).await?;
    say(format!(
        "created session {} that lives 1 second; waiting 1.1 s",
        short(&brief.id)
    ))?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    match store.load(&brief.id).await {
        Err(StoreError::Expired) => say(format!("loading it now gives: {}", StoreError::Expired))?,
        Ok(_) => bail!("the 1-second session still loads after 1.1 s"),
        Err(error) => return Err(error).context("loading the 1-second session"),
    }

    let removed = store.cleanup().await.context("removing expired sessions")?;
    say(format!("cleanup removed {removed} expired session(s)"))?;

    let revoked = store
        .delete_user_sessions(42)
        .await
        .context("revoking the user's sessions")?;
    say(format!(
        "logged user 42 out everywhere: {revoked} session(s) deleted"
    ))?;
    Ok(())
}

/// Loads a session, with context that does not echo the token.
async fn load(store: &SessionStore, token: &str) -> Result<Session> {
    store.load(token).await.context("loading the session")
}

/// Saves a session.
async fn save(store: &SessionStore, session: &mut Session) -> Result<()> {
    store.save(session).await.context("saving the session")
}

/// Moves a session to a fresh token, persisting its current state.
async fn regenerate(store: &SessionStore, session: &mut Session) -> Result<()> {
    store
        .regenerate_id(session)
        .await
        .context("regenerating the session id")
}

/// The first 8 characters of a token or handle, then "…".
fn short(id: &str) -> String {
    let prefix: String = id.chars().take(8).collect();
    format!("{prefix}…")
}
