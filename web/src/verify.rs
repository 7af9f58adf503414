//! The checks the Rust SDK makes on what a node sends (`sdk/src/verify.rs`), for JavaScript:
//! an event under its space's sequencer (§4.8), a log through the protocol's one log-chain check
//! ([`Chain`]), and a beam under its author and against the path it was asked for.

use northstar_protocol::ContentId;
use northstar_protocol::address::BeamPath;
use northstar_protocol::chain::{Chain, Place};
use northstar_protocol::sign;
use northstar_protocol::wire::{Beam, Event};
use wasm_bindgen::prelude::wasm_bindgen;

use crate::identity::{did, parse, space_id};
use crate::{Error, whole};

/// Verify an event (JSON) under `sequencer`, the DID its space's genesis names: its shape,
/// the sequencer's signature and its author's (§4.8). Returns the event's content id, which the
/// next event's `prev` must name.
#[wasm_bindgen(js_name = verifyEvent)]
pub fn verify_event(event: &str, sequencer: &str) -> Result<String, Error> {
    let event: Event = parse(event, "event")?;
    let sequencer = did(sequencer, "sequencer")?;
    let id = event.verify_id(&sequencer).map_err(|source| Error::Event {
        seq: event.seq,
        source,
    })?;
    Ok(id.to_string())
}

/// Verify a beam (JSON) under its author and check it is the beam `path`
/// (`{authorHash}/{contentId}`, as in `beam.get`) names. Returns the beam's content id.
#[wasm_bindgen(js_name = verifyBeam)]
pub fn verify_beam(beam: &str, path: &str) -> Result<String, Error> {
    let beam: Beam = parse(beam, "beam")?;
    let path = BeamPath::parse(path).map_err(|e| Error::BadArgument {
        what: "beam path",
        reason: e.to_string(),
    })?;
    let id = sign::verify_with_id(&beam, &beam.author).map_err(|source| Error::BadBeam {
        path: path.to_string(),
        source,
    })?;
    let actual = BeamPath::new(&beam.author, id);
    if actual != path {
        return Err(Error::WrongBeam {
            expected: path.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(id.to_string())
}

/// One space's log as a reader receives it: each event pushed must verify under the space's
/// sequencer and be the next entry (seq + 1, `prev` = the id of the event before). A gap, a
/// fork, a broken link or a bad signature is an error naming the seq, and the checker stays
/// where it was.
#[wasm_bindgen]
#[derive(Debug, Clone)]
pub struct LogChecker {
    chain: Chain,
}

#[wasm_bindgen]
impl LogChecker {
    /// A log read from its start: its first event must be the genesis of `space`, naming
    /// `sequencer`.
    #[wasm_bindgen(constructor)]
    pub fn new(space: &str, sequencer: &str) -> Result<LogChecker, Error> {
        Ok(Self {
            chain: Chain::from_start(space_id(space)?, did(sequencer, "sequencer")?),
        })
    }

    /// A log that starts at `genesis` (JSON), the space's first event; the sequencer is the
    /// one it names.
    #[wasm_bindgen(js_name = fromGenesis)]
    pub fn from_genesis(genesis: &str) -> Result<LogChecker, Error> {
        let genesis: Event = parse(genesis, "genesis")?;
        Ok(Self {
            chain: Chain::from_genesis(&genesis)?,
        })
    }

    /// A log held up to event `head`, whose content id is `headId`. Without `headId` (a reader
    /// resuming from a cursor) the next event's `prev` is taken on trust; its signatures are not.
    pub fn after(
        space: &str,
        sequencer: &str,
        head: f64,
        #[wasm_bindgen(js_name = headId)] head_id: Option<String>,
    ) -> Result<LogChecker, Error> {
        let head_id = head_id
            .map(|id| {
                ContentId::parse(&id).map_err(|e| Error::BadArgument {
                    what: "head id",
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            chain: Chain::after(
                space_id(space)?,
                did(sequencer, "sequencer")?,
                whole(head, "head")?,
                head_id,
            ),
        })
    }

    /// Verify `event` (JSON) and place it: `"next"` when it is the next entry (the checker
    /// moves to it), `"seen"` when it is the head again or an earlier event. Throws on a gap,
    /// a fork, a broken link, another space or a bad signature.
    pub fn push(&mut self, event: &str) -> Result<String, Error> {
        let event: Event = parse(event, "event")?;
        match self.chain.accept(&event)? {
            Place::Next => Ok("next".to_owned()),
            Place::Head | Place::Behind => Ok("seen".to_owned()),
            Place::Ahead => Err(Error::Gap {
                space: self.chain.space().to_string(),
                expected: self.chain.head() + 1,
                actual: event.seq,
            }),
        }
    }

    /// The seq of the last event accepted (0 before the genesis).
    #[wasm_bindgen(getter)]
    pub fn head(&self) -> f64 {
        // A seq is at most 2^53 - 1 (a signed object's integers are), so it is exact.
        self.chain.head() as f64
    }

    /// The content id of the last event accepted, if known.
    #[wasm_bindgen(getter, js_name = headId)]
    pub fn head_id(&self) -> Option<String> {
        self.chain.head_id().map(|id| id.to_string())
    }

    /// The space followed.
    #[wasm_bindgen(getter)]
    pub fn space(&self) -> String {
        self.chain.space().to_string()
    }

    /// The DID whose signature every event must carry.
    #[wasm_bindgen(getter)]
    pub fn sequencer(&self) -> String {
        self.chain.sequencer().to_string()
    }
}
