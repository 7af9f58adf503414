//! [`SdkError`], what every fallible SDK call returns, and [`NodeCode`], the code of a node's
//! refusal.
//!
//! A node's refusal keeps its code and message; apps act on the code (`spec/` §6.4), e.g.
//! `err.code() == Some(ErrorCode::SpaceExists)`. Display messages are one line; the cause, where
//! there is one, is the error's `source`.

use std::fmt;

use jsonrpsee::core::ClientError;
use jsonrpsee::types::ErrorObjectOwned;
use northstar_protocol::address::AddressError;
use northstar_protocol::api::ErrorCode;
use northstar_protocol::sign::SignatureError;
use northstar_protocol::wire::RuleError;

use crate::auth::{AuthError, BadUrl};
use crate::keystore::KeystoreError;
use crate::stream::StreamError;
use crate::tls::TrustError;
use crate::verify::VerifyError;

/// The code of a JSON-RPC error object a node sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeCode {
    /// One of the protocol's application codes (`spec/` §6.4).
    App(ErrorCode),
    /// Any other code: one of JSON-RPC's own (-32700, -32601, …) or one this SDK does not know.
    Other(i32),
}

impl NodeCode {
    /// The code for a wire number.
    pub fn from_code(code: i32) -> Self {
        ErrorCode::from_code(code).map_or(NodeCode::Other(code), NodeCode::App)
    }

    /// The number on the wire.
    pub fn number(self) -> i32 {
        match self {
            NodeCode::App(code) => code.code(),
            NodeCode::Other(code) => code,
        }
    }

    /// The application code, if it is one.
    pub fn app(self) -> Option<ErrorCode> {
        match self {
            NodeCode::App(code) => Some(code),
            NodeCode::Other(_) => None,
        }
    }

    fn name(self) -> Option<&'static str> {
        match self {
            NodeCode::App(code) => Some(code.name()),
            NodeCode::Other(-32700) => Some("parse error"),
            NodeCode::Other(-32600) => Some("invalid request"),
            NodeCode::Other(-32601) => Some("method not found"),
            NodeCode::Other(-32602) => Some("invalid params"),
            NodeCode::Other(-32603) => Some("internal error"),
            NodeCode::Other(_) => None,
        }
    }
}

impl fmt::Display for NodeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.number()),
            None => write!(f, "code {}", self.number()),
        }
    }
}

/// Everything that can go wrong in the SDK.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The node URL cannot be dialled.
    #[error(transparent)]
    BadUrl(#[from] BadUrl),
    /// The WebSocket connection could not be opened.
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL dialled.
        url: String,
        /// The transport's error.
        #[source]
        source: ClientError,
    },
    /// The node speaks another version of the protocol, whose signatures this SDK cannot check
    /// (nor the node this SDK's).
    #[error(
        "{url} speaks Northstar protocol version {node}, this SDK speaks version {ours}: \
         upgrade whichever is older"
    )]
    Protocol {
        /// The URL dialled.
        url: String,
        /// The node's version (0 if its `node.info` does not say).
        node: u32,
        /// This SDK's version.
        ours: u32,
    },
    /// Extra CA certificates could not be used.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The node refused a call with a JSON-RPC error.
    #[error("{method}: the node refused with {code}: {message}")]
    Node {
        /// The method's wire name.
        method: &'static str,
        /// The error's code.
        code: NodeCode,
        /// The node's message, for people; act on the code.
        message: String,
    },
    /// The call failed below JSON-RPC: the connection closed, timed out or sent garbage.
    #[error("{method}: the call failed in transport")]
    Transport {
        /// The method's wire name.
        method: &'static str,
        /// The transport's error.
        #[source]
        source: ClientError,
    },
    /// The client refused to authenticate, or the node answered the handshake wrongly.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// What the node sent does not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The method needs an authenticated connection and this client has no key.
    #[error("{method} needs a key, but this client connected anonymously")]
    Anonymous {
        /// The method's wire name.
        method: &'static str,
    },
    /// Only a beam's author may delete it.
    #[error("cannot delete {path}: only its author can, and this client acts as another DID")]
    NotAuthor {
        /// The beam's path.
        path: String,
    },
    /// A request the client was asked to send breaks a protocol rule.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A space id, URI or beam path given to the SDK is malformed.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// Signing a request failed.
    #[error(transparent)]
    Sign(#[from] SignatureError),
    /// No key could be had.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The system clock reads before 1970, so nothing can be timestamped.
    #[error("the system clock is set before 1970")]
    Clock,
    /// A stream connection failed, the node refused a frame or ended a watch, or a frame
    /// received is not valid.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// The code the reference node sends when a connection holds as many subscriptions as it may
/// (its JSON-RPC library's, not one of the protocol's own).
const TOO_MANY_SUBSCRIPTIONS_JSONRPSEE: i32 = -32006;

impl SdkError {
    /// The node's application code, if the node refused with one (a call, a frame, or a
    /// watch it ended).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SdkError::Node { code, .. } => code.app(),
            SdkError::Stream(err) => err.node_code().and_then(NodeCode::app),
            _ => None,
        }
    }

    /// The error of a call to `method` that failed with `err`.
    pub(crate) fn from_call(method: &'static str, err: ClientError) -> Self {
        match err {
            ClientError::Call(object) => Self::from_object(method, &object),
            source => SdkError::Transport { method, source },
        }
    }

    /// The error of a JSON-RPC error object received for `method`.
    pub(crate) fn from_object(method: &'static str, object: &ErrorObjectOwned) -> Self {
        SdkError::Node {
            method,
            code: NodeCode::from_code(object.code()),
            message: object.message().to_owned(),
        }
    }

    /// Whether trying again later may succeed: the connection failed, or the node is busy,
    /// failing or shutting down, or cut a slow subscriber off.
    pub fn is_transient(&self) -> bool {
        match self {
            SdkError::Connect { .. } => true,
            SdkError::Transport { source, .. } => matches!(
                source,
                ClientError::RestartNeeded(_)
                    | ClientError::Transport(_)
                    | ClientError::RequestTimeout
            ),
            SdkError::Node { code, .. } => {
                matches!(
                    code.app(),
                    Some(
                        ErrorCode::RateLimited
                            | ErrorCode::ShuttingDown
                            | ErrorCode::Internal
                            | ErrorCode::SlowSubscriber
                            | ErrorCode::TooManySubscriptions
                            | ErrorCode::PeerUnreachable
                    )
                ) || code.number() == TOO_MANY_SUBSCRIPTIONS_JSONRPSEE
            }
            SdkError::Stream(err) => err.is_transient(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_error(code: i32, message: &str) -> ClientError {
        ClientError::Call(ErrorObjectOwned::owned::<()>(code, message, None))
    }

    #[test]
    fn maps_every_application_code_to_its_error_code() {
        for code in ErrorCode::ALL {
            let err = SdkError::from_call("space.join", call_error(code.code(), "nope"));
            assert_eq!(err.code(), Some(code));
            let SdkError::Node {
                method,
                code: node_code,
                message,
            } = &err
            else {
                panic!("not a node error: {err:?}");
            };
            assert_eq!(*method, "space.join");
            assert_eq!(*node_code, NodeCode::App(code));
            assert_eq!(message, "nope");
        }
    }

    #[test]
    fn keeps_unknown_and_json_rpc_codes() {
        let err = SdkError::from_call("space.get", call_error(4242, "future"));
        assert!(matches!(
            err,
            SdkError::Node {
                code: NodeCode::Other(4242),
                ..
            }
        ));
        assert_eq!(err.code(), None);
        assert_eq!(
            err.to_string(),
            "space.get: the node refused with code 4242: future"
        );

        let err = SdkError::from_call("space.nope", call_error(-32601, "Method not found"));
        assert!(matches!(
            err,
            SdkError::Node {
                code: NodeCode::Other(-32601),
                ..
            }
        ));
        assert!(err.to_string().contains("method not found (-32601)"));
    }

    #[test]
    fn node_error_message_names_method_code_and_message_on_one_line() {
        let err = SdkError::from_call(
            "space.post",
            call_error(ErrorCode::NotMember.code(), "join the space first"),
        );
        let text = err.to_string();
        assert_eq!(
            text,
            "space.post: the node refused with not_member (1202): join the space first"
        );
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn transport_failures_are_transient_refusals_mostly_not() {
        let closed = SdkError::from_call(
            "space.events",
            ClientError::RestartNeeded(std::sync::Arc::new(ClientError::RequestTimeout)),
        );
        assert!(matches!(closed, SdkError::Transport { .. }));
        assert!(closed.is_transient());
        for code in [ErrorCode::SlowSubscriber, ErrorCode::ShuttingDown] {
            assert!(SdkError::from_call("m", call_error(code.code(), "")).is_transient());
        }
        for code in [
            ErrorCode::NotMember,
            ErrorCode::AuthRequired,
            ErrorCode::SpaceNotFound,
        ] {
            assert!(!SdkError::from_call("m", call_error(code.code(), "")).is_transient());
        }
        assert!(!SdkError::from_call("m", call_error(-32601, "")).is_transient());
    }
}
