//! The client's side of the auth handshake (`spec/protocol.md` §5.2): the origin of the URL
//! dialled, and the checks a challenge must pass before the client signs anything.
//!
//! Everything here is pure; the clock is passed in, so the checks are tested without a node.

use northstar_protocol::Did;
/// A node URL's origin, and why a URL cannot be dialled: the protocol's, shared with the
/// browser SDK.
pub use northstar_protocol::address::{BadUrl, origin_of};
use northstar_protocol::wire::AuthChallenge;
/// Why a challenge is refused: the protocol's own checks (§5.2), shared with the browser SDK.
pub use northstar_protocol::wire::ChallengeRefused;

/// Why the client refused to authenticate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client refused the node's challenge (§5.2): malformed, badly signed, for another
    /// origin or node, or expired.
    #[error(transparent)]
    Challenge(#[from] ChallengeRefused),
    /// The node authenticated the connection as another DID than the client's.
    #[error("the node authenticated the connection as {actual}, expected {expected}")]
    WrongDid {
        /// The client's DID.
        expected: String,
        /// The DID the node reported.
        actual: String,
    },
}

/// The checks of §5.2 on a challenge, in order: its shape, the node's signature, the origin
/// against the one dialled, the node against the one expected, and its expiry against `now`
/// (ms since the Unix epoch). The checks themselves are the protocol's
/// ([`AuthChallenge::check_as_client`]), shared with the browser SDK.
pub fn check_challenge(
    challenge: &AuthChallenge,
    dialled_origin: &str,
    expected_node: &Did,
    now: u64,
) -> Result<(), AuthError> {
    challenge
        .check_as_client(dialled_origin, expected_node, now)
        .map_err(AuthError::Challenge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use northstar_protocol::Keypair;

    const NOW: u64 = 1_767_225_600_000;

    fn node() -> Keypair {
        Keypair::from_seed(&[9; 32])
    }

    fn challenge(origin: &str) -> AuthChallenge {
        AuthChallenge::issue(&node(), origin, NOW, NOW + 30_000).unwrap()
    }

    #[test]
    fn origin_drops_path_query_and_fragment() {
        assert_eq!(
            origin_of("ws://127.0.0.1:7700").unwrap(),
            "ws://127.0.0.1:7700"
        );
        assert_eq!(
            origin_of("ws://127.0.0.1:7700/").unwrap(),
            "ws://127.0.0.1:7700"
        );
        assert_eq!(
            origin_of("wss://node.example/rpc/v0?x=1#f").unwrap(),
            "wss://node.example"
        );
        assert_eq!(
            origin_of("wss://node.example?x").unwrap(),
            "wss://node.example"
        );
        assert_eq!(origin_of("ws://[::1]:7700/a").unwrap(), "ws://[::1]:7700");
    }

    #[test]
    fn origin_is_given_as_written_and_compared_in_normal_form() {
        assert_eq!(
            origin_of("WSS://Node.Example:443/x").unwrap(),
            "WSS://Node.Example:443"
        );
        // The challenge carries the node's origin in normal form; the URL dialled may differ
        // in case and in naming the default port, not in scheme, host or another port.
        let c = challenge("wss://node.example");
        assert_eq!(
            check_challenge(&c, "WSS://Node.Example:443", node().did(), NOW),
            Ok(())
        );
        for other in [
            "ws://node.example",
            "wss://node.example:7700",
            "wss://node.example.org",
        ] {
            let err = check_challenge(&c, other, node().did(), NOW).unwrap_err();
            assert!(
                matches!(
                    err,
                    AuthError::Challenge(ChallengeRefused::WrongOrigin { .. })
                ),
                "{other}: {err}"
            );
        }
    }

    #[test]
    fn origin_refuses_other_schemes_and_bad_authorities() {
        for url in [
            "http://node.example",
            "node.example:7700",
            "ws://",
            "ws:///path",
            "ws://user@node.example",
            "ws://no de",
        ] {
            let err = origin_of(url).unwrap_err();
            assert_eq!(err.url, url);
        }
    }

    #[test]
    fn accepts_a_fresh_challenge_for_the_dialled_origin() {
        let c = challenge("ws://127.0.0.1:7700");
        assert_eq!(
            check_challenge(&c, "ws://127.0.0.1:7700", node().did(), NOW + 1),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_challenge_for_another_origin_naming_both() {
        let c = challenge("wss://other.example");
        let err = check_challenge(&c, "ws://127.0.0.1:7700", node().did(), NOW).unwrap_err();
        assert_eq!(
            err,
            AuthError::Challenge(ChallengeRefused::WrongOrigin {
                dialled: "ws://127.0.0.1:7700".into(),
                challenge: "wss://other.example".into(),
            })
        );
        let text = err.to_string();
        assert!(text.contains("wss://other.example") && text.contains("ws://127.0.0.1:7700"));
    }

    #[test]
    fn refuses_a_challenge_whose_signature_does_not_verify() {
        let mut c = challenge("ws://127.0.0.1:7700");
        c.nonce.push('x');
        let err = check_challenge(&c, "ws://127.0.0.1:7700", node().did(), NOW).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::Challenge(ChallengeRefused::BadSignature { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_challenge_from_an_unexpected_node() {
        let c = challenge("ws://127.0.0.1:7700");
        let other = Keypair::from_seed(&[8; 32]);
        let err = check_challenge(&c, "ws://127.0.0.1:7700", other.did(), NOW).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::Challenge(ChallengeRefused::WrongNode { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_an_expired_challenge() {
        let c = challenge("ws://127.0.0.1:7700");
        for now in [NOW + 30_000, NOW + 60_000] {
            let err = check_challenge(&c, "ws://127.0.0.1:7700", node().did(), now).unwrap_err();
            assert_eq!(
                err,
                AuthError::Challenge(ChallengeRefused::Expired {
                    expires_at: NOW + 30_000,
                    now
                })
            );
        }
    }

    #[test]
    fn refuses_a_malformed_origin_before_anything_else() {
        let c = challenge("https://node.example");
        let err = check_challenge(&c, "https://node.example", node().did(), NOW).unwrap_err();
        assert!(
            matches!(err, AuthError::Challenge(ChallengeRefused::Malformed(_))),
            "{err}"
        );
    }
}
