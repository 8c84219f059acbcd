//! The entropy seam: where the guest's `random-bytes` import draws from.

/// The entropy source failed; the guest call that asked for it is stopped.
#[derive(Debug, thiserror::Error)]
#[error("entropy source failed: {0}")]
pub struct EntropyError(pub String);

/// A source of cryptographically secure random bytes.
pub trait EntropySource: Send + Sync + 'static {
    /// Fills `buf` with random bytes.
    ///
    /// # Errors
    /// [`EntropyError`] when no secure randomness is available; the guest call then fails.
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError>;
}

/// The operating system's CSPRNG (`getrandom`). The default, and the only source a production host
/// should use.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl EntropySource for OsEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        getrandom::fill(buf).map_err(|e| EntropyError(e.to_string()))
    }
}
