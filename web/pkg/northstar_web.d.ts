/* tslint:disable */
/* eslint-disable */

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
    readonly __wbg_identity_free: (a: number, b: number) => void;
    readonly __wbg_logchecker_free: (a: number, b: number) => void;
    readonly identity_answerChallenge: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number, number];
    readonly identity_did: (a: number) => [number, number];
    readonly identity_fromSecret: (a: number, b: number) => [number, number, number];
    readonly identity_fromSecretHex: (a: number, b: number) => [number, number, number];
    readonly identity_generate: () => [number, number, number];
    readonly identity_join: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number, number];
    readonly identity_membership: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number, number];
    readonly identity_post: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number) => [number, number, number, number];
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
    readonly verifyBeam: (a: number, b: number, c: number, d: number) => [number, number, number, number];
    readonly verifyEvent: (a: number, b: number, c: number, d: number) => [number, number, number, number];
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
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
