//! What an operator meets: logs ([`logging`]), the audit trail ([`audit`]), the
//! `/healthz`, `/readyz` and `/metrics` listener ([`listener`], [`metrics`]) and the
//! `check` command ([`check`]).

pub mod audit;
pub mod check;
pub(crate) mod listener;
pub mod logging;
pub(crate) mod metrics;
