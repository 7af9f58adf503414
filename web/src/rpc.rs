//! One JSON-RPC 2.0 connection over the browser's WebSocket (§6.1): requests matched to their
//! answers by id, `space.event` notifications routed to the subscription they belong to, and,
//! on a connection opened for a watch, binary stream frames and `stream.closed` (§10.1).
//!
//! Everything runs on the page's one thread: the socket's callbacks and the tasks that wait for
//! answers share the connection's state through `Rc<RefCell<…>>`, and no borrow is held across
//! an `await` or a call into JavaScript.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures_channel::{mpsc, oneshot};
use northstar_protocol::api::StreamNotice;
use northstar_protocol::method::{SPACE_EVENT, SPACE_SUBSCRIBE, SPACE_UNSUBSCRIBE, STREAM_CLOSED};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

use crate::Error;

/// How many notifications a subscription may have waiting for its task. The task checks each
/// one (signatures, chain) before the next; a subscription whose queue is full is dropped from
/// the connection and marked overflowed, and its task subscribes again from its cursor once it
/// has caught up with what it holds, so nothing is lost and memory stays bounded.
pub(crate) const SUBSCRIPTION_QUEUE: usize = 1024;

/// What reaches a subscription's task.
#[derive(Debug)]
pub(crate) enum Notice {
    /// A notification's `result`: one event, or an event item with beams inline.
    Item(Box<RawValue>),
    /// The node ended the subscription with this `error` text (§6.3.14).
    Ended(String),
    /// The connection closed, or the queue overflowed: subscribe again from the cursor.
    Lost,
}

/// How many frames a watch may have waiting for its task. Live streams lose frames rather
/// than slow anything down (§10): a frame that finds the queue full is dropped here, and the
/// watch reports the gap when the next one is delivered.
pub(crate) const WATCH_QUEUE: usize = 256;

/// What reaches a watch's task.
#[derive(Debug)]
pub(crate) enum Live {
    /// A binary message: a frame's bytes.
    Frame(Vec<u8>),
    /// The node ended the watch (`stream.closed`, §10.3).
    Closed(StreamNotice),
    /// The connection closed.
    Lost,
}

/// A subscription's end of the connection.
type Sink = mpsc::Sender<Notice>;

type Answer = Result<Box<RawValue>, Error>;

/// A request waiting for its answer.
enum Pending {
    Call(&'static str, oneshot::Sender<Answer>),
    /// A `space.subscribe`: when it is accepted, its notifications go to the sink from the next
    /// message on (the answer comes before the first notification on the wire).
    Subscribe(oneshot::Sender<Answer>, Sink),
}

#[derive(Default)]
struct State {
    next_id: u64,
    pending: HashMap<u64, Pending>,
    /// Subscriptions by the id the node gave (its JSON text).
    subscriptions: HashMap<String, Sink>,
    /// Why the connection closed, once it has.
    closed: Option<String>,
    /// Where frames go, on a connection opened for a watch.
    live: Option<mpsc::Sender<Live>>,
    on_close: Option<Box<dyn FnOnce()>>,
}

/// One open WebSocket speaking JSON-RPC.
pub(crate) struct Connection {
    url: String,
    socket: WebSocket,
    state: Rc<RefCell<State>>,
    // The socket calls these as long as it lives; they are kept with it.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        // Closing an open or connecting socket cannot fail without a code; a socket closed
        // already ignores it.
        let _ = self.socket.close();
    }
}

/// The answer or notification fields the client reads from a message.
#[derive(Deserialize)]
struct Incoming {
    id: Option<u64>,
    result: Option<Box<RawValue>>,
    error: Option<ErrorObject>,
    method: Option<String>,
    #[serde(rename = "params")]
    params_text: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    message: String,
    data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct NotificationParams {
    subscription: Box<RawValue>,
    result: Option<Box<RawValue>>,
    error: Option<String>,
}

impl Connection {
    /// Open a WebSocket to `url` and wait until it is open. Frames and `stream.closed` go to
    /// `live` if given, else binary messages are ignored.
    pub(crate) async fn open(
        url: &str,
        live: Option<mpsc::Sender<Live>>,
    ) -> Result<Rc<Connection>, Error> {
        let failed = |reason: String| Error::Connection {
            url: url.to_owned(),
            reason,
        };
        let socket = WebSocket::new(url).map_err(|e| failed(js_text(&e)))?;
        // Binary messages are stream frames (§10.1), which this client does not read.
        socket.set_binary_type(web_sys::BinaryType::Arraybuffer);
        let (opened_tx, opened_rx) = oneshot::channel::<Result<(), String>>();
        let opened_tx = Rc::new(RefCell::new(Some(opened_tx)));
        let on_open = {
            let tx = opened_tx.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                if let Some(tx) = tx.borrow_mut().take() {
                    let _ = tx.send(Ok(()));
                }
            })
        };
        let on_fail = {
            let tx = opened_tx.clone();
            Closure::<dyn FnMut(Event)>::new(move |event: Event| {
                let reason = match event.dyn_ref::<CloseEvent>() {
                    Some(close) if !close.reason().is_empty() => close.reason(),
                    Some(close) => format!("closed with code {}", close.code()),
                    None => "the WebSocket could not be opened".to_owned(),
                };
                if let Some(tx) = tx.borrow_mut().take() {
                    let _ = tx.send(Err(reason));
                }
            })
        };
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onerror(Some(on_fail.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_fail.as_ref().unchecked_ref()));
        let opened = opened_rx.await;
        socket.set_onopen(None);
        socket.set_onerror(None);
        socket.set_onclose(None);
        match opened {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(failed(reason)),
            Err(_) => return Err(failed("the WebSocket went away".to_owned())),
        }

        let state = Rc::new(RefCell::new(State {
            live,
            ..State::default()
        }));
        let on_message = {
            let state = Rc::downgrade(&state);
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Some(state) = state.upgrade() else { return };
                let data = event.data();
                if let Some(text) = data.as_string() {
                    receive(&state, &text);
                } else if let Some(buffer) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                    // A binary message is a stream frame (§10.1).
                    let bytes = js_sys::Uint8Array::new(buffer).to_vec();
                    if let Some(live) = state.borrow_mut().live.as_mut() {
                        // A full queue drops the frame: the watch counts the gap.
                        let _ = live.try_send(Live::Frame(bytes));
                    }
                }
            })
        };
        let on_close = {
            let state = Rc::downgrade(&state);
            Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
                let Some(state) = state.upgrade() else { return };
                let reason = if event.reason().is_empty() {
                    format!("the node closed the connection (code {})", event.code())
                } else {
                    format!("the node closed the connection: {}", event.reason())
                };
                shut(&state, reason);
            })
        };
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Rc::new(Connection {
            url: url.to_owned(),
            socket,
            state,
            _on_message: on_message,
            _on_close: on_close,
        }))
    }

    /// Whether the connection is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.state.borrow().closed.is_none()
    }

    /// Run `f` once, when the connection closes (at once if it has).
    pub(crate) fn on_close(&self, f: impl FnOnce() + 'static) {
        let closed = self.state.borrow().closed.is_some();
        if closed {
            f();
        } else {
            self.state.borrow_mut().on_close = Some(Box::new(f));
        }
    }

    /// Close the connection: waiting calls fail and subscriptions are told.
    pub(crate) fn close(&self) {
        shut(&self.state, "the client closed the connection".to_owned());
        let _ = self.socket.close();
    }

    /// Call `method` with `params` (a JSON array's text) and wait for its result.
    pub(crate) async fn call_raw(
        &self,
        method: &'static str,
        params: &str,
    ) -> Result<Box<RawValue>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(method, params, Pending::Call(method, tx))?;
        self.wait(method, rx).await
    }

    /// Call `method` and read its result as a `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: &str,
    ) -> Result<T, Error> {
        let raw = self.call_raw(method, params).await?;
        serde_json::from_str(raw.get()).map_err(|source| Error::BadAnswer { method, source })
    }

    /// `space.subscribe` with `params`; once accepted, its notifications go to `sink`. Returns
    /// the subscription's id (its JSON text).
    pub(crate) async fn subscribe(
        &self,
        params: &str,
        sink: mpsc::Sender<Notice>,
    ) -> Result<String, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(SPACE_SUBSCRIBE, params, Pending::Subscribe(tx, sink))?;
        let id = self.wait(SPACE_SUBSCRIBE, rx).await?;
        Ok(id.get().to_owned())
    }

    /// End subscription `id`, without waiting for the node's answer.
    pub(crate) fn unsubscribe(&self, id: &str) {
        self.state.borrow_mut().subscriptions.remove(id);
        let (tx, _) = oneshot::channel();
        // The answer (true or false) changes nothing, and a closed connection has ended the
        // subscription already.
        let _ = self.send(
            SPACE_UNSUBSCRIBE,
            &format!("[{id}]"),
            Pending::Call(SPACE_UNSUBSCRIBE, tx),
        );
    }

    fn send(&self, method: &'static str, params: &str, pending: Pending) -> Result<(), Error> {
        let id = {
            let mut state = self.state.borrow_mut();
            if let Some(reason) = &state.closed {
                return Err(self.lost(reason));
            }
            state.next_id += 1;
            let id = state.next_id;
            state.pending.insert(id, pending);
            id
        };
        // `method` is a constant wire name and `params` JSON the SDK wrote; only the id varies.
        let text =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
        if let Err(e) = self.socket.send_with_str(&text) {
            self.state.borrow_mut().pending.remove(&id);
            return Err(Error::Connection {
                url: self.url.clone(),
                reason: js_text(&e),
            });
        }
        Ok(())
    }

    async fn wait(
        &self,
        method: &'static str,
        rx: oneshot::Receiver<Answer>,
    ) -> Result<Box<RawValue>, Error> {
        match rx.await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Connection {
                url: self.url.clone(),
                reason: format!("{method}: the connection closed before the answer came"),
            }),
        }
    }

    fn lost(&self, reason: &str) -> Error {
        Error::Connection {
            url: self.url.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// One message from the node: an answer to a request, or a subscription's notification.
fn receive(state: &RefCell<State>, text: &str) {
    let Ok(message) = serde_json::from_str::<Incoming>(text) else {
        // Not a JSON-RPC message this client knows; the node sends none such.
        return;
    };
    if let Some(id) = message.id {
        let Some(pending) = state.borrow_mut().pending.remove(&id) else {
            return;
        };
        let answer = match (message.result, message.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => Err(ErrorObject {
                code: -32603,
                message: "an answer with neither result nor error".to_owned(),
                data: None,
            }),
        };
        match pending {
            Pending::Call(method, tx) => {
                let _ = tx.send(answer.map_err(|e| e.into_error(method)));
            }
            Pending::Subscribe(tx, sink) => {
                if let Ok(id) = &answer {
                    state
                        .borrow_mut()
                        .subscriptions
                        .insert(id.get().to_owned(), sink);
                }
                let _ = tx.send(answer.map_err(|e| e.into_error(SPACE_SUBSCRIBE)));
            }
        }
        return;
    }
    if message.method.as_deref() == Some(STREAM_CLOSED) {
        let notice = message
            .params_text
            .and_then(|raw| serde_json::from_str::<StreamNotice>(raw.get()).ok());
        if let (Some(notice), Some(live)) = (notice, state.borrow_mut().live.as_mut())
            && live.try_send(Live::Closed(notice)).is_err()
        {
            live.close_channel();
        }
        return;
    }
    if message.method.as_deref() != Some(SPACE_EVENT) {
        return;
    }
    let Some(params) = message
        .params_text
        .and_then(|raw| serde_json::from_str::<NotificationParams>(raw.get()).ok())
    else {
        return;
    };
    let key = params.subscription.get().to_owned();
    let notice = match (params.result, params.error) {
        (Some(result), _) => Notice::Item(result),
        (None, Some(error)) => Notice::Ended(error),
        (None, None) => return,
    };
    let ended = matches!(notice, Notice::Ended(_));
    let mut state = state.borrow_mut();
    let Some(sink) = state.subscriptions.get_mut(&key) else {
        return;
    };
    if sink.try_send(notice).is_err() || ended {
        // Full (or its task is gone): the task subscribes again from its cursor once it has
        // worked through what it holds. An ended subscription gets nothing more.
        if let Some(mut sink) = state.subscriptions.remove(&key)
            && !ended
        {
            sink.close_channel();
        }
    }
}

/// The connection is closed: every waiting call fails, every subscription is told.
fn shut(state: &RefCell<State>, reason: String) {
    let (pending, subscriptions, live, on_close) = {
        let mut state = state.borrow_mut();
        if state.closed.is_some() {
            return;
        }
        state.closed = Some(reason);
        (
            std::mem::take(&mut state.pending),
            std::mem::take(&mut state.subscriptions),
            state.live.take(),
            state.on_close.take(),
        )
    };
    // Dropping the senders fails each waiting call with "closed before the answer came".
    drop(pending);
    for (_, mut sink) in subscriptions {
        if sink.try_send(Notice::Lost).is_err() {
            sink.close_channel();
        }
    }
    if let Some(mut live) = live
        && live.try_send(Live::Lost).is_err()
    {
        live.close_channel();
    }
    if let Some(f) = on_close {
        f();
    }
}

impl ErrorObject {
    fn into_error(self, method: &'static str) -> Error {
        Error::Rpc {
            method,
            code: self.code,
            name: match self.data {
                Some(serde_json::Value::String(name)) if self.code >= 1000 => Some(name),
                _ => None,
            },
            message: self.message,
        }
    }
}

/// A JavaScript exception's text.
pub(crate) fn js_text(value: &wasm_bindgen::JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            value
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{value:?}"))
}
