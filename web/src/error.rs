//! The one error type of the browser SDK. It crosses into JavaScript as an `Error` whose message
//! is this error's and then each cause's, joined by `": "`, e.g. `event 2 fails verification:
//! …`: the protocol's own words.

use northstar_protocol::canonical::CanonicalError;
use northstar_protocol::chain::ChainError;
use northstar_protocol::sign::SignatureError;
use northstar_protocol::wire::{ChallengeRefused, EventError};
use wasm_bindgen::{JsError, JsValue};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is not what it must be (a DID, a space id, a content id, a time, a secret).
    #[error("bad {what}: {reason}")]
    BadArgument {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// JSON text that does not parse strictly as the object it must be.
    #[error("malformed {what}")]
    Malformed {
        /// What it should have been.
        what: &'static str,
        /// Why it does not parse.
        #[source]
        source: CanonicalError,
    },
    /// An event fails verification by itself: its shape or a signature (§4.8).
    #[error("event {seq} fails verification")]
    Event {
        /// The event's seq.
        seq: u64,
        /// What is wrong with it.
        #[source]
        source: EventError,
    },
    /// An event cannot be the next entry of the log: another space, a fork, a broken link.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// An event past the next one: the events between are missing.
    #[error("gap in the log of {space}: expected event {expected}, got event {actual}")]
    Gap {
        /// The space.
        space: String,
        /// The seq that should have come.
        expected: u64,
        /// The seq that came.
        actual: u64,
    },
    /// A beam's signature does not verify under its author.
    #[error("beam {path} is not validly signed by its author")]
    BadBeam {
        /// The path asked for.
        path: String,
        /// Why verification failed.
        #[source]
        source: SignatureError,
    },
    /// A beam is not the one its path names (another content id or another author).
    #[error("asked for beam {expected}, got beam {actual}")]
    WrongBeam {
        /// The path asked for.
        expected: String,
        /// The path of the beam given.
        actual: String,
    },
    /// The client refuses to answer a node's challenge (§5.2).
    #[error(transparent)]
    Challenge(#[from] ChallengeRefused),
    /// Signing failed (the object does not encode canonically).
    #[error("signing failed")]
    Sign(#[from] SignatureError),
    /// No randomness for a new key.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

impl Error {
    /// The message and each cause's, joined by `": "`: what JavaScript sees.
    pub fn message(&self) -> String {
        let mut message = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            message.push_str(": ");
            message.push_str(&error.to_string());
            cause = error.source();
        }
        message
    }
}

impl From<Error> for JsValue {
    fn from(error: Error) -> Self {
        JsError::new(&error.message()).into()
    }
}
