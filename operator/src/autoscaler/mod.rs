//! FleetAutoscalers (docs/autoscaling.md): the policies ([`policy`], with [`cron`] windows and
//! [`webhook`] questions) and the [`controller`] that applies them to fleets.

pub mod controller;
pub mod cron;
pub mod policy;
pub mod webhook;
