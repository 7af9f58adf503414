//! Identities kept in the browser's IndexedDB: the database `northstar`, object store
//! `identities`, one record per name holding the 32-byte secret as a `Uint8Array`.
//!
//! IndexedDB belongs to the page's origin and stays on the device; nothing here sends the
//! secret anywhere. web-sys's IndexedDB interfaces are used directly: a request's `onsuccess`
//! and `onerror` are a promise's own resolve and reject, so no callback is written by hand.

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbRequest, IdbTransactionMode};

use crate::Error;
use crate::rpc::js_text;

/// The database's name.
const DATABASE: &str = "northstar";
/// The database's version: 1 creates the object store.
const VERSION: u32 = 1;
/// The object store of identities.
const STORE: &str = "identities";

fn storage(e: JsValue) -> Error {
    Error::Storage(js_text(&e))
}

/// The IndexedDB of this page or worker.
fn factory() -> Result<IdbFactory, Error> {
    let global = js_sys::global();
    let factory = if let Some(window) = global.dyn_ref::<web_sys::Window>() {
        window.indexed_db()
    } else if let Some(worker) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        worker.indexed_db()
    } else {
        Ok(None)
    };
    factory
        .map_err(storage)?
        .ok_or_else(|| Error::Storage("this context has no IndexedDB".to_owned()))
}

/// Wait for `request` to succeed; its result.
async fn done(request: &IdbRequest) -> Result<JsValue, Error> {
    let promise = Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    request.set_onsuccess(None);
    request.set_onerror(None);
    match outcome {
        Ok(_) => request.result().map_err(storage),
        Err(_) => {
            Err(Error::Storage(request.error().ok().flatten().map_or_else(
                || "the request failed".to_owned(),
                |e| e.message(),
            )))
        }
    }
}

/// Open the database, creating its object store the first time.
async fn open() -> Result<IdbDatabase, Error> {
    let request = factory()?
        .open_with_u32(DATABASE, VERSION)
        .map_err(storage)?;
    let upgrading = request.clone();
    let upgrade = wasm_bindgen::closure::Closure::once_into_js(move || {
        // Only version 1 exists: the store is created once, when the database is new.
        if let Ok(db) = upgrading.result().and_then(|r| r.dyn_into::<IdbDatabase>()) {
            let _ = db.create_object_store(STORE);
        }
    });
    request.set_onupgradeneeded(Some(upgrade.unchecked_ref()));
    let db = done(&request).await;
    request.set_onupgradeneeded(None);
    db?.dyn_into::<IdbDatabase>()
        .map_err(|_| Error::Storage("open gave no database".to_owned()))
}

/// The secret stored under `name`, if any.
pub(crate) async fn load(name: &str) -> Result<Option<Vec<u8>>, Error> {
    let db = open().await?;
    let store = db
        .transaction_with_str(STORE)
        .and_then(|tx| tx.object_store(STORE))
        .map_err(storage)?;
    let request = store.get(&JsValue::from_str(name)).map_err(storage)?;
    let value = done(&request).await;
    db.close();
    let value = value?;
    if value.is_undefined() {
        return Ok(None);
    }
    let bytes = value
        .dyn_into::<Uint8Array>()
        .map_err(|_| Error::Storage(format!("the identity {name:?} is not a Uint8Array")))?;
    Ok(Some(bytes.to_vec()))
}

/// Store `secret` under `name` (replacing what was there), durably: the transaction has
/// completed when this returns.
pub(crate) async fn save(name: &str, secret: &[u8]) -> Result<(), Error> {
    write(name, Some(secret)).await
}

/// Remove what is stored under `name`.
pub(crate) async fn forget(name: &str) -> Result<(), Error> {
    write(name, None).await
}

async fn write(name: &str, secret: Option<&[u8]>) -> Result<(), Error> {
    let db = open().await?;
    let outcome = async {
        let tx = db
            .transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite)
            .map_err(storage)?;
        let store = tx.object_store(STORE).map_err(storage)?;
        let key = JsValue::from_str(name);
        let request = match secret {
            Some(secret) => store.put_with_key(&Uint8Array::from(secret), &key),
            None => store.delete(&key),
        }
        .map_err(storage)?;
        let committed = Promise::new(&mut |resolve, reject| {
            tx.set_oncomplete(Some(&resolve));
            tx.set_onerror(Some(&reject));
            tx.set_onabort(Some(&reject));
        });
        done(&request).await?;
        JsFuture::from(committed)
            .await
            .map_err(|_| Error::Storage(format!("writing the identity {name:?} was aborted")))?;
        Ok(())
    }
    .await;
    db.close();
    outcome
}
