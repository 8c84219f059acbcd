//! The benchmark's library half: the guest's SQL in one place, and the native baseline that sends it.
//!
//! The binary (`src/main.rs`) runs the measurements; this part is shared with the drift test
//! (`tests/same_sql.rs`), which fails when the guest's statements and the ones here differ.

pub mod native;
pub mod sql;
