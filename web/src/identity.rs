//! `Identity`: a user's key pair, and everything the protocol has a user sign.
//!
//! The secret is the key pair's 32-byte Ed25519 seed. `Identity.save` keeps it in the browser's
//! IndexedDB and `Identity.load` reads it back (the `store` module); [`Identity::secret`] hands it
//! to an app that exports it. The SDK never sends it anywhere, and nothing a node is sent
//! contains it: only signatures and the DID.

use northstar_protocol::address::SpaceId;
use northstar_protocol::wire::{
    AuthChallenge, AuthResponse, Beam, Home, Membership, MembershipAction, Tombstone,
};
use northstar_protocol::{ContentId, Did, Keypair, canonical};
use serde::Serialize;
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;

use crate::{Error, whole};

/// The name an identity is stored under when the app gives none.
const DEFAULT_NAME: &str = "default";

/// A user's identity: an Ed25519 key pair and its `did:key`.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Identity {
    key: Keypair,
}

/// The parameters of `space.post`, as the node takes them.
#[derive(Serialize)]
struct Post<'a> {
    beam: &'a Beam,
    beam_ref: &'a northstar_protocol::wire::BeamRef,
}

#[wasm_bindgen]
impl Identity {
    /// A new identity from the platform's random source (`crypto.getRandomValues`).
    pub fn generate() -> Result<Identity, Error> {
        let key = Keypair::generate().map_err(|e| Error::Random(e.to_string()))?;
        Ok(Self { key })
    }

    /// The identity whose secret (32-byte seed) is `secret`, as [`Identity::secret`] gave it.
    #[wasm_bindgen(js_name = fromSecret)]
    pub fn from_secret(secret: &[u8]) -> Result<Identity, Error> {
        let seed: &[u8; 32] = secret.try_into().map_err(|_| Error::BadArgument {
            what: "secret",
            reason: format!("expected 32 bytes, got {}", secret.len()),
        })?;
        Ok(Self {
            key: Keypair::from_seed(seed),
        })
    }

    /// The identity whose secret is `secret` in hex (64 digits).
    #[wasm_bindgen(js_name = fromSecretHex)]
    pub fn from_secret_hex(secret: &str) -> Result<Identity, Error> {
        let bytes = hex::decode(secret).map_err(|e| Error::BadArgument {
            what: "secret",
            reason: e.to_string(),
        })?;
        Self::from_secret(&bytes)
    }

    /// The identity stored under `name` (default `"default"`) in this browser's IndexedDB, or
    /// `undefined` when there is none.
    #[wasm_bindgen(unchecked_return_type = "Promise<Identity | undefined>")]
    pub fn load(name: Option<String>) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let name = name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
            match crate::store::load(&name).await? {
                Some(secret) => Ok(Identity::from_secret(&secret)?.into()),
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }

    /// The identity stored under `name` (default `"default"`), or a new one, generated and
    /// stored there: what an app calls when it starts.
    #[wasm_bindgen(js_name = loadOrGenerate, unchecked_return_type = "Promise<Identity>")]
    pub fn load_or_generate(name: Option<String>) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let name = name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
            if let Some(secret) = crate::store::load(&name).await? {
                return Ok(Identity::from_secret(&secret)?.into());
            }
            let identity = Identity::generate()?;
            crate::store::save(&name, &identity.key.seed()[..]).await?;
            Ok(identity.into())
        })
    }

    /// Keep this identity in this browser's IndexedDB under `name` (default `"default"`),
    /// replacing what was stored there. The secret stays on the device.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn save(&self, name: Option<String>) -> js_sys::Promise {
        let secret = *self.key.seed();
        wasm_bindgen_futures::future_to_promise(async move {
            let name = name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
            crate::store::save(&name, &secret).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Remove the identity stored under `name` (default `"default"`) from IndexedDB.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn forget(name: Option<String>) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let name = name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
            crate::store::forget(&name).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The secret: the 32-byte seed of the key pair. Store it on this device only (IndexedDB);
    /// it must never leave it. Anyone holding it is this identity.
    pub fn secret(&self) -> Vec<u8> {
        self.key.seed().to_vec()
    }

    /// The secret in hex (64 digits); see [`Identity::secret`].
    #[wasm_bindgen(js_name = secretHex)]
    pub fn secret_hex(&self) -> String {
        hex::encode(*self.key.seed())
    }

    /// The identity's `did:key`.
    #[wasm_bindgen(getter)]
    pub fn did(&self) -> String {
        self.key.did().to_string()
    }

    /// The answer (`auth.respond`'s `response`, JSON) to a node's challenge (`auth.challenge`'s
    /// result, JSON), after the checks the Rust SDK makes (§5.2): the challenge's shape, the
    /// node's signature, its origin against `expectedOrigin` (the origin dialled, e.g.
    /// `wss://node.example`), its node against `expectedNode` (the DID `node.info` gave), and
    /// its expiry against `now` (ms since the Unix epoch: `Date.now()`).
    #[wasm_bindgen(js_name = answerChallenge)]
    pub fn answer_challenge(
        &self,
        challenge: &str,
        #[wasm_bindgen(js_name = expectedOrigin)] expected_origin: &str,
        #[wasm_bindgen(js_name = expectedNode)] expected_node: &str,
        now: f64,
    ) -> Result<String, Error> {
        let challenge: AuthChallenge = parse(challenge, "challenge")?;
        let expected_node = did(expected_node, "expected node")?;
        challenge.check_as_client(expected_origin, &expected_node, whole(now, "now")?)?;
        to_json(&AuthResponse::answer(&self.key, challenge)?)
    }

    /// A post: `space.post`'s parameters as JSON, `{"beam": …, "beam_ref": …}`, signed once.
    /// `home` is the authority (`host[:port]`) of this user's home node, where the beam lives;
    /// `createdAt` is ms since the Unix epoch.
    pub fn post(
        &self,
        space: &str,
        home: &str,
        title: &str,
        body: &str,
        #[wasm_bindgen(js_name = createdAt)] created_at: f64,
    ) -> Result<String, Error> {
        let (beam, beam_ref) = Beam::post(
            &self.key,
            space_id(space)?,
            home,
            title,
            body,
            whole(created_at, "createdAt")?,
        )?;
        to_json(&Post {
            beam: &beam,
            beam_ref: &beam_ref,
        })
    }

    /// A join request (`space.join`'s `request`, JSON) naming this user's home node: its DID
    /// and its authority (`host[:port]`).
    pub fn join(
        &self,
        space: &str,
        #[wasm_bindgen(js_name = homeNode)] home_node: &str,
        #[wasm_bindgen(js_name = homeAuthority)] home_authority: &str,
        #[wasm_bindgen(js_name = createdAt)] created_at: f64,
    ) -> Result<String, Error> {
        let home = Home::new(did(home_node, "home node")?, home_authority);
        let request = Membership::join(
            &self.key,
            space_id(space)?,
            home,
            whole(created_at, "createdAt")?,
        )?;
        to_json(&request)
    }

    /// Any other membership request (JSON, for `space.leave`, `space.invite`, `space.kick`,
    /// `space.ban`): `action` is `"leave"`, `"invite"`, `"kick"` or `"ban"`; `subject` is the
    /// DID it concerns (this identity's own for `"leave"`).
    pub fn membership(
        &self,
        space: &str,
        action: &str,
        subject: &str,
        #[wasm_bindgen(js_name = createdAt)] created_at: f64,
    ) -> Result<String, Error> {
        let action = match action {
            "leave" => MembershipAction::Leave,
            "invite" => MembershipAction::Invite,
            "kick" => MembershipAction::Kick,
            "ban" => MembershipAction::Ban,
            other => {
                return Err(Error::BadArgument {
                    what: "action",
                    reason: format!(
                        "{other:?} is not leave, invite, kick or ban (a join names a home: join())"
                    ),
                });
            }
        };
        let request = Membership::create(
            &self.key,
            space_id(space)?,
            action,
            did(subject, "subject")?,
            whole(created_at, "createdAt")?,
        )?;
        request.check_rules().map_err(|e| Error::BadArgument {
            what: "subject",
            reason: e.to_string(),
        })?;
        to_json(&request)
    }

    /// A tombstone (`beam.delete`'s `tombstone`, JSON) deleting this user's beam whose content
    /// id is `beam`; `deletedAt` is ms since the Unix epoch.
    pub fn tombstone(
        &self,
        beam: &str,
        #[wasm_bindgen(js_name = deletedAt)] deleted_at: f64,
    ) -> Result<String, Error> {
        let beam = ContentId::parse(beam).map_err(|e| Error::BadArgument {
            what: "beam id",
            reason: e.to_string(),
        })?;
        to_json(&Tombstone::create(
            &self.key,
            beam,
            whole(deleted_at, "deletedAt")?,
        )?)
    }
}

impl Identity {
    /// The key pair, for the client that signs as this identity.
    pub(crate) fn keypair(&self) -> &Keypair {
        &self.key
    }
}

/// `text` parsed strictly (no duplicate keys, floats or unknown members) as a `what`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &'static str,
) -> Result<T, Error> {
    canonical::from_str_strict(text).map_err(|source| Error::Malformed { what, source })
}

pub(crate) fn did(text: &str, what: &'static str) -> Result<Did, Error> {
    Did::parse(text).map_err(|e| Error::BadArgument {
        what,
        reason: e.to_string(),
    })
}

pub(crate) fn space_id(text: &str) -> Result<SpaceId, Error> {
    SpaceId::parse(text).map_err(|e| Error::BadArgument {
        what: "space id",
        reason: e.to_string(),
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Error> {
    // The wire objects are plain data; serialising them cannot fail, but a failure is still
    // reported, not unwrapped.
    serde_json::to_string(value).map_err(|e| Error::BadArgument {
        what: "object",
        reason: e.to_string(),
    })
}
