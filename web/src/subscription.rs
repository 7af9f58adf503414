//! `Subscription`: one space's events as they come, each verified before the app sees it.
//!
//! A task per subscription takes the node's notifications in order. Each event must verify
//! under the space's sequencer and be the next entry of the log the cursor holds; a `beam_ref`'s
//! beam, sent inline or fetched with `beam.get`, must be the beam the ref names. Only then is it
//! handed to `onEvent`. Anything that fails ends the subscription with a `verification` error
//! through `onError`, and nothing of it is handed out.
//!
//! The task subscribes again from its cursor, without the app's help, when the connection comes
//! back after a drop, when the node cuts it off as a slow subscriber, and when an event arrives
//! past the next one (a gap: the node's backlog then fills it, §6.3.14).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_channel::mpsc;
use futures_util::StreamExt;
use northstar_protocol::ContentId;
use northstar_protocol::Did;
use northstar_protocol::address::{BeamPath, BeamUri, SpaceId};
use northstar_protocol::api::EventItem;
use northstar_protocol::method::SPACE_EVENT;
use northstar_protocol::verify::{Accepted, EventWithBeam, LogCursor};
use northstar_protocol::wire::{Beam, Event, Payload};
use serde::Serialize;
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;

use crate::Error;
use crate::client::{Inner, Params, to_js};
use crate::options::{AppOptions, Handler};
use crate::rpc::{Connection, Notice, SUBSCRIPTION_QUEUE};

/// How many gaps in a row the task fills by subscribing again before it calls the node's
/// log broken: a node that keeps skipping events is not serving the log.
const MAX_GAPS: u32 = 3;

/// `Client.subscribe`'s options, read from the app's object.
pub(crate) struct Options {
    pub(crate) since: u64,
    pub(crate) head_id: Option<ContentId>,
    on_event: Handler,
    on_error: Option<Handler>,
}

impl Options {
    pub(crate) fn read(options: &JsValue) -> Result<Options, Error> {
        let options = AppOptions(options);
        let head_id = options
            .string("headId")?
            .map(|text| {
                ContentId::parse(&text).map_err(|e| Error::BadArgument {
                    what: "headId",
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Options {
            since: options.whole("since")?.unwrap_or(0),
            head_id,
            on_event: options.handler("onEvent", "the subscription's events go there")?,
            on_error: options.optional_handler("onError")?,
        })
    }

    fn event(&self, event: &JsValue) {
        self.on_event.call(event);
    }

    fn error(&self, error: Error) {
        Handler::error(&self.on_error, error);
    }
}

/// A live subscription to one space's events.
#[wasm_bindgen]
pub struct Subscription {
    state: Rc<State>,
}

struct State {
    cursor: RefCell<LogCursor>,
    /// The app closed it, or it ended.
    closed: Cell<bool>,
    /// The connection and the id the node gave, while subscribed.
    wire: RefCell<Option<(Rc<Connection>, String)>>,
}

impl State {
    fn unsubscribe(&self) {
        let wire = self.wire.borrow_mut().take();
        if let Some((connection, id)) = wire {
            connection.unsubscribe(&id);
        }
    }

    fn params(&self) -> Result<String, Error> {
        let cursor = self.cursor.borrow();
        Ok(Params::new()
            .with(cursor.space())?
            .with(&cursor.last())?
            .with(&true)?
            .text())
    }
}

#[wasm_bindgen]
impl Subscription {
    /// The seq of the last event handed out (or `since`): where to resume from.
    #[wasm_bindgen(getter)]
    pub fn head(&self) -> f64 {
        // A seq is at most 2^53 - 1, so it is exact.
        self.state.cursor.borrow().last() as f64
    }

    /// The content id of the last event handed out, if one was: keep it with `head` and pass
    /// both to `subscribe` to resume with the chain checked across.
    #[wasm_bindgen(getter, js_name = headId)]
    pub fn head_id(&self) -> Option<String> {
        self.state
            .cursor
            .borrow()
            .head_id()
            .map(|id| id.to_string())
    }

    /// The space.
    #[wasm_bindgen(getter)]
    pub fn space(&self) -> String {
        self.state.cursor.borrow().space().to_string()
    }

    /// End the subscription: no event is handed out after this.
    pub fn close(&self) {
        self.state.closed.set(true);
        self.state.unsubscribe();
    }
}

/// How a run of deliveries ended.
enum Outcome {
    /// Subscribe again from the cursor.
    Again,
    /// The subscription is over, with the error to report if any.
    End(Option<Error>),
}

impl Subscription {
    /// Subscribe (the first time on this task's behalf, so a refusal rejects `subscribe`'s
    /// promise) and start the task that delivers.
    pub(crate) async fn start(
        inner: Rc<Inner>,
        cursor: LogCursor,
        options: Options,
    ) -> Result<Subscription, Error> {
        let state = Rc::new(State {
            cursor: RefCell::new(cursor),
            closed: Cell::new(false),
            wire: RefCell::new(None),
        });
        let connection = inner.connection()?;
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE);
        let id = connection.subscribe(&state.params()?, tx).await?;
        *state.wire.borrow_mut() = Some((connection, id));
        wasm_bindgen_futures::spawn_local(run(inner, state.clone(), options, rx));
        Ok(Subscription { state })
    }
}

/// The subscription's task: deliver, and subscribe again whenever the node's side ended
/// without the log being at fault.
async fn run(
    inner: Rc<Inner>,
    state: Rc<State>,
    options: Options,
    mut notices: mpsc::Receiver<Notice>,
) {
    let mut gaps = 0;
    loop {
        match deliver(&inner, &state, &options, &mut notices, &mut gaps).await {
            Outcome::Again => state.unsubscribe(),
            Outcome::End(error) => {
                state.unsubscribe();
                state.closed.set(true);
                if let Some(error) = error {
                    options.error(error);
                }
                return;
            }
        }
        notices = loop {
            if state.closed.get() || inner.is_closed() {
                return;
            }
            let Some(connection) = inner.connected().await else {
                return;
            };
            let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE);
            let params = match state.params() {
                Ok(params) => params,
                Err(e) => return options.error(e),
            };
            match connection.subscribe(&params, tx).await {
                Ok(id) => {
                    *state.wire.borrow_mut() = Some((connection, id));
                    break rx;
                }
                // Dropped again before the answer: wait for the next connection.
                Err(Error::Connection { .. }) => continue,
                Err(e) => {
                    state.closed.set(true);
                    return options.error(e);
                }
            }
        };
    }
}

async fn deliver(
    inner: &Inner,
    state: &State,
    options: &Options,
    notices: &mut mpsc::Receiver<Notice>,
    gaps: &mut u32,
) -> Outcome {
    while let Some(notice) = notices.next().await {
        if state.closed.get() {
            return Outcome::End(None);
        }
        let raw = match notice {
            Notice::Item(raw) => raw,
            Notice::Lost => return Outcome::Again,
            // The node ends a dm subscription whose subscriber is no longer a member; that is
            // for good. Any other end (a slow subscriber, a failure of the node) is resumed.
            Notice::Ended(text) if text.starts_with("not_member") => {
                return Outcome::End(Some(Error::Rpc {
                    method: SPACE_EVENT,
                    code: 1202,
                    name: Some("not_member".to_owned()),
                    message: text,
                }));
            }
            Notice::Ended(_) => return Outcome::Again,
        };
        let item: EventItem = match serde_json::from_str(raw.get()) {
            Ok(item) => item,
            Err(source) => {
                return Outcome::End(Some(Error::BadAnswer {
                    method: SPACE_EVENT,
                    source,
                }));
            }
        };
        let accepted = state.cursor.borrow_mut().accept_item(&item);
        let item = match accepted {
            Ok((Accepted::Next, item)) => item,
            Ok((Accepted::Seen, _)) => continue,
            Ok((Accepted::Ahead, _)) => {
                *gaps += 1;
                if *gaps > MAX_GAPS {
                    return Outcome::End(Some(state.cursor.borrow().gap().into()));
                }
                return Outcome::Again;
            }
            Err(e) => return Outcome::End(Some(e.into())),
        };
        *gaps = 0;
        let item = match inner.complete(item).await {
            Ok(item) => item,
            Err(e) => return Outcome::End(Some(e)),
        };
        if state.closed.get() {
            return Outcome::End(None);
        }
        match event_to_js(&item) {
            Ok(value) => options.event(&value),
            Err(e) => return Outcome::End(Some(e)),
        }
    }
    // The connection dropped the queue (it overflowed): resume from the cursor.
    Outcome::Again
}

/// A verified event as the app sees it (`VerifiedEvent` in the TypeScript declarations).
#[derive(Serialize)]
struct VerifiedEvent<'a> {
    space: &'a SpaceId,
    seq: u64,
    id: String,
    timestamp: u64,
    kind: &'static str,
    author: &'a Did,
    event: &'a Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    beam: Option<&'a Beam>,
    #[serde(rename = "beamUri", skip_serializing_if = "Option::is_none")]
    beam_uri: Option<String>,
}

/// `item` as a JavaScript `VerifiedEvent`.
pub(crate) fn event_to_js(item: &EventWithBeam) -> Result<JsValue, Error> {
    let event = &item.event;
    let kind = match &event.payload {
        Payload::Create(_) => "create",
        Payload::Membership(_) => "membership",
        Payload::BeamRef(_) => "beam_ref",
        Payload::Tombstone(_) => "tombstone",
        Payload::Edit(_) => "edit",
    };
    let beam_uri = match &event.payload {
        Payload::BeamRef(r) => Some(
            BeamUri {
                authority: r.home.clone(),
                path: BeamPath::new(&r.author, r.beam),
            }
            .to_string(),
        ),
        _ => None,
    };
    // A verified event has an id: its canonical form was hashed to check it.
    let id = event.id().map_err(|source| Error::Event {
        seq: event.seq,
        source: source.into(),
    })?;
    to_js(&VerifiedEvent {
        space: &event.space,
        seq: event.seq,
        id: id.to_string(),
        timestamp: event.timestamp,
        kind,
        author: event.payload.author(),
        event,
        beam: item.beam.as_ref(),
        beam_uri,
    })
}
