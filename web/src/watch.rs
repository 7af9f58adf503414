//! `Watch`: a live stream's frames (§10.3), each checked under the stream's owner before the
//! app sees it, on a connection of its own, as the Rust SDK's watch is.
//!
//! The protocol's [`Tracker`] decides which frames are new and checks their signatures; a frame
//! that fails is reported through `onError` (kind `verification`) and never handed out, and
//! the watch goes on. When the connection drops or the node cuts the watch off as slow
//! (`slow_watcher`), the watch dials again and resumes after the last frame it delivered; any
//! other `stream.closed` ends it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_channel::mpsc;
use futures_util::StreamExt;
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::StreamWatching;
use northstar_protocol::method::{STREAM_CLOSED, STREAM_WATCH};
use northstar_protocol::watch::{Tracker, WatchedFrame};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;

use crate::Error;
use crate::client::{Inner, Params, RECONNECT_FIRST_MS, RECONNECT_MAX_MS, handshake};
use crate::options::{AppOptions, Handler};
use crate::rpc::{Connection, Live, WATCH_QUEUE};

/// `Client.watch`'s options, read from the app's object.
pub(crate) struct Options {
    since: Option<u64>,
    on_frame: Handler,
    on_error: Option<Handler>,
}

impl Options {
    pub(crate) fn read(options: &JsValue) -> Result<Options, Error> {
        let options = AppOptions(options);
        Ok(Options {
            since: options.whole("since")?,
            on_frame: options.handler("onFrame", "the watch's frames go there")?,
            on_error: options.optional_handler("onError")?,
        })
    }

    fn frame(&self, frame: &WatchedFrame) {
        let object = js_sys::Object::new();
        let set = |key: &str, value: &JsValue| {
            // A fresh plain object takes any property.
            let _ = js_sys::Reflect::set(&object, &JsValue::from_str(key), value);
        };
        // Numbers and timestamps are at most 2^53 - 1 (§4.9), exact as JavaScript numbers.
        set("number", &JsValue::from_f64(frame.number as f64));
        set("timestamp", &JsValue::from_f64(frame.timestamp as f64));
        set("key", &JsValue::from_bool(frame.key));
        set("gap", &JsValue::from_f64(frame.gap as f64));
        set(
            "payload",
            &js_sys::Uint8Array::from(frame.payload.as_slice()).into(),
        );
        self.on_frame.call(&object);
    }

    fn error(&self, error: Error) {
        Handler::error(&self.on_error, error);
    }
}

/// A live watch of one stream's frames.
#[wasm_bindgen]
pub struct Watch {
    state: Rc<State>,
}

struct State {
    tracker: RefCell<Tracker>,
    closed: Cell<bool>,
    connection: RefCell<Option<Rc<Connection>>>,
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** A frame of a live stream, checked under the stream's owner. */
export interface StreamFrame {
  number: number; timestamp: number;
  /** Whether a player can start here. */
  key: boolean;
  /** Frames missing between the one delivered before and this one. */
  gap: number;
  payload: Uint8Array;
}
/** `Client.watch`'s options. */
export interface WatchOptions {
  /** The last frame number the app has: resume after it (else from the node's latest key frame). */
  since?: number;
  onFrame: (frame: StreamFrame) => void;
  /** A frame that failed its checks (`kind` `"verification"`, the watch goes on), or the end of
   * the watch (`kind` `"rpc"`). */
  onError?: (error: Error & { kind: string }) => void;
}
"#;

#[wasm_bindgen]
impl Watch {
    /// The number of the last frame delivered (or `since`), if any.
    #[wasm_bindgen(getter)]
    pub fn last(&self) -> Option<f64> {
        // Frame numbers are at most 2^53 - 1, exact as JavaScript numbers.
        self.state.tracker.borrow().last().map(|n| n as f64)
    }

    /// The stream watched.
    #[wasm_bindgen(getter)]
    pub fn space(&self) -> String {
        self.state.tracker.borrow().space().to_string()
    }

    /// Stop watching: no frame is handed out after this, and the watch's connection closes.
    pub fn close(&self) {
        self.state.closed.set(true);
        if let Some(connection) = self.state.connection.borrow_mut().take() {
            connection.close();
        }
    }
}

impl Watch {
    /// Open the watch (a refusal rejects `watch`'s promise) and start the task that delivers.
    pub(crate) async fn start(
        inner: Rc<Inner>,
        space: SpaceId,
        options: JsValue,
    ) -> Result<Watch, Error> {
        let options = Options::read(&options)?;
        let state = Rc::new(State {
            tracker: RefCell::new(Tracker::new(space, options.since)),
            closed: Cell::new(false),
            connection: RefCell::new(None),
        });
        let frames = open(&inner, &state).await?;
        wasm_bindgen_futures::spawn_local(run(inner, state.clone(), options, frames));
        Ok(Watch { state })
    }
}

/// A connection of the watch's own, authenticated as the client is, and `stream.watch` on it
/// after the last frame delivered.
async fn open(inner: &Inner, state: &State) -> Result<mpsc::Receiver<Live>, Error> {
    let (tx, rx) = mpsc::channel(WATCH_QUEUE);
    let (connection, _) = handshake(inner.url(), inner.origin(), inner.keypair(), Some(tx)).await?;
    let params = {
        let tracker = state.tracker.borrow();
        let params = Params::new().with(tracker.space())?;
        match tracker.last() {
            Some(since) => params.with(&since)?,
            None => params,
        }
        .text()
    };
    let _watching: StreamWatching = connection.call(STREAM_WATCH, &params).await?;
    if state.closed.get() {
        connection.close();
    } else {
        *state.connection.borrow_mut() = Some(connection);
    }
    Ok(rx)
}

async fn run(
    inner: Rc<Inner>,
    state: Rc<State>,
    options: Options,
    mut frames: mpsc::Receiver<Live>,
) {
    loop {
        while let Some(live) = frames.next().await {
            if state.closed.get() {
                return;
            }
            match live {
                Live::Frame(bytes) => {
                    let accepted = state.tracker.borrow_mut().accept(&bytes);
                    match accepted {
                        Ok(Some(frame)) => options.frame(&frame),
                        Ok(None) => {}
                        Err(e) => options.error(e.into()),
                    }
                }
                Live::Closed(notice) if notice.name == "slow_watcher" => break,
                Live::Closed(notice) => {
                    state.closed.set(true);
                    return options.error(Error::Rpc {
                        method: STREAM_CLOSED,
                        code: i64::from(notice.code),
                        name: Some(notice.name),
                        message: notice.message,
                    });
                }
                Live::Lost => break,
            }
        }
        // Dial again, after the last frame delivered, until it works or the app stops.
        state.connection.borrow_mut().take();
        let mut delay = RECONNECT_FIRST_MS;
        frames = loop {
            if state.closed.get() || inner.is_closed() {
                return;
            }
            match open(&inner, &state).await {
                Ok(frames) => break frames,
                Err(Error::Connection { .. }) => {}
                Err(e) => {
                    state.closed.set(true);
                    return options.error(e);
                }
            }
            gloo_timers::future::TimeoutFuture::new(delay).await;
            delay = (delay * 2).min(RECONNECT_MAX_MS);
        };
    }
}
