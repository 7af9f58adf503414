// Northstar's web chat: a small app on the browser SDK (web/pkg, built from the crate in web/).
//
// Everything that touches keys or checks signatures happens inside the SDK: the identity is kept
// in IndexedDB by `Identity.loadOrGenerate`, `Client.connect` answers the node's challenge, and
// a subscription hands out only events that verified. This file only draws.
//
// What the app keeps in localStorage (its own view, never trusted by the SDK): the space last
// open, and for each space the entries drawn so far with the cursor after them (`head`, and the
// id of that event, `headId`), so a reload draws them again and resumes the subscription from
// there, with the chain checked across the reload.

import init, { Client, Identity } from "./pkg/northstar_web.js";

const OPEN_KEY = "northstar.open";
const LOG_KEY = (space) => `northstar.log.${space}`;
// How many entries of a space the app keeps for a reload; older ones are dropped from the view.
const KEPT = 500;
// Image attachments up to this size are downloaded (checked by the SDK) and shown inline; other
// files are fetched when their link is clicked.
const INLINE_IMAGE_BYTES = 8 * 1024 * 1024;
const INITIAL_RETRY_MS = 500;
const MAX_RETRY_MS = 30000;

const $ = (id) => document.getElementById(id);

let client = null;
let identity = null;
let subscription = null;
let current = null; // { id, uri, name, log: { head, headId, entries } }
const spaces = new Map();

function setStatus(state) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = state;
}

function showError(kind, message) {
  const li = document.createElement("li");
  li.className = "error";
  li.dataset.kind = kind || "rpc";
  li.textContent = message;
  $("errors").append(li);
}

function reportError(error) {
  showError(error && error.kind, (error && error.message) || String(error));
}

function shortDid(did) {
  return did.length > 24 ? `${did.slice(0, 14)}…${did.slice(-6)}` : did;
}

// The node that served this page, as a WebSocket URL.
function nodeUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
}

async function connect() {
  let delay = INITIAL_RETRY_MS;
  for (;;) {
    try {
      return await Client.connect(nodeUrl(), identity);
    } catch (error) {
      setStatus("offline");
      if (error.kind !== "connection") {
        reportError(error);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, MAX_RETRY_MS);
    }
  }
}

async function refreshSpaces() {
  const list = await client.listSpaces();
  spaces.clear();
  const ul = $("channels");
  ul.replaceChildren();
  for (const space of list) {
    spaces.set(space.id, space);
    const li = document.createElement("li");
    li.dataset.space = space.id;
    li.dataset.uri = space.uri;
    li.textContent = space.name || space.id;
    li.title = space.uri;
    if (current && current.id === space.id) li.classList.add("open");
    li.addEventListener("click", () => openSpace(space.id).catch(reportError));
    ul.append(li);
  }
}

function loadLog(space) {
  try {
    const saved = JSON.parse(localStorage.getItem(LOG_KEY(space)));
    if (saved && Number.isSafeInteger(saved.head) && Array.isArray(saved.entries)) return saved;
  } catch {
    // A log the app cannot read is drawn again from the node.
  }
  return { head: 0, headId: null, entries: [] };
}

function saveLog() {
  if (!current) return;
  const log = current.log;
  if (log.entries.length > KEPT) log.entries.splice(0, log.entries.length - KEPT);
  try {
    localStorage.setItem(LOG_KEY(current.id), JSON.stringify(log));
  } catch {
    // Storage full: the next reload reads the space from the node again.
  }
}

// The entry an event draws, or null for one that draws nothing.
function entryOf(event) {
  switch (event.kind) {
    case "beam_ref":
      if (event.beam) {
        return {
          seq: event.seq, kind: "message", author: event.author, body: event.beam.body,
          beam: event.event.payload.body.beam, uri: event.beamUri, attachments: event.beam.attachments || [],
        };
      }
      return { seq: event.seq, kind: "notice", author: event.author, body: "a post that is no longer available" };
    case "membership": {
      const action = event.event.payload.body.action;
      return { seq: event.seq, kind: "notice", author: event.author, body: `${shortDid(event.author)} ${action === "join" ? "joined" : action}` };
    }
    case "create":
      return { seq: event.seq, kind: "notice", author: event.author, body: `${shortDid(event.author)} created this channel` };
    case "tombstone":
      return { seq: event.seq, kind: "tombstone", author: event.author, beam: event.event.payload.body.beam };
    case "edit": {
      // A new version of a post, with the version inline (checked by the SDK against the edit).
      const edit = event.event.payload.body;
      if (!event.beam) return null;
      return { seq: event.seq, kind: "edit", author: event.author, beam: edit.supersedes, version: edit.version, body: event.beam.body };
    }
    default:
      return null;
  }
}

function draw(entry) {
  const ul = $("messages");
  if (entry.kind === "tombstone") {
    for (const li of ul.querySelectorAll(`li.message[data-beam="${entry.beam}"]`)) {
      li.className = "notice";
      li.querySelector(".body").textContent = "a post that was deleted";
    }
    return;
  }
  if (entry.kind === "edit") {
    // The highest version shows; a version no higher than the one shown changes nothing.
    for (const li of ul.querySelectorAll(`li.message[data-beam="${entry.beam}"]`)) {
      if (Number(li.dataset.version || 0) >= entry.version) continue;
      li.dataset.version = String(entry.version);
      li.querySelector(".body").textContent = entry.body;
      li.classList.add("edited");
    }
    return;
  }
  const li = document.createElement("li");
  li.className = entry.kind;
  li.dataset.seq = String(entry.seq);
  li.dataset.author = entry.author;
  if (entry.beam) li.dataset.beam = entry.beam;
  if (identity && entry.author === identity.did) li.classList.add("mine");
  if (entry.kind === "message") {
    const author = document.createElement("span");
    author.className = "author";
    author.title = entry.author;
    author.textContent = shortDid(entry.author);
    li.append(author);
  }
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = entry.body;
  li.append(body);
  if (entry.attachments && entry.attachments.length) li.append(drawAttachments(entry));
  ul.append(li);
  li.scrollIntoView({ block: "end" });
}

// A post's files: an image small enough is shown once the SDK has checked its bytes; any file
// is a link that downloads it (checked too) and saves it under its name.
function drawAttachments(entry) {
  const list = document.createElement("ul");
  list.className = "attachments";
  for (const file of entry.attachments) {
    const item = document.createElement("li");
    item.dataset.blob = file.blob;
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = `${file.name} (${formatSize(file.size)})`;
    link.addEventListener("click", async (e) => {
      e.preventDefault();
      try {
        const url = URL.createObjectURL(await fetchFile(entry, file));
        const save = document.createElement("a");
        save.href = url;
        save.download = file.name;
        save.click();
        setTimeout(() => URL.revokeObjectURL(url), 60000);
      } catch (error) {
        reportError(error);
      }
    });
    item.append(link);
    const image = file.media_type.startsWith("image/") && file.media_type !== "image/svg+xml";
    if (image && file.size <= INLINE_IMAGE_BYTES) {
      fetchFile(entry, file)
        .then((blob) => {
          const img = document.createElement("img");
          img.alt = file.name;
          img.src = URL.createObjectURL(blob);
          item.prepend(img);
        })
        .catch(reportError);
    }
    list.append(item);
  }
  return list;
}

// A file of a post, its every chunk checked against the id the author signed.
async function fetchFile(entry, file) {
  const bytes = await client.downloadBlob(file.blob, { beam: entry.uri, size: file.size });
  return new Blob([bytes], { type: file.media_type });
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function onEvent(space, event) {
  if (!current || current.id !== space) return;
  const log = current.log;
  if (event.seq <= log.head) return;
  const entry = entryOf(event);
  if (entry) {
    log.entries.push(entry);
    draw(entry);
  }
  log.head = event.seq;
  log.headId = event.id;
  saveLog();
}

async function openSpace(id) {
  if (subscription) {
    subscription.close();
    subscription = null;
  }
  const info = spaces.get(id) || (await client.getSpace(id));
  current = { id, uri: info.uri, name: info.name, log: loadLog(id) };
  localStorage.setItem(OPEN_KEY, id);
  const section = $("current");
  section.dataset.space = id;
  section.dataset.uri = info.uri;
  $("current-name").textContent = info.name || id;
  $("current-uri").textContent = info.uri;
  for (const li of $("channels").children) li.classList.toggle("open", li.dataset.space === id);
  $("messages").replaceChildren();
  for (const entry of current.log.entries) draw(entry);
  $("compose").disabled = false;
  $("attach").disabled = false;
  $("send").disabled = false;
  subscription = await client.subscribe(id, {
    since: current.log.head,
    headId: current.log.headId || undefined,
    onEvent: (event) => onEvent(id, event),
    onError: (error) => {
      reportError(error);
      if (current && current.id === id) subscription = null;
    },
  });
}

// A unique id for a new channel: its name in the characters ids allow, and a random suffix so
// two channels of one name do not collide.
function uniqueIdFor(name) {
  const slug = name.toLowerCase().replace(/[^a-z0-9_.-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40) || "channel";
  const suffix = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${slug}-${suffix}`;
}

function wireForms() {
  $("create-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("create-name");
    const name = input.value.trim();
    if (!name) return;
    try {
      const ack = await client.createSpace("channel", uniqueIdFor(name), name);
      input.value = "";
      await refreshSpaces();
      await openSpace(ack.space);
    } catch (error) {
      reportError(error);
    }
  });
  $("join-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("join-uri");
    const uri = input.value.trim();
    if (!uri) return;
    try {
      const ack = await client.join(uri);
      input.value = "";
      await refreshSpaces();
      await openSpace(ack.space);
    } catch (error) {
      if (error.errorName === "already_member") {
        input.value = "";
        await refreshSpaces();
        const id = uri.startsWith("northstar://") ? uri.replace(/^northstar:\/\/[^/]+\//, "") : uri;
        if (spaces.has(id)) await openSpace(id);
        return;
      }
      reportError(error);
    }
  });
  $("post-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const compose = $("compose");
    const attach = $("attach");
    const body = compose.value;
    const files = Array.from(attach.files);
    if (!current || (!body.trim() && !files.length)) return;
    try {
      if (files.length) {
        const attachments = [];
        for (const file of files) {
          const mediaType = file.type || "application/octet-stream";
          const uploaded = await client.uploadBlob(file, mediaType);
          attachments.push({ blob: uploaded.blob, size: uploaded.size, media_type: mediaType, name: file.name });
        }
        await client.postAttached(current.id, "", body, attachments);
      } else {
        await client.post(current.id, "", body);
      }
      compose.value = "";
      attach.value = "";
    } catch (error) {
      reportError(error);
    }
  });
  $("compose").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("post-form").requestSubmit();
    }
  });
}

async function main() {
  setStatus("connecting");
  wireForms();
  await init();
  identity = await Identity.loadOrGenerate();
  $("me").textContent = identity.did;
  client = await connect();
  client.onStatus((state) => setStatus(state === "connected" ? "connected" : "offline"));
  setStatus("connected");
  await refreshSpaces();
  const remembered = localStorage.getItem(OPEN_KEY);
  // A space that fails to open (its node sent something that fails the checks, say) is
  // reported; the connection is still up.
  if (remembered && spaces.has(remembered)) await openSpace(remembered).catch(reportError);
}

main().catch((error) => {
  setStatus("offline");
  reportError(error);
});
