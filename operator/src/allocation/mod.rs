//! The allocation API for matchmakers (docs/allocation.md): who may allocate ([`auth`]), which
//! servers a request may take ([`select`]), and the endpoint that commits the choice
//! ([`service`]). Every operator replica serves it, leader or not.

pub mod auth;
pub mod membership;
pub mod select;
pub mod service;
