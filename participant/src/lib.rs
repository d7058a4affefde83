//! The fedcredit participant daemon.
//!
//! Runs next to an institution's own data, connects out to the coordinator (no
//! inbound port), loads its table through `fedcredit-datasets`, executes its role
//! and sends only masked or encrypted values, never rows.
//!
//! The daemon itself arrives with the federation-runtime issue.
