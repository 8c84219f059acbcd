//! The bearer token of the JSON API: configured (`--api-token` / `WASM_SESSIONS_API_TOKEN`), or generated
//! at start ([`generate_token`]: 32 bytes from the OS CSPRNG, hex) and written to a file only its owner can
//! read ([`write_token_file`]).
//!
//! Only the token's SHA-256 is kept in memory; a presented token is hashed and the two digests are
//! compared in constant time ([`subtle`]), so neither the comparison's duration nor the lengths tell an
//! attacker how much of a guess was right.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The API's bearer token (its SHA-256). `Debug` never shows it.
#[derive(Clone)]
pub struct ApiToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Why a configured token is refused (the message never contains the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidApiToken(&'static str);

impl std::fmt::Display for InvalidApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidApiToken {}

impl ApiToken {
    /// The fewest characters a configured token may have (a generated one has 64).
    pub const MIN_LEN: usize = 32;

    /// A token the operator chose: at least [`MIN_LEN`](Self::MIN_LEN) visible ASCII characters (it
    /// travels in a header; no spaces).
    ///
    /// # Errors
    /// The token is too short or has other characters.
    pub fn new(token: &str) -> Result<Self, InvalidApiToken> {
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidApiToken(
                "the API token may only hold visible ASCII characters (no spaces)",
            ));
        }
        if token.len() < Self::MIN_LEN {
            return Err(InvalidApiToken(
                "the API token must be at least 32 characters long (e.g. `openssl rand -hex 32`)",
            ));
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token (constant time over the digests).
    #[must_use]
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// A new token: 32 bytes from the operating system's CSPRNG, as 64 lower-case hex characters.
///
/// # Errors
/// The operating system has no randomness to give.
pub fn generate_token() -> Result<String> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("reading random bytes for the API token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `token` (and a newline) to `path`, readable and writable by its owner only (`0600`; the
/// directory is created `0700`). The file is written under a fresh name and renamed over `path`, so a
/// reader never sees half a token and an existing symlink at `path` is replaced, not followed.
///
/// # Errors
/// The directory or the file cannot be written.
pub fn write_token_file(path: &Path, token: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;

    let file_name = path
        .file_name()
        .context("the token file's path names no file")?;
    let suffix = &generate_token()?[..16];
    let temporary = dir.join(format!(".{}.{suffix}", file_name.to_string_lossy()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temporary)?;
        #[cfg(unix)]
        {
            // The umask can only take bits away; make sure it is exactly 0600.
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(format!("{token}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing the API token to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_matches() {
        let token = "a".repeat(40);
        let api = ApiToken::new(&token).unwrap();
        assert!(api.matches(&token));
        assert!(!api.matches(&"a".repeat(39)));
        assert!(!api.matches(&"a".repeat(41)));
        assert!(!api.matches(""));
        assert!(!format!("{api:?}").contains('a'.to_string().repeat(8).as_str()));
    }

    #[test]
    fn short_or_odd_tokens_are_refused_without_echoing_them() {
        for bad in [
            "",
            "short",
            &"x".repeat(31),
            &format!("{} y", "x".repeat(40)),
        ] {
            let error = ApiToken::new(bad).unwrap_err().to_string();
            assert!(bad.len() < 5 || !error.contains(bad), "{error}");
        }
        assert!(ApiToken::new(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn generated_tokens_are_64_hex_characters_and_differ() {
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        assert_ne!(a, b);
        assert!(ApiToken::new(&a).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_token_file_is_0600_in_a_0700_directory_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state/wasm-sessions/api-token");
        write_token_file(&path, "first").unwrap();
        write_token_file(&path, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
