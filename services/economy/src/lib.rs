//! Flotilla's economy service: currencies, inventory and store purchases on a ledger that never
//! creates or loses value, on MongoDB (FerretDB) and Redis.

mod error;
pub mod ledger;

pub use error::{Error, Result};
