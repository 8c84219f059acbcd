//! The WIT glue for the guest's imports: translates and delegates to the [`SqlDriver`], the
//! [`EntropySource`] and the [`Clock`]. The only policy here is the boundary itself: the guest names a
//! statement by its index in the list it declared, and an index outside that list, or a statement that
//! is not a single data statement, is refused unsent.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument as _;

use crate::bindings::wasm_sessions::store::{clock, entropy, sql};
use crate::clock::Clock;
use crate::convert::{micros_from_time, row_set_to_wit, sql_error_to_wit, sql_value_from_wit};
use crate::driver::{SqlDriver, SqlError, is_data_statement};
use crate::entropy::EntropySource;

/// The most bytes one `random-bytes` call may ask for; more is a guest bug and stops the call.
pub(crate) const MAX_RANDOM_BYTES: u32 = 4096;

/// A guest tried to grow its linear memory past the limit; the call is stopped.
#[derive(Debug, thiserror::Error)]
#[error("the guest asked for {desired} bytes of memory; the limit is {limit}")]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) desired: usize,
    pub(crate) limit: usize,
}

/// A guest call ran past its deadline while running guest code; the call is stopped.
#[derive(Debug, thiserror::Error)]
#[error("the guest call ran past its deadline")]
pub(crate) struct DeadlinePassed;

/// The most table elements a guest instance may have.
const TABLE_ELEMENT_LIMIT: usize = 100_000;

/// Caps a guest instance's memory: growing past the limit traps with [`MemoryLimitExceeded`] at once,
/// rather than handing the guest a failed allocation.
pub(crate) struct GuestLimiter {
    memory_limit: usize,
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(MemoryLimitExceeded {
                desired,
                limit: self.memory_limit,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENT_LIMIT)
    }
}

/// The statements a component declared, recorded when the store is built: their texts, verbatim and
/// in the declared order (the guest names a statement by its index), and whether each is a single data
/// statement, decided once here rather than on every call.
pub(crate) struct Declared {
    texts: Box<[String]>,
    data: Box<[bool]>,
}

impl Declared {
    /// Records `texts`, in order.
    pub(crate) fn new(texts: Vec<String>) -> Arc<Self> {
        let data = texts.iter().map(|text| is_data_statement(text)).collect();
        Arc::new(Self {
            texts: texts.into_boxed_slice(),
            data,
        })
    }

    /// The text of statement `index`, or why it may not be sent: the index is outside the declared
    /// list, or the statement is not a single data statement (declared all the same).
    fn runnable(&self, index: u32) -> Result<&str, SqlError> {
        let i = index as usize;
        match (self.texts.get(i), self.data.get(i)) {
            (Some(text), Some(true)) => Ok(text),
            (Some(_), _) => Err(SqlError::Refused(
                "only single data statements (SELECT, INSERT, UPDATE, DELETE, WITH) are run".into(),
            )),
            (None, _) => Err(SqlError::Refused(format!(
                "the component did not declare statement {index}: it declared {}",
                self.texts.len()
            ))),
        }
    }
}

impl Deref for Declared {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.texts
    }
}

/// What the host grants every guest instance: its three capabilities, nothing else.
#[derive(Clone)]
pub(crate) struct Grants {
    pub(crate) driver: Arc<dyn SqlDriver>,
    pub(crate) entropy: Arc<dyn EntropySource>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The statements the component declared (none while the builder asks for them).
    pub(crate) statements: Arc<Declared>,
}

/// What one guest instance can reach: the capabilities, its limits, and its current call's deadline.
pub(crate) struct HostState {
    grants: Grants,
    pub(crate) limiter: GuestLimiter,
    /// When the running call must be finished by.
    pub(crate) deadline: Instant,
}

impl HostState {
    pub(crate) fn new(grants: Grants, memory_limit: usize) -> Self {
        Self {
            grants,
            limiter: GuestLimiter { memory_limit },
            deadline: Instant::now(),
        }
    }
}

impl sql::Host for HostState {
    async fn sql_query(
        &mut self,
        statement: u32,
        params: Vec<sql::SqlValue>,
    ) -> Result<sql::RowSet, sql::SqlError> {
        let text = match self.grants.statements.runnable(statement) {
            Ok(text) => text,
            Err(refused) => {
                tracing::warn!(error = %refused, statement, "refused a statement from the session component");
                return Err(sql_error_to_wit(refused));
            }
        };
        let params: Vec<_> = params.into_iter().map(sql_value_from_wit).collect();
        // The statement is parameterized text the guest declared: it carries no values.
        let span =
            tracing::debug_span!("sql_query", statement, text = %text, params = params.len());
        let outcome = self
            .grants
            .driver
            .query(text, &params)
            .instrument(span)
            .await;
        outcome.map(row_set_to_wit).map_err(sql_error_to_wit)
    }
}

impl entropy::Host for HostState {
    fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM_BYTES {
            wasmtime::bail!("random-bytes asked for {len} bytes; the limit is {MAX_RANDOM_BYTES}");
        }
        let mut bytes = vec![0; len as usize];
        self.grants
            .entropy
            .fill(&mut bytes)
            .map_err(wasmtime::Error::from)?;
        Ok(bytes)
    }
}

impl clock::Host for HostState {
    fn now(&mut self) -> i64 {
        micros_from_time(self.grants.clock.now())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::clock::ManualClock;
    use crate::driver::{PrepareFuture, QueryFuture, RowSet, SqlValue};
    use crate::entropy::{EntropyError, OsEntropy};

    /// Records what it is asked and answers with a fixed outcome.
    struct ScriptedDriver {
        seen: Mutex<Vec<(String, Vec<SqlValue>)>>,
        answer: Result<RowSet, SqlError>,
    }

    impl SqlDriver for ScriptedDriver {
        fn query<'a>(&'a self, statement: &'a str, params: &'a [SqlValue]) -> QueryFuture<'a> {
            self.seen
                .lock()
                .unwrap()
                .push((statement.to_owned(), params.to_vec()));
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }

        fn prepare<'a>(&'a self, _: &'a str) -> PrepareFuture<'a> {
            Box::pin(async { Ok(()) })
        }
    }

    struct BrokenEntropy;

    impl EntropySource for BrokenEntropy {
        fn fill(&self, _: &mut [u8]) -> Result<(), EntropyError> {
            Err(EntropyError("no entropy".into()))
        }
    }

    const DECLARED: &str = "SELECT $1::text";

    fn state(driver: Arc<ScriptedDriver>, entropy: impl EntropySource) -> HostState {
        let grants = Grants {
            driver,
            entropy: Arc::new(entropy),
            clock: Arc::new(ManualClock::new(
                SystemTime::UNIX_EPOCH + Duration::from_micros(1_234_567),
            )),
            statements: Declared::new(vec![DECLARED.to_owned(), "SET search_path TO x".to_owned()]),
        };
        HostState::new(grants, 1 << 20)
    }

    #[test]
    fn growing_memory_past_the_limit_is_refused_with_a_typed_error() {
        use wasmtime::ResourceLimiter as _;
        let mut limiter = GuestLimiter { memory_limit: 1000 };
        assert!(limiter.memory_growing(0, 1000, None).unwrap());
        let err = limiter.memory_growing(1000, 1001, None).unwrap_err();
        assert!(err.downcast_ref::<MemoryLimitExceeded>().is_some());
    }

    fn ok_driver() -> Arc<ScriptedDriver> {
        Arc::new(ScriptedDriver {
            seen: Mutex::new(Vec::new()),
            answer: Ok(RowSet {
                columns: vec!["n".into()],
                rows: vec![vec![SqlValue::Int64(1)]],
                rows_affected: 1,
            }),
        })
    }

    #[test]
    fn random_bytes_returns_exactly_the_requested_length() {
        let mut state = state(ok_driver(), OsEntropy);
        for len in [0, 1, 32, MAX_RANDOM_BYTES] {
            let bytes = entropy::Host::random_bytes(&mut state, len).unwrap();
            assert_eq!(bytes.len(), len as usize);
        }
    }

    #[test]
    fn random_bytes_over_the_limit_is_a_trap() {
        let mut state = state(ok_driver(), OsEntropy);
        assert!(entropy::Host::random_bytes(&mut state, MAX_RANDOM_BYTES + 1).is_err());
        assert!(entropy::Host::random_bytes(&mut state, u32::MAX).is_err());
    }

    #[test]
    fn a_failing_entropy_source_is_a_trap_not_weak_bytes() {
        let mut state = state(ok_driver(), BrokenEntropy);
        let err = entropy::Host::random_bytes(&mut state, 32).unwrap_err();
        assert!(format!("{err:#}").contains("no entropy"));
    }

    #[test]
    fn the_clock_import_reads_the_granted_clock_in_microseconds() {
        let mut state = state(ok_driver(), OsEntropy);
        assert_eq!(clock::Host::now(&mut state), 1_234_567);
    }

    #[tokio::test]
    async fn sql_query_hands_a_declared_statement_and_its_params_to_the_driver_and_rows_back() {
        let driver = ok_driver();
        let mut state = state(driver.clone(), OsEntropy);
        let rows = sql::Host::sql_query(
            &mut state,
            0,
            vec![sql::SqlValue::Text("x".into()), sql::SqlValue::Null],
        )
        .await
        .unwrap();
        // Values by position; the driver's column names do not cross.
        assert_eq!(rows.rows.len(), 1);
        assert!(matches!(rows.rows[0][..], [sql::SqlValue::Int64(1)]));
        assert_eq!(rows.rows_affected, 1);
        let seen = driver.seen.lock().unwrap();
        assert_eq!(seen[0].0, DECLARED);
        assert_eq!(seen[0].1, [SqlValue::Text("x".into()), SqlValue::Null]);
    }

    #[tokio::test]
    async fn undeclared_indexes_and_non_data_statements_are_refused_unsent() {
        let driver = ok_driver();
        let mut state = state(driver.clone(), OsEntropy);
        for (index, message) in [
            (
                2,
                "the component did not declare statement 2: it declared 2",
            ),
            (
                u32::MAX,
                "the component did not declare statement 4294967295: it declared 2",
            ),
            (
                1,
                "only single data statements (SELECT, INSERT, UPDATE, DELETE, WITH) are run",
            ),
        ] {
            let err = sql::Host::sql_query(&mut state, index, Vec::new())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, sql::SqlError::Refused(m) if m == message),
                "{index}: {err:?}"
            );
        }
        assert!(driver.seen.lock().unwrap().is_empty());
    }

    #[test]
    fn the_declared_list_keeps_every_text_in_order_and_decides_the_data_rule_once() {
        let declared = Declared::new(vec![
            "SET search_path TO x".to_owned(),
            DECLARED.to_owned(),
            "  /* c */ DELETE FROM t".to_owned(),
        ]);
        assert_eq!(
            &declared[..],
            ["SET search_path TO x", DECLARED, "  /* c */ DELETE FROM t"]
        );
        assert!(matches!(declared.runnable(0), Err(SqlError::Refused(_))));
        assert_eq!(declared.runnable(1).unwrap(), DECLARED);
        assert_eq!(declared.runnable(2).unwrap(), "  /* c */ DELETE FROM t");
        assert!(matches!(declared.runnable(3), Err(SqlError::Refused(_))));
        assert!(Declared::new(Vec::new()).runnable(0).is_err());
    }

    #[tokio::test]
    async fn driver_errors_reach_the_guest_as_values_not_traps() {
        let driver = Arc::new(ScriptedDriver {
            seen: Mutex::new(Vec::new()),
            answer: Err(SqlError::ConstraintViolation {
                sqlstate: "23505".into(),
                message: "duplicate".into(),
            }),
        });
        let mut state = state(driver, OsEntropy);
        let err = sql::Host::sql_query(&mut state, 0, Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, sql::SqlError::ConstraintViolation(c) if c.sqlstate == "23505"));
    }
}
