//! The owner's commands: `migrate` and `grant-runtime-role`. They connect as the schema's owner
//! (`--owner-url` / `DATABASE_OWNER_URL`, else the database URL, else the embedded cluster's superuser);
//! every other command connects as the runtime role.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::json;
use wasm_sessions::{PostgresDriver, SessionStore};

use crate::commands;
use crate::database::{self, Target};
use crate::output::Output;

/// `migrate`: applies the schema migrations as the owner, then prepares every statement the component
/// declares against the migrated schema, so a statement that does not fit it is reported now rather
/// than at the first request.
///
/// On a server the statements are prepared as the owner: the runtime role's grants are applied after
/// the schema exists (`grant-runtime-role`), so at this point the role may not be able to prepare
/// anything yet; `check` (and `serve`, before it listens) prepares them as the runtime role, privileges
/// included. On the embedded cluster the migrations and the grants are applied together, so the check
/// runs as the runtime role at once.
///
/// # Errors
/// No connection, a failing migration or grant, or a statement the database refuses to prepare.
pub async fn migrate(out: Output, target: &Target, cache_dir: &Path) -> Result<()> {
    let (driver, role): (PostgresDriver, &str) = match target {
        Target::Embedded { .. } => (database::open(target).await?, "runtime role"),
        Target::Server { .. } => {
            let owner = database::open_owner(target).await?;
            let migrated = database::migrate(&owner.driver).await;
            if owner.source() == "DATABASE_URL" {
                // One URL for both roles: when it is the runtime role's, it may not migrate.
                migrated.context(
                    "migrating as the user of DATABASE_URL (set DATABASE_OWNER_URL / --owner-url to \
                     the schema owner's URL when that is the runtime role)",
                )?;
            } else {
                migrated?;
            }
            (owner.driver, "owner")
        }
    };
    let store = commands::build(SessionStore::builder(driver), cache_dir).await?;
    store.check_statements().await.with_context(|| {
        format!(
            "the schema is migrated, but the component's statements do not prepare as the {role}"
        )
    })?;
    let count = store.statements().len();
    out.result(
        format!("migrated; all {count} statements of the component prepare against the schema (as the {role})"),
        json!({ "migrated": true, "prepared": count, "as": role }),
    )
}

/// `grant-runtime-role [--role NAME] [--apply]`: prints the SQL that creates the runtime role and grants
/// it exactly its privileges, or runs it as the owner with `--apply`.
///
/// Without `--apply` nothing is connected to: the database name comes from the owner's URL (the
/// embedded cluster's is [`database::EMBEDDED_DATABASE`]). The printed script holds the role's password when the runtime URL
/// carries one (it logs in as the role).
///
/// # Errors
/// An invalid role name or URL; with `--apply`, no connection, a missing schema (migrate first) or an
/// owner that may not grant.
pub async fn grant_runtime_role(
    out: Output,
    target: &Target,
    role: Option<&str>,
    apply: bool,
) -> Result<()> {
    let role = database::runtime_role(target, role)?;
    if apply {
        let owner = database::open_owner(target).await?;
        database::grant(&owner, &role).await?;
        return out.result(
            format!(
                "granted the runtime role {} its privileges on database {}",
                role.name(),
                owner.database
            ),
            json!({ "role": role.name(), "database": owner.database, "applied": true }),
        );
    }
    let database = database::owner_database(target)?;
    out.result(
        role.grant_script(&database).trim_end(),
        json!({
            "role": role.name(),
            "database": database,
            "applied": false,
            "statements": role.grant_statements(&database),
        }),
    )
}
