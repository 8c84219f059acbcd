//! The WIT glue for the guest's imports: translates and delegates to the [`SqlDriver`] and the
//! [`EntropySource`]; no policy lives here.

use std::sync::Arc;

use tracing::Instrument as _;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::wasm_sessions::store::{entropy, sql};
use crate::convert::{row_set_to_wit, sql_error_to_wit, sql_value_from_wit};
use crate::driver::SqlDriver;
use crate::entropy::EntropySource;

/// The most bytes one `random-bytes` call may ask for; more is a guest bug and stops the call.
pub(crate) const MAX_RANDOM_BYTES: u32 = 4096;

/// What one guest instance can reach: the two capabilities and an empty WASI context (no files,
/// sockets, environment variables, arguments or inherited stdio).
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    driver: Arc<dyn SqlDriver>,
    entropy: Arc<dyn EntropySource>,
}

impl HostState {
    pub(crate) fn new(driver: Arc<dyn SqlDriver>, entropy: Arc<dyn EntropySource>) -> Self {
        Self {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            driver,
            entropy,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl sql::Host for HostState {
    async fn sql_query(
        &mut self,
        statement: String,
        params: Vec<sql::SqlValue>,
    ) -> Result<sql::RowSet, sql::SqlError> {
        let params: Vec<_> = params.into_iter().map(sql_value_from_wit).collect();
        // The statement is parameterized text written by the guest: it carries no values.
        let span = tracing::debug_span!("sql_query", statement = %statement, params = params.len());
        let outcome = self
            .driver
            .query(&statement, &params)
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
        self.entropy
            .fill(&mut bytes)
            .map_err(wasmtime::Error::from)?;
        Ok(bytes)
    }
}
