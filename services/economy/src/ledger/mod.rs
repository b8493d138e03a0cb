//! The double-entry ledger: every change of value is a [`model::Transaction`] of legs, applied all
//! or none ([`engine`]), on a store that needs only unique inserts ([`store`]; [`mongo`] and
//! [`memory`] implement it), checked by an [`audit`] that recomputes everything from the records.

pub mod audit;
pub mod engine;
pub mod memory;
pub mod model;
pub mod mongo;
pub mod store;
