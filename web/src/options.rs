//! Reading the options object an app passes to `subscribe`, `watch` and `editBeam`, and calling
//! its handlers: a member that is `undefined` or `null` is absent, and a member of the wrong
//! type is an `argument` error naming it.

use wasm_bindgen::{JsCast, JsValue};

use crate::Error;

/// An app's options object.
pub(crate) struct AppOptions<'a>(pub(crate) &'a JsValue);

impl AppOptions<'_> {
    fn get(&self, key: &str) -> Option<JsValue> {
        js_sys::Reflect::get(self.0, &JsValue::from_str(key))
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    }

    /// A whole number in `0..=2^53-1`, if present.
    pub(crate) fn whole(&self, key: &'static str) -> Result<Option<u64>, Error> {
        self.get(key)
            .map(|value| {
                let number = value.as_f64().ok_or_else(|| not(key, "a number"))?;
                crate::whole(number, key)
            })
            .transpose()
    }

    /// A boolean, if present.
    pub(crate) fn boolean(&self, key: &'static str) -> Result<Option<bool>, Error> {
        self.get(key)
            .map(|value| value.as_bool().ok_or_else(|| not(key, "a boolean")))
            .transpose()
    }

    /// A string, if present.
    pub(crate) fn string(&self, key: &'static str) -> Result<Option<String>, Error> {
        self.get(key)
            .map(|value| value.as_string().ok_or_else(|| not(key, "a string")))
            .transpose()
    }

    /// A handler the app must give; `why` says what goes there.
    pub(crate) fn handler(&self, key: &'static str, why: &str) -> Result<Handler, Error> {
        self.optional_handler(key)?
            .ok_or_else(|| Error::BadArgument {
                what: key,
                reason: format!("missing: {why}"),
            })
    }

    /// A handler, if present.
    pub(crate) fn optional_handler(&self, key: &'static str) -> Result<Option<Handler>, Error> {
        self.get(key)
            .map(|value| {
                value
                    .dyn_into::<js_sys::Function>()
                    .map(Handler)
                    .map_err(|_| not(key, "a function"))
            })
            .transpose()
    }
}

fn not(key: &'static str, what: &str) -> Error {
    Error::BadArgument {
        what: key,
        reason: format!("not {what}"),
    }
}

/// An app's function that the SDK calls.
pub(crate) struct Handler(js_sys::Function);

impl Handler {
    /// Call it with `value`. An app's handler that throws changes nothing here: the next event
    /// or frame still comes.
    pub(crate) fn call(&self, value: &JsValue) {
        let _ = self.0.call1(&JsValue::NULL, value);
    }

    /// Call `handler`, if the app gave one, with `error` as a JavaScript `Error`.
    pub(crate) fn error(handler: &Option<Handler>, error: Error) {
        if let Some(handler) = handler {
            handler.call(&JsValue::from(error));
        }
    }
}
