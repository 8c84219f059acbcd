//! The packaged library in a user's project: migrate a database, build the store from the bundled
//! component, write a session and read it back. `DATABASE_URL` (the owner) when set, else a throwaway
//! cluster from the local PostgreSQL binaries. Arguments, when given, are a command run afterwards with
//! the database's URL appended (`.ci/package` runs the npm package's smoke test so, on the same
//! migrated database).

use wasm_sessions::{PostgresDriver, PostgresOptions, SessionStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster;
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            cluster = embedded_pg::Cluster::throwaway()?;
            cluster.owner_url("postgres")
        }
    };
    let driver = PostgresDriver::connect(&url, &PostgresOptions::default())?;
    driver.migrate().await?;
    let store = SessionStore::builder(driver).build().await?;

    let mut session = store.new_session().await?;
    session.insert("theme", "dark")?;
    session.set_user(7);
    store.save(&mut session).await?;
    let loaded = store.load(session.id()).await?;
    assert_eq!(loaded.get::<String>("theme")?.as_deref(), Some("dark"));
    assert_eq!(loaded.user_id(), Some(7));
    assert!(store.cookie_header(&loaded).await?.contains(session.id()));
    store.delete(session.id()).await?;
    println!(
        "crate smoke test passed: contract {}, session saved and loaded",
        wasm_sessions::CONTRACT
    );

    let mut args = std::env::args().skip(1);
    if let Some(program) = args.next() {
        let status = std::process::Command::new(&program)
            .args(args)
            .arg(&url)
            .status()?;
        if !status.success() {
            return Err(format!("{program} failed: {status}").into());
        }
    }
    Ok(())
}
