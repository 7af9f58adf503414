//! The one error type of the browser SDK. It crosses into JavaScript as an `Error` whose message
//! is this error's and then each cause's, joined by `": "`, e.g. `event 2 fails verification:
//! …`: the protocol's own words. The `Error` also carries `kind`, which an app acts on:
//!
//! - `"verification"`: something a node sent fails the protocol's checks; never shown as data.
//! - `"rpc"`: the node refused a call; `code` and `errorName` are the error object's code and
//!   name (§6.4), e.g. `1202` and `"not_member"`.
//! - `"connection"`: the WebSocket could not be opened, or closed.
//! - `"auth"`: the client refused the node's challenge (§5.2), or could not sign.
//! - `"argument"`: an argument the app passed is not what it must be.
//! - `"storage"`: IndexedDB failed.

use northstar_protocol::canonical::CanonicalError;
use northstar_protocol::chain::ChainError;
use northstar_protocol::sign::SignatureError;
use northstar_protocol::verify::VerifyError;
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
    /// Something a node sent fails the client's checks (an event, a page, a beam).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A blob's bytes fail their check against its id (§13.2).
    #[error(transparent)]
    Blob(#[from] northstar_protocol::blob::StreamError),
    /// A stream frame fails its checks.
    #[error(transparent)]
    Watch(#[from] northstar_protocol::watch::WatchError),
    /// A node answered something that is not the method's result.
    #[error("{method}: the node's answer is not a valid result")]
    BadAnswer {
        /// The method called.
        method: &'static str,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The node refused a call with a JSON-RPC error object (§6.4).
    #[error("{method}: {message}")]
    Rpc {
        /// The method called.
        method: &'static str,
        /// The error's code.
        code: i64,
        /// The error's name (`data` of an application code), if given.
        name: Option<String>,
        /// The node's message.
        message: String,
    },
    /// The connection could not be opened, or it closed before the answer came.
    #[error("connection to {url}: {reason}")]
    Connection {
        /// The URL dialled.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The call needs an identity; the client connected without one.
    #[error("{method} needs an identity: connect with one")]
    Anonymous {
        /// The method called.
        method: &'static str,
    },
    /// IndexedDB failed.
    #[error("IndexedDB: {0}")]
    Storage(String),
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

impl Error {
    /// What kind of failure this is, for an app to act on (see the module's doc).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadArgument { .. } | Error::Anonymous { .. } => "argument",
            Error::Rpc { .. } => "rpc",
            Error::Connection { .. } => "connection",
            Error::Storage(_) => "storage",
            Error::Challenge(_) | Error::Random(_) | Error::Sign(_) => "auth",
            Error::Malformed { .. }
            | Error::Event { .. }
            | Error::Chain(_)
            | Error::Gap { .. }
            | Error::BadBeam { .. }
            | Error::WrongBeam { .. }
            | Error::Verify(_)
            | Error::Watch(_)
            | Error::Blob(_)
            | Error::BadAnswer { .. } => "verification",
        }
    }
}

impl From<Error> for JsValue {
    fn from(error: Error) -> Self {
        let value: JsValue = JsError::new(&error.message()).into();
        let set = |key: &str, field: JsValue| {
            // Setting a property on a fresh `Error` object cannot fail (it is extensible and
            // has no setters); if it did, the message alone would still be thrown.
            let _ = js_sys::Reflect::set(&value, &JsValue::from_str(key), &field);
        };
        set("kind", JsValue::from_str(error.kind()));
        if let Error::Rpc { code, name, .. } = &error {
            set("code", JsValue::from_f64(*code as f64));
            if let Some(name) = name {
                set("errorName", JsValue::from_str(name));
            }
        }
        value
    }
}
