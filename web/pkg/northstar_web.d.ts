/* tslint:disable */
/* eslint-disable */

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



/** `POST /blob`'s answer (§13.3.2): the blob's id and size. */
export interface Uploaded { blob: string; size: number; }
/** `Client.downloadBlob`'s options: the beam that attaches the blob (its path or URI; a URI
 * names its home node, which this node fetches the blob from), and the size the reader expects
 * (an attachment's `size`). Without `beam`, only the blob's owner may read it. */
export interface BlobReadOptions { beam?: string; home?: string; size?: number; }



/** `node.info` (§6.3.2). */
export interface NodeInfo { did: string; version: string; protocol: number; public_url: string; authority: string; fanout: number; stream_capacity: number; limits: Record<string, number>; }
/** A space (§6.3.6). */
export interface SpaceInfo { id: string; uri: string; type: "channel" | "dm" | "stream"; name: string; owner: string; sequencer: string; head_seq: number; }
/** The acknowledgement of an appended event (§6.3.5). */
export interface Ack { space: string; event_id: string; seq: number; }
/** `space.post`'s result (§6.3.12). */
export interface BeamPosted { event_id: string; seq: number; beam_uri: string; }
/** `beam.delete`'s result (§6.3.18). */
export interface BeamDeleted { tombstones: Ack[]; }
/** `beam.edit`'s result (§6.3.25): the new version's URI and the edit events appended. */
export interface BeamEdited { beam_uri: string; edits: Ack[]; }
/** A signed edit (§4.10): `beam` is version `version` of the original `supersedes`. */
export interface Edit { beam: string; supersedes: string; author: string; version: number; edited_at: number; drop_history: boolean; sig: string; }
/** One version of a beam: the original has no `edit`. */
export interface BeamVersion { beam: Beam; edit?: Edit; }
/** `beam.history`'s result (§6.3.26), checked: oldest first, the last is current. */
export interface BeamHistory { path: string; versions: BeamVersion[]; }
/** `Client.editBeam`'s options. */
export interface EditOptions {
    /** Delete every earlier version, like a deleted beam (§4.10). */
    dropHistory?: boolean;
    /** The version number; absent: one more than the current version's. Two edits with one
     * number from two devices resolve alike everywhere: the greater edit id wins. */
    version?: number;
}
/** A member of a space (§6.3.11). */
export interface MemberInfo { did: string; state: string; home?: string; }
/** A file a beam carries (§13.5); its bytes are fetched over `/blob` (§13.3). */
export interface Attachment { blob: string; size: number; media_type: string; name: string; }
/** A beam, as its author signed it (§4.5); `attachments` only when it carries files (§13.5). */
export interface Beam { author: string; title: string; body: string; created_at: number; attachments?: Attachment[]; ref?: string; sig: string; }
/** An event as the SDK hands it out: verified under the space's sequencer, linked to the one
 * before it, and, for a `beam_ref`, with its beam checked against the ref. */
export interface VerifiedEvent {
    space: string; seq: number; id: string; timestamp: number;
    kind: "create" | "membership" | "beam_ref" | "tombstone" | "edit";
    /** Who signed the payload: the owner, the member, the author. */
    author: string;
    /** The event exactly as the sequencer signed it (§4.8). */
    event: any;
    /** For a `beam_ref`: the beam, unless it was deleted or its home node is unreachable. */
    beam?: Beam;
    /** For a `beam_ref`: the beam's URI, `northstar://{home}/beam/{authorHash}/{beamId}`. */
    beamUri?: string;
}
/** `Client.subscribe`'s options. */
export interface SubscribeOptions {
    /** The last seq the app has (0 or absent: from the start). */
    since?: number;
    /** The content id of event `since`, as `Subscription.headId` gave it: the chain is then
     * checked across the resume too. */
    headId?: string;
    /** Each verified event, in order, once. */
    onEvent: (event: VerifiedEvent) => void;
    /** The error that ended the subscription: `kind` `"verification"` when the node sent
     * something that fails the checks (nothing of it is handed out), else `"rpc"`. */
    onError?: (error: Error & { kind: string }) => void;
}



/**
 * A connection to a node, as one identity or anonymous.
 */
export class Client {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * `beam.history`: the versions of a beam (by URI or path), oldest first, checked: each
     * edit signed by the beam's author and superseding it, each version the beam its edit
     * names, in rising order. The last is the current one; versions an edit dropped are not
     * listed.
     */
    beamHistory(beam: string): Promise<BeamHistory>;
    /**
     * Close the connection for good: subscriptions end, calls fail.
     */
    close(): void;
    /**
     * Connect to the node at `url` without an identity: public reads only.
     */
    static connectAnonymous(url: string): Promise<Client>;
    /**
     * Connect to the node at `url` (`ws://…` or `wss://…`) as `identity`: `node.info`, then
     * the node's challenge, checked and answered. The identity's secret stays here.
     */
    static connect(url: string, identity: Identity): Promise<Client>;
    /**
     * `space.create`: found a space owned by this identity and sequenced by this node. `type`
     * is `"channel"`, `"dm"` or `"stream"`; `uniqueId` the last part of its id (letters,
     * digits, `-`, `_`, `.`); `name` what people see.
     */
    createSpace(type: string, uniqueId: string, name: string): Promise<Ack>;
    /**
     * The current version of a beam (by URI or path): the last of `beamHistory`, the beam
     * itself if it was never edited. What a reader shows by default.
     */
    currentBeam(beam: string): Promise<Beam>;
    /**
     * `beam.delete`: delete one of this identity's beams (by URI or path) with a signed
     * tombstone, which the node appends to every space that referred to it.
     */
    deleteBeam(beam: string): Promise<BeamDeleted>;
    /**
     * `GET /blob/{id}`: the blob's bytes, whole, after every chunk was checked against `id`
     * (and the size against `options.size`, when given). A stream that fails the check is a
     * `verification` error naming the offset; nothing of it is returned. The client's ticket
     * goes with the request, so a dm's member reads its blobs.
     */
    downloadBlob(id: string, options: BlobReadOptions | undefined): Promise<Uint8Array>;
    /**
     * `beam.edit`: a new version of one of this identity's beams (by URI or path), signed
     * here; the node appends an edit event to every space that refers to the beam.
     */
    editBeam(beam: string, title: string, body: string, options: EditOptions | undefined): Promise<BeamEdited>;
    /**
     * `space.events`: at most `limit` events with `seq > since`, oldest first, each verified
     * under the space's sequencer and linked to the one before, with its beam when it is a
     * `beam_ref` (checked against the ref).
     */
    events(space: string, since: number, limit: number): Promise<VerifiedEvent[]>;
    /**
     * `beam.get`: a beam, by URI (`northstar://{home}/beam/…`, fetched from its home node by
     * this one if need be) or path (`beam/…`), checked against it (its author's signature,
     * its content id, its author).
     */
    getBeam(beam: string): Promise<Beam>;
    /**
     * `space.get`: one space, by id or URI.
     */
    getSpace(space: string): Promise<SpaceInfo>;
    /**
     * `space.join`: join a space through this node, by its id (a space this node holds) or
     * its URI (`northstar://{sequencer}/…`: this node then joins through that sequencer and
     * keeps a replica).
     */
    join(space: string): Promise<Ack>;
    /**
     * `space.leave`: leave a space.
     */
    leave(space: string): Promise<Ack>;
    /**
     * `space.list`: the spaces this identity owns, belongs to or is invited into, on this
     * node.
     */
    listSpaces(): Promise<SpaceInfo[]>;
    /**
     * `space.members`: who belongs to a space, is invited or is banned.
     */
    members(space: string): Promise<MemberInfo[]>;
    /**
     * Call `listener` with `"connected"`, `"offline"` or `"closed"` when the connection's
     * state changes.
     */
    onStatus(listener: Function): void;
    /**
     * `space.post` of a beam that carries `attachments` (each `{blob, size, media_type, name}`,
     * blobs uploaded to this node by this identity): the attachments are signed with the beam.
     */
    postAttached(space: string, title: string, body: string, attachments: Attachment[]): Promise<BeamPosted>;
    /**
     * `space.post`: sign a beam (`title`, `body`) and the ref placing it in `space`, store the
     * beam on this node (the author's home) and append the ref to the space.
     */
    post(space: string, title: string, body: string): Promise<BeamPosted>;
    /**
     * The space URI of `space` on this node (its sequencer when the space was created here).
     */
    spaceUri(space: string): string;
    /**
     * `space.subscribe`: every event after `options.since`, verified, in order and once: the
     * backlog first, then live. The subscription goes on by itself after the connection
     * drops or the node cuts it off as slow; it ends (with `onError`) when the node sends
     * something that fails verification, or refuses it (e.g. `not_member`).
     */
    subscribe(space: string, options: SubscribeOptions): Promise<Subscription>;
    /**
     * `blob.ticket`, then `POST /blob` on the node's origin: store `data` (a `Blob`, a `File`,
     * or bytes) on this identity's node, as `mediaType` (default
     * `application/octet-stream`). Attach the answer's id and size to a post with
     * `postAttached`. A refusal (`blob_too_large`, `quota_exceeded`, …) is an `rpc` error whose
     * `code` is the HTTP status.
     */
    uploadBlob(data: Blob | Uint8Array | ArrayBuffer, mediaType?: string | null): Promise<Uploaded>;
    /**
     * `stream.watch`: a live stream's frames, each checked under the stream's owner, on a
     * connection of the watch's own; resumed after a drop or a `slow_watcher` cut-off.
     */
    watch(space: string, options: WatchOptions): Promise<Watch>;
    /**
     * Whether the connection is up now.
     */
    readonly connected: boolean;
    /**
     * This client's DID, if it has an identity.
     */
    readonly did: string | undefined;
    /**
     * The node's `node.info`.
     */
    readonly node: NodeInfo;
    /**
     * The URL dialled.
     */
    readonly url: string;
}

/**
 * A user's identity: an Ed25519 key pair and its `did:key`.
 */
export class Identity {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * The answer (`auth.respond`'s `response`, JSON) to a node's challenge (`auth.challenge`'s
     * result, JSON), after the checks the Rust SDK makes (§5.2): the challenge's shape, the
     * node's signature, its origin against `expectedOrigin` (the origin dialled, e.g.
     * `wss://node.example`), its node against `expectedNode` (the DID `node.info` gave), and
     * its expiry against `now` (ms since the Unix epoch: `Date.now()`).
     */
    answerChallenge(challenge: string, expectedOrigin: string, expectedNode: string, now: number): string;
    /**
     * Remove the identity stored under `name` (default `"default"`) from IndexedDB.
     */
    static forget(name?: string | null): Promise<void>;
    /**
     * The identity whose secret is `secret` in hex (64 digits).
     */
    static fromSecretHex(secret: string): Identity;
    /**
     * The identity whose secret (32-byte seed) is `secret`, as [`Identity::secret`] gave it.
     */
    static fromSecret(secret: Uint8Array | number[]): Identity;
    /**
     * A new identity from the platform's random source (`crypto.getRandomValues`).
     */
    static generate(): Identity;
    /**
     * A join request (`space.join`'s `request`, JSON) naming this user's home node: its DID
     * and its authority (`host[:port]`).
     */
    join(space: string, homeNode: string, homeAuthority: string, createdAt: number): string;
    /**
     * The identity stored under `name` (default `"default"`), or a new one, generated and
     * stored there: what an app calls when it starts.
     */
    static loadOrGenerate(name?: string | null): Promise<Identity>;
    /**
     * The identity stored under `name` (default `"default"`) in this browser's IndexedDB, or
     * `undefined` when there is none.
     */
    static load(name?: string | null): Promise<Identity | undefined>;
    /**
     * Any other membership request (JSON, for `space.leave`, `space.invite`, `space.kick`,
     * `space.ban`): `action` is `"leave"`, `"invite"`, `"kick"` or `"ban"`; `subject` is the
     * DID it concerns (this identity's own for `"leave"`).
     */
    membership(space: string, action: string, subject: string, createdAt: number): string;
    /**
     * A post: `space.post`'s parameters as JSON, `{"beam": …, "beam_ref": …}`, signed once.
     * `home` is the authority (`host[:port]`) of this user's home node, where the beam lives;
     * `createdAt` is ms since the Unix epoch.
     */
    post(space: string, home: string, title: string, body: string, createdAt: number): string;
    /**
     * Keep this identity in this browser's IndexedDB under `name` (default `"default"`),
     * replacing what was stored there. The secret stays on the device.
     */
    save(name?: string | null): Promise<void>;
    /**
     * The secret in hex (64 digits); see [`Identity::secret`].
     */
    secretHex(): string;
    /**
     * The secret: the 32-byte seed of the key pair. Store it on this device only (IndexedDB);
     * it must never leave it. Anyone holding it is this identity.
     */
    secret(): Uint8Array;
    /**
     * A tombstone (`beam.delete`'s `tombstone`, JSON) deleting this user's beam whose content
     * id is `beam`; `deletedAt` is ms since the Unix epoch.
     */
    tombstone(beam: string, deletedAt: number): string;
    /**
     * The identity's `did:key`.
     */
    readonly did: string;
}

/**
 * One space's log as a reader receives it: each event pushed must verify under the space's
 * sequencer and be the next entry (seq + 1, `prev` = the id of the event before). A gap, a
 * fork, a broken link or a bad signature is an error naming the seq, and the checker stays
 * where it was.
 */
export class LogChecker {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * A log held up to event `head`, whose content id is `headId`. Without `headId` (a reader
     * resuming from a cursor) the next event's `prev` is taken on trust; its signatures are not.
     */
    static after(space: string, sequencer: string, head: number, headId?: string | null): LogChecker;
    /**
     * A log that starts at `genesis` (JSON), the space's first event; the sequencer is the
     * one it names.
     */
    static fromGenesis(genesis: string): LogChecker;
    /**
     * A log read from its start: its first event must be the genesis of `space`, naming
     * `sequencer`.
     */
    constructor(space: string, sequencer: string);
    /**
     * Verify `event` (JSON) and place it: `"next"` when it is the next entry (the checker
     * moves to it), `"seen"` when it is the head again or an earlier event. Throws on a gap,
     * a fork, a broken link, another space or a bad signature.
     */
    push(event: string): string;
    /**
     * The content id of the last event accepted, if known.
     */
    readonly headId: string | undefined;
    /**
     * The seq of the last event accepted (0 before the genesis).
     */
    readonly head: number;
    /**
     * The DID whose signature every event must carry.
     */
    readonly sequencer: string;
    /**
     * The space followed.
     */
    readonly space: string;
}

/**
 * A live subscription to one space's events.
 */
export class Subscription {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * End the subscription: no event is handed out after this.
     */
    close(): void;
    /**
     * The content id of the last event handed out, if one was: keep it with `head` and pass
     * both to `subscribe` to resume with the chain checked across.
     */
    readonly headId: string | undefined;
    /**
     * The seq of the last event handed out (or `since`): where to resume from.
     */
    readonly head: number;
    /**
     * The space.
     */
    readonly space: string;
}

/**
 * A live watch of one stream's frames.
 */
export class Watch {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Stop watching: no frame is handed out after this, and the watch's connection closes.
     */
    close(): void;
    /**
     * The number of the last frame delivered (or `since`), if any.
     */
    readonly last: number | undefined;
    /**
     * The stream watched.
     */
    readonly space: string;
}

/**
 * Verify a beam (JSON) under its author and check it is the beam `path`
 * (`{authorHash}/{contentId}`, as in `beam.get`) names. Returns the beam's content id.
 */
export function verifyBeam(beam: string, path: string): string;

/**
 * Verify an event (JSON) under `sequencer`, the DID its space's genesis names: its shape,
 * the sequencer's signature and its author's (§4.8). Returns the event's content id, which the
 * next event's `prev` must name.
 */
export function verifyEvent(event: string, sequencer: string): string;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_client_free: (a: number, b: number) => void;
    readonly __wbg_identity_free: (a: number, b: number) => void;
    readonly __wbg_logchecker_free: (a: number, b: number) => void;
    readonly __wbg_subscription_free: (a: number, b: number) => void;
    readonly __wbg_watch_free: (a: number, b: number) => void;
    readonly client_beamHistory: (a: number, b: number, c: number) => any;
    readonly client_close: (a: number) => void;
    readonly client_connect: (a: number, b: number, c: number) => any;
    readonly client_connectAnonymous: (a: number, b: number) => any;
    readonly client_connected: (a: number) => number;
    readonly client_createSpace: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => any;
    readonly client_currentBeam: (a: number, b: number, c: number) => any;
    readonly client_deleteBeam: (a: number, b: number, c: number) => any;
    readonly client_did: (a: number) => [number, number];
    readonly client_downloadBlob: (a: number, b: number, c: number, d: any) => any;
    readonly client_editBeam: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: any) => any;
    readonly client_events: (a: number, b: number, c: number, d: number, e: number) => any;
    readonly client_getBeam: (a: number, b: number, c: number) => any;
    readonly client_getSpace: (a: number, b: number, c: number) => any;
    readonly client_join: (a: number, b: number, c: number) => any;
    readonly client_leave: (a: number, b: number, c: number) => any;
    readonly client_listSpaces: (a: number) => any;
    readonly client_members: (a: number, b: number, c: number) => any;
    readonly client_node: (a: number) => [number, number, number];
    readonly client_onStatus: (a: number, b: any) => void;
    readonly client_post: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => any;
    readonly client_postAttached: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: any) => any;
    readonly client_spaceUri: (a: number, b: number, c: number) => [number, number, number, number];
    readonly client_subscribe: (a: number, b: number, c: number, d: any) => any;
    readonly client_uploadBlob: (a: number, b: any, c: number, d: number) => any;
    readonly client_url: (a: number) => [number, number];
    readonly client_watch: (a: number, b: number, c: number, d: any) => any;
    readonly identity_answerChallenge: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number, number];
    readonly identity_did: (a: number) => [number, number];
    readonly identity_forget: (a: number, b: number) => any;
    readonly identity_fromSecret: (a: number, b: number) => [number, number, number];
    readonly identity_fromSecretHex: (a: number, b: number) => [number, number, number];
    readonly identity_generate: () => [number, number, number];
    readonly identity_join: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number, number];
    readonly identity_load: (a: number, b: number) => any;
    readonly identity_loadOrGenerate: (a: number, b: number) => any;
    readonly identity_membership: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number, number];
    readonly identity_post: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number) => [number, number, number, number];
    readonly identity_save: (a: number, b: number, c: number) => any;
    readonly identity_secret: (a: number) => [number, number];
    readonly identity_secretHex: (a: number) => [number, number];
    readonly identity_tombstone: (a: number, b: number, c: number, d: number) => [number, number, number, number];
    readonly logchecker_after: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => [number, number, number];
    readonly logchecker_fromGenesis: (a: number, b: number) => [number, number, number];
    readonly logchecker_head: (a: number) => number;
    readonly logchecker_headId: (a: number) => [number, number];
    readonly logchecker_new: (a: number, b: number, c: number, d: number) => [number, number, number];
    readonly logchecker_push: (a: number, b: number, c: number) => [number, number, number, number];
    readonly logchecker_sequencer: (a: number) => [number, number];
    readonly logchecker_space: (a: number) => [number, number];
    readonly subscription_close: (a: number) => void;
    readonly subscription_head: (a: number) => number;
    readonly subscription_headId: (a: number) => [number, number];
    readonly subscription_space: (a: number) => [number, number];
    readonly verifyBeam: (a: number, b: number, c: number, d: number) => [number, number, number, number];
    readonly verifyEvent: (a: number, b: number, c: number, d: number) => [number, number, number, number];
    readonly watch_close: (a: number) => void;
    readonly watch_last: (a: number) => [number, number];
    readonly watch_space: (a: number) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h02c4f535189307c2: (a: number, b: number, c: any, d: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__hbfe3a4e3a7324a17: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h57b1a4a83ebda61f: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h57b1a4a83ebda61f_62: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h57b1a4a83ebda61f_63: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h7a9b651b9cd8dc72: (a: number, b: number) => void;
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_destroy_closure: (a: number, b: number) => void;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
