//! The signature rule of `spec/` §3.4 at its edges: signatures no honest signer makes, built
//! from the curve's arithmetic, with the answer every node must give. Each case also records
//! what RFC 8032's cofactorless strict check says, which is where the rule of protocol v1
//! differs from v0's. The cases are checked by `protocol/tests/vectors/signature_rules.rs`.

#[path = "../../../protocol/tests/vectors/oracles.rs"]
mod oracles;

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use northstar_protocol::Did;
use northstar_protocol::sign::Signature;
use oracles::{strict, zip215};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

/// What every case signs (a raw message: the rule is the same for every domain).
const MESSAGE: &[u8] = b"northstar/v1 signature rule vector";

/// A point of order 8: the canonical encoding the spec's table of small-order points lists.
const ORDER_8: [u8; 32] = [
    0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
    0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
];

fn wide(parts: &[&[u8]]) -> Scalar {
    let mut hash = Sha512::new();
    for part in parts {
        hash.update(part);
    }
    Scalar::from_bytes_mod_order_wide(&hash.finalize().into())
}

fn order_8() -> EdwardsPoint {
    CompressedEdwardsY(ORDER_8).decompress().unwrap()
}

/// A signer whose secret scalar is known, so signatures can be assembled by hand.
struct Signer {
    secret: Scalar,
    public: [u8; 32],
}

impl Signer {
    /// The key `[a]B`, plus `torsion` (a key of mixed order when it is not the identity).
    fn new(name: &str, torsion: EdwardsPoint) -> Self {
        let secret = wide(&[name.as_bytes()]);
        let public = (&secret * ED25519_BASEPOINT_TABLE + torsion)
            .compress()
            .to_bytes();
        Self { secret, public }
    }

    fn did(&self) -> Did {
        Did::from_public_key(&self.public).unwrap()
    }

    fn challenge(&self, r: &[u8; 32], message: &[u8]) -> Scalar {
        wide(&[r, &self.public, message])
    }

    /// `R || S` with the given `R` encoding and `S = r + h·a` for the nonce `r`.
    fn sign_with(&self, r_bytes: [u8; 32], r: Scalar, message: &[u8]) -> [u8; 64] {
        let s = r + self.challenge(&r_bytes, message) * self.secret;
        join(r_bytes, s.to_bytes())
    }

    /// An honest signature, with `R = [r]B` plus `torsion`.
    fn sign(&self, nonce: &[u8], torsion: EdwardsPoint, message: &[u8]) -> [u8; 64] {
        let r = wide(&[b"nonce", nonce, &self.public]);
        let r_bytes = (&r * ED25519_BASEPOINT_TABLE + torsion)
            .compress()
            .to_bytes();
        self.sign_with(r_bytes, r, message)
    }

    /// A signature with the given `R` encoding of a small-order point and `S = h·a`, which
    /// satisfies the cofactored equation: `[8]R` vanishes.
    fn with_small_order_r(&self, r_bytes: [u8; 32]) -> [u8; 64] {
        self.sign_with(r_bytes, Scalar::ZERO, MESSAGE)
    }
}

fn join(r: [u8; 32], s: [u8; 32]) -> [u8; 64] {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(&s);
    sig
}

/// The group `signature_rules` of `northstar.json`.
pub fn vectors() -> Value {
    let identity = EdwardsPoint::default();
    let carol = Signer::new("carol", identity);
    let dave = Signer::new("dave", order_8());
    let honest = carol.sign(b"honest", identity, MESSAGE);
    let mut s_plus_l = honest;
    add_group_order(&mut s_plus_l[32..]);
    // A key of mixed order signs honestly; the nonce is picked so that the cofactorless check
    // fails (it passes only when 8 divides the challenge).
    let mixed = (0u8..)
        .map(|n| dave.sign(&[n], identity, MESSAGE))
        .find(|sig| !strict(&dave.public, MESSAGE, sig))
        .unwrap();
    let case = |name: &str, signer: &Signer, message: &[u8], sig: [u8; 64], valid: bool| {
        json!({
            "name": name,
            "signer": signer.did().as_str(),
            "public_key_hex": hex::encode(signer.public),
            "message_hex": hex::encode(message),
            "signature": Signature::from_bytes(sig).to_string(),
            "valid": valid,
            "valid_under_rfc8032_strict": strict(&signer.public, message, &sig),
            "valid_under_zip215": zip215(&signer.public, message, &sig),
        })
    };
    let mut cases = vec![
        case("an honest signature", &carol, MESSAGE, honest, true),
        case(
            "the same signature over another message",
            &carol,
            b"another message",
            honest,
            false,
        ),
        case(
            "R with a small-order component",
            &carol,
            MESSAGE,
            carol.sign(b"torsion", order_8(), MESSAGE),
            true,
        ),
        case(
            "an honest signature by a key with a small-order component",
            &dave,
            MESSAGE,
            mixed,
            true,
        ),
        case(
            "S not below the group order (S + l)",
            &carol,
            MESSAGE,
            s_plus_l,
            false,
        ),
    ];
    // Every encoding of a point of small order as R, with S = h·a: each satisfies the
    // cofactored equation, and each is refused by the checks on R's bytes.
    for r in small_order_encodings() {
        let canonical = CompressedEdwardsY(r)
            .decompress()
            .unwrap()
            .compress()
            .to_bytes()
            == r;
        let name = format!(
            "R = {} ({}small order), satisfying the cofactored equation",
            hex::encode(r),
            if canonical { "" } else { "not canonical, " }
        );
        cases.push(case(
            &name,
            &carol,
            MESSAGE,
            carol.with_small_order_r(r),
            false,
        ));
    }
    Value::Array(cases)
}

/// Every 32-byte string that decodes to a point of small order: the eight canonical encodings,
/// the identity and the point of order 2 with the sign bit set (x = 0 has no sign), and y = p
/// and y = p + 1 (0 and 1 again) with either sign: fourteen in all.
pub fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut found = Vec::new();
    for k in 0u8..8 {
        let point = Scalar::from(k) * order_8();
        let canonical = point.compress().to_bytes();
        for sign in [0x00, 0x80] {
            let mut y = canonical;
            y[31] = (y[31] & 0x7f) | sign;
            let mut plus_p = None;
            if y[1..31].iter().all(|&b| b == 0) && y[31] & 0x7f == 0 && y[0] < 19 {
                // y + p, below 2^255 for these small y.
                let mut bytes = [0xff; 32];
                bytes[0] = 0xed + y[0];
                bytes[31] = 0x7f | sign;
                plus_p = Some(bytes);
            }
            for bytes in std::iter::once(y).chain(plus_p) {
                let small = CompressedEdwardsY(bytes)
                    .decompress()
                    .is_some_and(|p| p.is_small_order());
                if small && !found.contains(&bytes) {
                    found.push(bytes);
                }
            }
        }
    }
    assert_eq!(found.len(), 14, "the small-order encodings");
    found
}

/// Add the group order ℓ to a 32-byte little-endian integer that stays below 2^256.
fn add_group_order(bytes: &mut [u8]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (byte, add) in bytes.iter_mut().zip(L) {
        let sum = u16::from(*byte) + u16::from(add) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
}
