//! Checking what a node sends before an app sees it: events against their space's sequencer and
//! their log, beams against the path they were asked for.
//!
//! The checks are the protocol crate's ([`northstar_protocol::verify`]), shared with the browser
//! SDK; this module names the parts the SDK's API shows.

pub(crate) use northstar_protocol::verify::{
    Accepted, LogCursor, check_beam, check_history, check_listed_beam, genesis_sequencer,
    parse_event,
};
pub use northstar_protocol::verify::{EventWithBeam, VerifyError};
