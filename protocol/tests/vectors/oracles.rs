//! What the two Ed25519 libraries say about a signature on their own: informative answers the
//! signature-rule vectors record beside the rule of `spec/` §3.4. Shared by the builder of the
//! vectors (`tests/tests/vectors/signature_rules.rs`) and their checker here.

/// RFC 8032's cofactorless check with ed25519-dalek's strict rules: what v0 used.
pub fn strict(public: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else {
        return false;
    };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

/// ZIP 215 alone, without the encoding checks on `R` that §3.4 adds.
pub fn zip215(public: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    ed25519_zebra::VerificationKey::try_from(*public).is_ok_and(|key| {
        key.verify(&ed25519_zebra::Signature::from_bytes(sig), message)
            .is_ok()
    })
}
