//! One function per command. Tokens and session data never go to tracing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use wasm_sessions::{
    Expiry, ManualClock, PrepareFuture, QueryFuture, Session, SessionStore, SessionStoreBuilder,
    SqlDriver, SqlError, SqlValue, StoreError,
};
use wasm_sessions_cli::serve;
use wasm_sessions_cli::view::rfc3339;

use crate::admin;
use crate::cli::{Cli, Command, Pair, Secret};
use crate::database;
use crate::output::Output;

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
        let cache_dir = crate::cli::cache_dir(cli.cache_dir)?;
        return component(out, &cache_dir).await;
    }
    // `serve` checks its API token and listen address before anything connects.
    let serve_auth = match &cli.command {
        Command::Serve {
            listen, api_token, ..
        } => Some(serve_auth(*listen, api_token.as_ref())?),
        _ => None,
    };
    let target = database::Target::new(cli.database_url, cli.owner_url, &cli.data_dir)?;
    if let Command::GrantRuntimeRole { role, apply } = &cli.command {
        return admin::grant_runtime_role(out, &target, role.as_deref(), *apply).await;
    }
    let cache_dir = crate::cli::cache_dir(cli.cache_dir)?;
    if let Command::Migrate = cli.command {
        return admin::migrate(out, &target, &cache_dir).await;
    }
    let options = wasm_sessions::PostgresOptions {
        statement_mode: cli.statement_mode.into(),
        ..wasm_sessions::PostgresOptions::default()
    };
    let driver = database::open_with(&target, &options).await?;
    let builder = SessionStore::builder(driver.clone());
    let builder = if serve_auth.is_some() {
        // `serve`'s cookie and lifetimes (one function, shared with the tests of the demo and the API).
        builder.configure(wasm_sessions_cli::serve::store_config)
    } else {
        builder
    };
    let store = build(builder, &cache_dir).await?;
    match cli.command {
        Command::Migrate
        | Command::StopDb
        | Command::Component
        | Command::GrantRuntimeRole { .. } => unreachable!("handled above"),
        Command::Check => check(out, &store).await,
        Command::Create {
            expires_in,
            idle_timeout,
            browser_session,
            user,
            label,
            set,
        } => {
            let expiry = if let Some(seconds) = expires_in {
                Some(Expiry::AtDateTime(store.now() + secs(seconds)))
            } else if let Some(seconds) = idle_timeout {
                Some(Expiry::OnInactivity(secs(seconds)))
            } else if browser_session {
                Some(Expiry::OnSessionEnd)
            } else {
                None
            };
            create(out, &store, expiry, user, label, set).await
        }
        Command::Get { token } => get(out, &store, &token).await,
        Command::Set { token, pairs } => set(out, &store, &token, pairs).await,
        Command::Unset { token, keys } => unset(out, &store, &token, &keys).await,
        Command::Login { token, user } => login(out, &store, &token, user).await,
        Command::Logout { token } => logout(out, &store, &token).await,
        Command::Delete { token } => delete(out, &store, &token).await,
        Command::Sessions { user } => sessions(out, &store, user).await,
        Command::Revoke { user, except } => revoke(out, &store, user, except.as_deref()).await,
        Command::RevokeSession { user, handle } => revoke_session(out, &store, user, &handle).await,
        Command::Cleanup { batch_size } => cleanup(out, &store, batch_size).await,
        Command::Cookie { token } => cookie(out, &store, &token).await,
        Command::Demo => {
            // A second store on the same database whose clock runs an hour behind: the demo's expired
            // session is created in the past instead of waiting for it to expire.
            let clock = ManualClock::new(SystemTime::now() - Duration::from_secs(3600));
            let past = build(SessionStore::builder(driver).clock(clock), &cache_dir).await?;
            demo(out, &store, &past).await
        }
        Command::Serve {
            listen,
            cleanup_interval,
            api_token: _,
            allowed_hosts,
        } => {
            store.check_statements().await.context(
                "checking the component's statements as the runtime role before serving (see \
                 `wasm-sessions check`)",
            )?;
            let auth = serve_auth.expect("checked above for serve");
            serve(store, listen, cleanup_interval, auth, allowed_hosts).await
        }
    }
}

/// Where `serve`'s API token comes from.
enum ServeAuth {
    /// `--api-token` / `WASM_SESSIONS_API_TOKEN`.
    Configured(serve::ApiToken),
    /// Generated at start and written to this file.
    Generate(PathBuf),
}

/// Checks `serve`'s token and address: a configured token must be acceptable, and an address other
/// than a loopback one needs one (a generated token is printed on stdout, which should not be what
/// guards a network-facing API).
fn serve_auth(listen: SocketAddr, token: Option<&Secret>) -> Result<ServeAuth> {
    match token {
        Some(Secret(token)) => serve::ApiToken::new(token)
            .map(ServeAuth::Configured)
            .context("the API token (--api-token / WASM_SESSIONS_API_TOKEN) is refused"),
        None if !listen.ip().is_loopback() => bail!(
            "refusing to listen on {listen} without an API token: an address other than a loopback \
             one exposes the JSON API to the network, so give its token explicitly with --api-token \
             or the WASM_SESSIONS_API_TOKEN environment variable (e.g. `export \
             WASM_SESSIONS_API_TOKEN=$(openssl rand -hex 32)`), or listen on 127.0.0.1"
        ),
        None => Ok(ServeAuth::Generate(crate::cli::api_token_file()?)),
    }
}

/// `serve`: binds, says where, and serves until a signal. A generated token is written to its file
/// before the server listens, and printed once after the address.
async fn serve(
    store: SessionStore,
    listen: SocketAddr,
    cleanup_interval: u64,
    auth: ServeAuth,
    allowed_hosts: Vec<serve::HostPattern>,
) -> Result<()> {
    let (token, generated) = match auth {
        ServeAuth::Configured(token) => (token, None),
        ServeAuth::Generate(file) => {
            let text = serve::generate_token()?;
            serve::write_token_file(&file, &text)?;
            let token = serve::ApiToken::new(&text).context("the generated token")?;
            (token, Some((text, file)))
        }
    };
    let options = allowed_hosts.into_iter().fold(
        serve::ServeOptions::new(token),
        serve::ServeOptions::allow_host,
    );
    let listening = serve::listen(listen).await?;
    match generated {
        Some((text, file)) => println!(
            "  API token (generated for this run; also in {}, mode 0600): {text}",
            file.display()
        ),
        None => println!("  API token: the one given with --api-token / WASM_SESSIONS_API_TOKEN"),
    }
    serve::run(
        store,
        listening,
        Duration::from_secs(cleanup_interval),
        options,
    )
    .await
}

/// Whole seconds from a range-checked option (clap's ranges keep them positive).
fn secs(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// Builds the store from `builder` with the compilation cache in `cache_dir`.
pub async fn build(builder: SessionStoreBuilder, cache_dir: &Path) -> Result<SessionStore> {
    builder
        .compilation_cache(cache_dir)
        .build()
        .await
        .with_context(|| {
            format!(
                "starting the session store (compilation cache in {})",
                cache_dir.display()
            )
        })
}

/// A store that reaches no database, for what needs only the component (its declared statements, its
/// configuration): building a store sends no SQL.
async fn offline_store(cache_dir: Option<&Path>) -> Result<SessionStore> {
    let builder = SessionStore::builder(NoDatabase);
    match cache_dir {
        Some(dir) => build(builder, dir).await,
        None => builder.build().await.context("starting the session store"),
    }
}

/// The driver of [`offline_store`]: refuses every statement unsent.
struct NoDatabase;

impl NoDatabase {
    fn refused() -> SqlError {
        SqlError::Refused("this command connects to no database".to_owned())
    }
}

impl SqlDriver for NoDatabase {
    fn query<'a>(&'a self, _statement: &'a str, _params: &'a [SqlValue]) -> QueryFuture<'a> {
        Box::pin(async { Err(Self::refused()) })
    }

    fn prepare<'a>(&'a self, _statement: &'a str) -> PrepareFuture<'a> {
        Box::pin(async { Err(Self::refused()) })
    }
}

/// `component`: the bundled component's imports and exports, then every SQL statement it declares (the
/// pinned set the host will send, for review), one per line. Needs no database.
async fn component(out: Output, cache_dir: &Path) -> Result<()> {
    let world = wasm_sessions::component_world(wasm_sessions::BUNDLED_COMPONENT)
        .context("reading the bundled component")?;
    for import in &world.imports {
        out.result(format!("import {import}"), json!({ "import": import }))?;
    }
    for export in &world.exports {
        out.result(format!("export {export}"), json!({ "export": export }))?;
    }
    let store = offline_store(Some(cache_dir)).await?;
    for statement in store.statements() {
        out.result(
            format!("statement {statement}"),
            json!({ "statement": statement }),
        )?;
    }
    Ok(())
}

/// `check`: prepares every declared statement as the runtime role.
async fn check(out: Output, store: &SessionStore) -> Result<()> {
    store
        .check_statements()
        .await
        .context("checking the component's statements as the runtime role")?;
    let count = store.statements().len();
    out.result(
        format!("all {count} statements of the component prepare as the runtime role"),
        json!({ "prepared": count, "as": "runtime role" }),
    )
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

/// `create`: a new saved session with optional expiry, user, label and data; prints it with its token.
async fn create(
    out: Output,
    store: &SessionStore,
    expiry: Option<Expiry>,
    user: Option<i64>,
    label: Option<String>,
    pairs: Vec<Pair>,
) -> Result<()> {
    let mut session = store
        .new_session_with(expiry)
        .await
        .context("creating the session")?;
    if let Some(user) = user {
        session.set_user(user);
    }
    if label.is_some() {
        session.set_label(label);
    }
    for (key, value) in pairs {
        session.insert(key, value).context("storing a value")?;
    }
    save(store, &mut session).await?;
    out.new_session(&session)
}

/// `get`: prints a session (by handle; the token is not repeated).
async fn get(out: Output, store: &SessionStore, token: &str) -> Result<()> {
    let session = load(store, token).await?;
    out.session(&session)
}

/// `set`: stores each pair, writing only these keys, and prints the session as saved (other requests'
/// changes to other keys merged).
async fn set(out: Output, store: &SessionStore, token: &str, pairs: Vec<Pair>) -> Result<()> {
    let mut session = load(store, token).await?;
    for (key, value) in pairs {
        session.insert(key, value).context("storing a value")?;
    }
    save_changes(store, &mut session).await?;
    out.session(&session)
}

/// `unset`: removes each key, writing only these keys, and prints the session as saved.
async fn unset(out: Output, store: &SessionStore, token: &str, keys: &[String]) -> Result<()> {
    let mut session = load(store, token).await?;
    for key in keys {
        session.remove(key);
    }
    save_changes(store, &mut session).await?;
    out.session(&session)
}

/// `login`: sets the user and rotates the token (one statement); prints the session with its new token.
async fn login(out: Output, store: &SessionStore, token: &str, user: i64) -> Result<()> {
    let mut session = load(store, token).await?;
    session.set_user(user);
    regenerate(store, &mut session).await?;
    out.new_session(&session)
}

/// `logout`: clears the user and rotates the token; prints the session with its new token.
async fn logout(out: Output, store: &SessionStore, token: &str) -> Result<()> {
    let mut session = load(store, token).await?;
    session.clear_user();
    regenerate(store, &mut session).await?;
    out.new_session(&session)
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

/// `revoke-session`: deletes one of the user's sessions by handle (one statement; the guest checks the
/// handle); prints whether it existed.
async fn revoke_session(out: Output, store: &SessionStore, user: i64, handle: &str) -> Result<()> {
    let revoked = store
        .revoke_session(user, handle)
        .await
        .context("revoking the session")?;
    let human = if revoked {
        "revoked"
    } else {
        "no such session of this user"
    };
    out.result(human, json!({ "revoked": revoked }))
}

/// `cleanup`: deletes expired sessions in batches of `batch_size` (the store's one cleanup loop), drawing
/// a progress bar on stderr when it is a terminal; prints the count (one JSON line with `--json`).
async fn cleanup(out: Output, store: &SessionStore, batch_size: u32) -> Result<()> {
    let total = store
        .count_expired(store.now())
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

/// `cookie`: prints the Set-Cookie header value (attributes from the store's configuration).
async fn cookie(out: Output, store: &SessionStore, token: &str) -> Result<()> {
    let session = load(store, token).await?;
    let header = store
        .cookie_header(&session)
        .await
        .context("building the Set-Cookie header")?;
    out.result(&header, json!({ "set_cookie": header }))
}

/// `demo`: walks through the API once, printing each step in plain words (tokens shortened). `past` is a
/// store on the same database whose clock runs an hour behind.
async fn demo(out: Output, store: &SessionStore, past: &SessionStore) -> Result<()> {
    let mut step = 0u32;
    let mut say = |text: String| {
        step += 1;
        out.result(
            format!("{step:>2}. {text}"),
            json!({ "step": step, "message": text }),
        )
    };

    let mut session = store.new_session().await.context("creating the session")?;
    session.set("theme", "dark");
    session.insert("cart_items", 3).context("storing a value")?;
    say(format!(
        "created session {} in memory with data theme=\"dark\", cart_items=3 (values are JSON)",
        short(session.id())
    ))?;

    save(store, &mut session).await?;
    say(format!(
        "saved it; it expires at {}",
        rfc3339(session.expires_at())
    ))?;

    let loaded = load(store, session.id()).await?;
    let items: Option<u32> = loaded.get("cart_items").context("reading cart_items")?;
    say(format!(
        "loaded it back: theme={}, cart_items={} (a number)",
        loaded.get_str("theme").unwrap_or("?"),
        items.map_or_else(|| "?".to_owned(), |n| n.to_string())
    ))?;

    // Two copies change different keys; each save writes only its own key, so both changes stay.
    let mut first = load(store, session.id()).await?;
    let mut second = load(store, session.id()).await?;
    first.set("language", "en");
    second.insert("cart_items", 4).context("storing a value")?;
    save(store, &mut first).await?;
    save(store, &mut second).await?;
    let merged = load(store, session.id()).await?;
    say(format!(
        "two copies changed different keys and saved one after the other: both changes stayed \
         (language={}, cart_items={})",
        merged.get_str("language").unwrap_or("?"),
        merged
            .get_value("cart_items")
            .map_or_else(|| "?".to_owned(), ToString::to_string)
    ))?;

    let old = session.id().to_owned();
    let mut session = merged;
    session.set_user(42);
    regenerate(store, &mut session).await?;
    say(format!(
        "logged in as user 42: the id was regenerated, {} -> {}",
        short(&old),
        short(session.id())
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
        .cookie_header(&session)
        .await
        .context("building the Set-Cookie header")?;
    say(format!(
        "Set-Cookie: {}",
        header.replace(session.id(), &short(session.id()))
    ))?;

    let minute_from_then = past.now() + Duration::from_secs(60);
    let mut brief = past
        .new_session_with(Some(Expiry::AtDateTime(minute_from_then)))
        .await
        .context("creating the brief session")?;
    save(past, &mut brief).await?;
    say(format!(
        "created session {} as of an hour ago (a store whose clock runs an hour behind) that lived \
         one minute",
        short(brief.id())
    ))?;
    match store.load(brief.id()).await {
        Err(StoreError::Expired) => say(format!("loading it now gives: {}", StoreError::Expired))?,
        Ok(_) => bail!("the session that ended an hour ago still loads"),
        Err(error) => return Err(error).context("loading the brief session"),
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

/// Saves a session (a new one whole, a loaded one by its changes).
async fn save(store: &SessionStore, session: &mut Session) -> Result<()> {
    store.save(session).await.context("saving the session")
}

/// Saves a loaded session's changes, if it has any.
async fn save_changes(store: &SessionStore, session: &mut Session) -> Result<()> {
    if session.has_changes() {
        save(store, session).await?;
    }
    Ok(())
}

/// Moves a session to a fresh token, writing its changes in the same statement.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cli_expiry_ranges_are_the_stores_max_age() {
        let store = offline_store(None).await.unwrap();
        assert_eq!(store.config().max_age, crate::cli::SESSION_MAX_AGE);
    }

    #[tokio::test]
    async fn an_offline_store_lists_the_statements_and_sends_none() {
        let store = offline_store(None).await.unwrap();
        assert!(
            store
                .statements()
                .iter()
                .all(|s| s.contains("wasm_sessions.sessions"))
        );
        let error = store.load(&"0".repeat(64)).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Database(SqlError::Refused(_))),
            "{error:?}"
        );
    }
}
