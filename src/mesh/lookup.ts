/**
 * Lookups on behalf of others, `/meshgate/lookup/1.0.0`: "who provides CID X", answered by an operator from
 * its provider records and its own DHT walk, for a client that has few peers (a browser, a phone, a fresh
 * node) and would otherwise walk the DHT itself. One JSON request per stream (`message.ts`):
 *
 * - `{ op: "find", cid, nonce }` -> `{ op: "found", record }`: a {@link LookupRecord} signed by the operator
 *   for this request (its nonce), naming up to {@link MAX_PROVIDERS} providers, each with its addresses and,
 *   where the operator has one, the provider's own signed {@link ProviderStatement} ("I hold X", signed by
 *   its key). A record the operator did not sign, or one whose statement is not the provider's, is refused by
 *   the client ({@link verifyLookupRecord}); the latter is the operator's own signed lie, so it stays as proof.
 * - `{ op: "statement", cids }` -> `{ op: "statements", statements: [{ cid, at, sig }] }`: every node running
 *   the protocol signs statements of the chunks it holds (free), which is how an operator gets them.
 * - `{ op: "offers", … }` and whatever else the node's hooks take (the market's paid lookups: `quote`, `pay`).
 *
 * Payment, if any, is not this module's: {@link LookupServerInit.gate} decides whether a peer is answered
 * (`market/lookups.ts` refuses peers with too many unpaid lookups) and learns of every record it signed.
 *
 * @module
 */
import type {
  Connection,
  IdentifyResult,
  Libp2p,
  PeerId,
  PrivateKey,
  Stream,
} from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { CID, parseCid } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import { toHex } from "../units.ts";
import { answerMessage, callPeer } from "./message.ts";
import type { MeshNode } from "./node.ts";
import { PeerTable } from "./placement.ts";
import { signTagged, verifyTagged } from "./signature.ts";
import { WarmStreams } from "./warm.ts";

/** Protocol ID of lookups. */
export const LOOKUP_PROTOCOL = "/meshgate/lookup/1.0.0";
/** Providers named in one record at most. */
export const MAX_PROVIDERS = 8;
/** Largest lookup message (a record of 8 providers with 8 addresses each is ~6 KiB). */
const MAX_MESSAGE_BYTES = 64 * 1024;
const STATEMENT_DOMAIN = new TextEncoder().encode("meshgate/provides/1\n");
const RECORD_DOMAIN = new TextEncoder().encode("meshgate/lookup/1\n");

/** Codes of {@link LookupError}. */
export type LookupErrorCode =
  /** Not a record (or request) of the expected shape. */
  | "lookup_malformed"
  /** A record not signed by the operator asked, for another request, or holding a statement its provider did
   * not sign. */
  | "lookup_forged"
  /** No provider found, or none of those named delivered the chunk. */
  | "lookup_failed"
  /** The operator refused to answer (unpaid lookups, no lookups offered, a price above the client's cap). */
  | "lookup_refused"
  /** Paying for a lookup went wrong (unknown lookup, too little paid). */
  | "lookup_payment";

/** A lookup, a record or its payment that does not hold, with why. */
export class LookupError extends MeshError {
  override name = "LookupError";
  constructor(code: LookupErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

const WIRE = {
  maxBytes: MAX_MESSAGE_BYTES,
  what: "lookup",
  error: (m: string, cause?: unknown) => new LookupError("lookup_malformed", m, { cause }),
};

/** A provider's own word that it holds a block: signed by its key over the CID and the time. */
export interface ProviderStatement {
  /** Signing time, ms since epoch. */
  at: number;
  /** Base64 Ed25519 signature by the provider over {@link STATEMENT_DOMAIN}, the CID's bytes and `at`. */
  sig: string;
}

/** One provider as a record names it. */
export interface RecordProvider {
  peerId: string;
  multiaddrs: string[];
  statement?: ProviderStatement;
}

/** An operator's signed answer to one lookup. */
export interface LookupRecord {
  v: 1;
  /** The operator's peer ID: the signer. */
  operator: string;
  cid: string;
  /** The client's request nonce (hex): a record answers one request, and names it when paid for. */
  nonce: string;
  /** Signing time, ms since epoch. */
  at: number;
  providers: RecordProvider[];
  /** Base64 Ed25519 signature by `operator` over {@link RECORD_DOMAIN} and {@link recordBody}. */
  sig: string;
}

function statementBody(cid: CID, at: number): Uint8Array {
  const c = cid.bytes;
  const out = new Uint8Array(c.length + 8);
  out.set(c);
  new DataView(out.buffer).setBigUint64(c.length, BigInt(at));
  return out;
}

/** Signs "this node holds `cid`" with its key. */
export async function signStatement(
  key: PrivateKey,
  cid: CID,
  at = Date.now(),
): Promise<ProviderStatement> {
  return { at, sig: await signTagged(key, STATEMENT_DOMAIN, statementBody(cid, at)) };
}

/** True when `s` is `peer`'s statement that it holds `cid`. */
export function verifyStatement(peer: string, cid: CID, s: ProviderStatement): Promise<boolean> {
  return verifyTagged(peer, STATEMENT_DOMAIN, statementBody(cid, s.at), s.sig);
}

/** The signed bytes of a record: its fields in a fixed order (never the sender's JSON). */
function recordBody(r: Omit<LookupRecord, "sig">): Uint8Array {
  return new TextEncoder().encode(JSON.stringify([
    r.v,
    r.operator,
    r.cid,
    r.nonce,
    r.at,
    r.providers.map((
      p,
    ) => [p.peerId, p.multiaddrs, p.statement?.at ?? null, p.statement?.sig ?? null]),
  ]));
}

/** Signs a record as `operator` (whose key `key` is). */
export async function signLookupRecord(
  key: PrivateKey,
  body: Omit<LookupRecord, "sig" | "v">,
): Promise<LookupRecord> {
  const r = { v: 1 as const, ...body };
  return { ...r, sig: await signTagged(key, RECORD_DOMAIN, recordBody(r)) };
}

function isProvider(p: unknown): p is RecordProvider {
  const x = p as Partial<RecordProvider> | null;
  if (typeof x !== "object" || x === null || typeof x.peerId !== "string") return false;
  if (!Array.isArray(x.multiaddrs) || x.multiaddrs.length > 16) return false;
  if (!x.multiaddrs.every((a) => typeof a === "string" && a.length < 300)) return false;
  const s = x.statement;
  return s === undefined ||
    (typeof s === "object" && s !== null && Number.isSafeInteger(s.at) &&
      typeof s.sig === "string");
}

/** The shape of a record (not that it verifies); throws `lookup_malformed`. */
function recordShape(input: unknown): LookupRecord {
  const r = input as Partial<LookupRecord> | null;
  if (
    typeof r !== "object" || r === null || r.v !== 1 || typeof r.operator !== "string" ||
    typeof r.cid !== "string" || typeof r.nonce !== "string" || !Number.isSafeInteger(r.at) ||
    !Array.isArray(r.providers) || r.providers.length > MAX_PROVIDERS ||
    !r.providers.every(isProvider) || typeof r.sig !== "string"
  ) {
    throw new LookupError(
      "lookup_malformed",
      `A lookup record is {v: 1, operator, cid, nonce, at, providers: [at most ${MAX_PROVIDERS} of {peerId, multiaddrs, statement?}], sig}`,
    );
  }
  return {
    v: 1,
    operator: r.operator,
    cid: r.cid,
    nonce: r.nonce,
    at: r.at!,
    providers: r.providers.map((p) => ({
      peerId: p.peerId,
      multiaddrs: [...p.multiaddrs],
      ...(p.statement ? { statement: { at: p.statement.at, sig: p.statement.sig } } : {}),
    })),
    sig: r.sig,
  };
}

/** A record as checked: which of its providers stated it themselves. */
export interface VerifiedLookup {
  record: LookupRecord;
  /** Peer IDs whose own signed statement the record carries. */
  stated: ReadonlySet<string>;
}

/**
 * Checks that `input` is `operator`'s signed answer to the request (`cid`, `nonce`) and that every provider
 * statement in it is that provider's signature for `cid`. Throws {@link LookupError}: `lookup_malformed` for
 * the wrong shape, `lookup_forged` (saying which part) for the rest.
 */
export async function verifyLookupRecord(
  input: unknown,
  expect: { operator: string; cid: CID; nonce: string },
): Promise<VerifiedLookup> {
  const r = recordShape(input);
  if (r.operator !== expect.operator) {
    throw new LookupError(
      "lookup_forged",
      `The record names operator "${
        r.operator.slice(0, 60)
      }", not "${expect.operator}" who was asked`,
    );
  }
  if (r.cid !== expect.cid.toString() || r.nonce !== expect.nonce) {
    throw new LookupError(
      "lookup_forged",
      `The record answers another request (CID "${r.cid.slice(0, 80)}", nonce "${
        r.nonce.slice(0, 40)
      }")`,
    );
  }
  if (!await verifyTagged(r.operator, RECORD_DOMAIN, recordBody(r), r.sig)) {
    throw new LookupError(
      "lookup_forged",
      `The record is not signed by operator "${r.operator}"`,
    );
  }
  const stated = new Set<string>();
  for (const p of r.providers) {
    if (p.statement === undefined) continue;
    if (!await verifyStatement(p.peerId, expect.cid, p.statement)) {
      throw new LookupError(
        "lookup_forged",
        `The statement of provider "${
          p.peerId.slice(0, 60)
        }" is not that peer's signature for ${expect.cid}`,
      );
    }
    stated.add(p.peerId);
  }
  return { record: r, stated };
}

// -------------------------------------------------------------------------------------------------------------
// Server

/** Decides who is answered, and hears of each record signed (`market/lookups.ts` meters them). */
export interface LookupGate {
  /** Throws (a {@link MeshError}, sent as the answer) when `peer` may not look up now. */
  admit(peer: string): void | Promise<void>;
  /** A record was signed for `peer`. */
  answered(peer: string, record: LookupRecord): void;
}

export interface LookupServerInit {
  mesh: MeshNode;
  /** The node's identity key: records and statements are signed with it. */
  privateKey: PrivateKey;
  /** Whether this node holds a block (its statements are signed only for those). Default: holds nothing. */
  has?: (cid: CID) => boolean | Promise<boolean>;
  /** Answer `find` at all: an operator that offers lookups. Others answer `statement` only. Default: false. */
  serve?: boolean;
  /** Who may look up (default: anyone). */
  gate?: LookupGate;
  /** Ops besides `find` and `statement` (`offers`, `quote`, `pay`): the answer, or undefined for unknown. An
   * error it throws with `hangUp: true` also ends the connection, after the answer. */
  ops?: (
    peer: string,
    request: Record<string, unknown>,
    connection: Connection,
  ) => Promise<Record<string, unknown> | undefined>;
  /** Providers named per record. Default: 4. */
  want?: number;
  /** Longest DHT walk for one `find`, in ms. Default: 2 000. */
  findMs?: number;
  /** Connected peers asked whether they hold the block (the XOR-nearest to it, where placement puts chunks),
   * beside the DHT walk: an operator with many open connections answers in one round trip what a light
   * client needs a walk for. 0: the walk alone. Default: 32. */
  probe?: number;
  /** Of those, how many are asked at once, nearest first: the next as many once these answered without the
   * block (or after `probeWaveMs`). Placement puts a chunk on the nearest, so the first wave mostly answers;
   * asking all 32 at once cost the operator a burst of streams for nothing. Default: 4. */
  probeWave?: number;
  /** Longest wait for a wave before the next is asked, in ms. Default: 200. */
  probeWaveMs?: number;
  /** Once a provider is found, how much longer the walk may look for more, in ms: a client waits for the
   * first that delivers, not for the walk's end. Not waited once the nearest probed peer that holds the block
   * is known (every nearer one said it does not): the answer placement gives is in. Default: 50. */
  graceMs?: number;
  /** Longest wait for providers' statements, in ms (the record goes out without those late). Default: 400. */
  statementMs?: number;
  /** Found providers reused for this long, in ms. Default: 30 000. */
  cacheMs?: number;
}

const MAX_CACHED = 10_000;
const STATEMENT_TTL_MS = 10 * 60_000;
/** How long a stream may wait for its request (a spare, `warm.ts`, waits for the next lookup). */
const IDLE_MS = 5 * 60_000;

function bounded<K, V>(map: Map<K, V>, key: K, value: V): void {
  if (map.size >= MAX_CACHED) map.delete(map.keys().next().value!);
  map.set(key, value);
}

/** Serves the lookup protocol: statements for everyone, `find` when `serve` is set. */
export class LookupServer {
  readonly #init: LookupServerInit;
  readonly #want: number;
  readonly #findMs: number;
  readonly #statementMs: number;
  readonly #cacheMs: number;
  readonly #graceMs: number;
  readonly #probe: number;
  readonly #probeWave: number;
  readonly #probeWaveMs: number;
  /** CID -> providers found, and when. */
  readonly #found = new Map<
    string,
    { at: number; providers: { peerId: string; multiaddrs: string[] }[] }
  >();
  /** "peer cid" -> that provider's statement. */
  readonly #statements = new Map<string, ProviderStatement>();
  #net?: Pick<Libp2p, "handle" | "unhandle" | "hangUp">;
  #streams?: WarmStreams;
  #stopping = new AbortController();

  constructor(init: LookupServerInit) {
    this.#init = init;
    this.#want = Math.min(MAX_PROVIDERS, init.want ?? 4);
    this.#findMs = init.findMs ?? 2000;
    this.#statementMs = init.statementMs ?? 400;
    this.#cacheMs = init.cacheMs ?? 30_000;
    this.#graceMs = init.graceMs ?? 50;
    this.#probe = init.probe ?? 32;
    this.#probeWave = Math.max(1, init.probeWave ?? 4);
    this.#probeWaveMs = init.probeWaveMs ?? 200;
  }

  get serving(): boolean {
    return this.#init.serve === true;
  }

  async start(net: Pick<Libp2p, "handle" | "unhandle" | "hangUp">): Promise<void> {
    this.#stopping = new AbortController();
    this.#net = net;
    const libp2p = this.#init.mesh.libp2p;
    this.#streams = new WarmStreams(libp2p, LOOKUP_PROTOCOL);
    // Statements and lookups are small: a light client may keep a few in flight.
    await net.handle(LOOKUP_PROTOCOL, this.#handle, { maxInboundStreams: 32 });
    libp2p.addEventListener("peer:disconnect", this.#onDisconnect);
    libp2p.addEventListener("peer:identify", this.#onIdentify);
    if (!this.serving) return;
    // An operator keeps a spare statement stream to each peer that runs this protocol: its probe's
    // requests then go without a round trip to negotiate.
    for (const id of libp2p.getPeers()) {
      const known = await libp2p.peerStore.get(id).catch(() => undefined);
      if (known?.protocols.includes(LOOKUP_PROTOCOL)) this.#streams.keep(id.toString());
    }
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    const libp2p = this.#init.mesh.libp2p;
    libp2p.removeEventListener("peer:identify", this.#onIdentify);
    libp2p.removeEventListener("peer:disconnect", this.#onDisconnect);
    this.#streams?.stop();
    this.#streams = undefined;
    await this.#net?.unhandle(LOOKUP_PROTOCOL).catch(() => {});
    this.#net = undefined;
  }

  /** Keeps a spare lookup stream open to `peer` while connected (a client does so for its operator): now if
   * a connection is up, else once it is identified. */
  keepWarm(peer: string): void {
    this.#streams?.keep(peer);
  }

  /** Peers with a spare lookup stream ready now. */
  get spares(): number {
    return this.#streams?.ready ?? 0;
  }

  /** What requests of this protocol go through: spare streams where kept, else new ones. */
  get dialer(): Pick<Libp2p, "dialProtocol"> {
    return this.#streams ?? this.#init.mesh.libp2p;
  }

  #onIdentify = (e: CustomEvent<IdentifyResult>) => {
    const peer = e.detail.peerId.toString();
    if (!e.detail.protocols.includes(LOOKUP_PROTOCOL)) return;
    if (this.serving || this.#streams?.keeps(peer)) this.#streams?.keep(peer);
  };

  #onDisconnect = (e: CustomEvent<PeerId>) => {
    const peer = e.detail.toString();
    if (this.#streams?.keeps(peer)) this.#streams.forget(peer);
  };

  #handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString();
    // A spare stream (`warm.ts`) idles until its request: the request's deadline starts at its first byte.
    const deadline = new AbortController();
    const expire = (ms: number, why: string) =>
      setTimeout(() => deadline.abort(new DOMException(why, "TimeoutError")), ms);
    let timer = expire(IDLE_MS, "No request came on the lookup stream");
    let started = false;
    const onFirstByte = () => {
      if (started) return;
      started = true;
      clearTimeout(timer);
      timer = expire(this.#findMs + 5000, "The lookup request timed out");
    };
    const signal = AbortSignal.any([this.#stopping.signal, deadline.signal]);
    let failed: unknown;
    try {
      failed = await answerMessage(
        stream,
        signal,
        { ...WIRE, onFirstByte },
        (req) => this.#answer(peer, req, connection, signal),
      );
    } finally {
      clearTimeout(timer);
    }
    // A forger (a hook marked the error) is cut off once it knows why.
    if ((failed as { hangUp?: unknown } | undefined)?.hangUp === true) {
      await this.#net?.hangUp(connection.remotePeer).catch(() => {});
    }
  };

  async #answer(
    peer: string,
    req: Record<string, unknown>,
    connection: Connection,
    signal: AbortSignal,
  ): Promise<Record<string, unknown>> {
    if (req.op === "statement") return { op: "statements", statements: await this.#own(req.cids) };
    if (req.op === "find") {
      if (!this.serving) {
        throw new LookupError("lookup_refused", "This node does not offer lookups");
      }
      if (typeof req.nonce !== "string" || !/^[0-9a-f]{32}$/.test(req.nonce)) {
        throw new LookupError("lookup_malformed", "A find names a nonce of 32 hex digits");
      }
      const cid = cidOf(req.cid);
      await this.#init.gate?.admit(peer);
      const record = await this.find(cid, req.nonce, signal);
      this.#init.gate?.answered(peer, record);
      return { op: "found", record };
    }
    const other = await this.#init.ops?.(peer, req, connection);
    if (other !== undefined) return other;
    throw new LookupError("lookup_malformed", `Unknown op "${String(req.op).slice(0, 20)}"`);
  }

  /** Statements of the listed CIDs this node holds. */
  async #own(raw: unknown): Promise<{ cid: string; at: number; sig: string }[]> {
    if (!Array.isArray(raw) || raw.length > 64) {
      throw new LookupError("lookup_malformed", "A statement request lists at most 64 CIDs");
    }
    const out = [];
    for (const c of raw) {
      const cid = cidOf(c);
      if (!await this.#init.has?.(cid)) continue;
      out.push({ cid: cid.toString(), ...await signStatement(this.#init.privateKey, cid) });
    }
    return out;
  }

  /** Resolves `cid` and signs the record of request `nonce`. */
  async find(cid: CID, nonce: string, signal?: AbortSignal): Promise<LookupRecord> {
    const { providers, asked } = await this.#providers(cid, signal);
    const statements = await this.#gather(cid, providers, asked, signal);
    return await signLookupRecord(this.#init.privateKey, {
      operator: this.#init.mesh.peerId,
      cid: cid.toString(),
      nonce,
      at: Date.now(),
      providers: providers.map((p) => {
        const statement = statements.get(p.peerId);
        return {
          peerId: p.peerId,
          multiaddrs: p.multiaddrs.slice(0, 8),
          ...(statement ? { statement } : {}),
        };
      }),
    });
  }

  /**
   * This node if it holds `cid`, then what its provider records and DHT walk name and what its nearest
   * connected peers say they hold, together: the first `want`, or what is found within `graceMs` of the first
   * (at once when the nearest probed holder is known), or by `findMs`. With them, the statement requests of
   * the probe, by peer, some maybe still under way (for {@link #gather}, which then need not ask again).
   */
  async #providers(
    cid: CID,
    signal?: AbortSignal,
  ): Promise<{ providers: Provider[]; asked: Map<string, Promise<unknown>> }> {
    const asked = new Map<string, Promise<unknown>>();
    const key = cid.toString();
    const hit = this.#found.get(key);
    if (hit && Date.now() - hit.at < this.#cacheMs && hit.providers.length > 0) {
      return { providers: hit.providers, asked };
    }
    const mesh = this.#init.mesh;
    const out: Provider[] = [];
    if (await this.#init.has?.(cid)) {
      out.push({ peerId: mesh.peerId, multiaddrs: mesh.multiaddrs() });
    }
    const done = new AbortController();
    const limit = AbortSignal.any([AbortSignal.timeout(this.#findMs), ...(signal ? [signal] : [])]);
    const deadline = AbortSignal.any([done.signal, limit]);
    let grace: ReturnType<typeof setTimeout> | undefined;
    const add = (p: Provider, nearest = false) => {
      if (done.signal.aborted) return;
      if (!out.some((o) => o.peerId === p.peerId)) out.push(p);
      if (nearest || out.length >= this.#want) done.abort();
      else grace ??= setTimeout(() => done.abort(), this.#graceMs);
    };
    const walk = (async () => {
      for await (const p of mesh.findProviders(cid, { signal: deadline })) add(p);
    })().catch(() => {}); // the deadline or the grace: what was found so far is the answer
    try {
      await Promise.all([walk, this.#ask(cid, deadline, limit, add, asked)]);
    } finally {
      clearTimeout(grace);
      done.abort();
    }
    if (out.length > 0) bounded(this.#found, key, { at: Date.now(), providers: out });
    return { providers: out, asked };
  }

  /**
   * Asks the `probe` connected peers XOR-nearest to `cid` whether they hold it (no dials), nearest first in
   * waves of `probeWave`, until `stop`. A peer that runs this protocol is asked for its statement (one
   * request: whether it holds the block, and its signed word for the record; kept in `asked` while under way,
   * and not cut by `stop`, only by `signal`), others the exchange's `has`. `add` hears of each holder, with
   * `nearest` once every nearer peer asked said it does not hold the block.
   */
  async #ask(
    cid: CID,
    stop: AbortSignal,
    signal: AbortSignal,
    add: (p: Provider, nearest: boolean) => void,
    asked: Map<string, Promise<unknown>>,
  ): Promise<void> {
    const mesh = this.#init.mesh;
    const connected = mesh.connectedPeers();
    if (this.#probe === 0 || connected.length === 0) return;
    const ranked = new PeerTable(connected).closest(cid.multihash.digest, this.#probe);
    /** Per rank: undefined while asked, then whether it holds the block (a failure counts as no). */
    const held: (boolean | undefined)[] = [];
    const found: Provider[] = [];
    const settle = (rank: number, holds: boolean) => {
      held[rank] = holds;
      // The nearest holder: the first rank that holds, every rank before it answered.
      for (let r = 0; r < ranked.length && held[r] !== undefined; r++) {
        if (held[r]) return add(found[r]!, true);
      }
      if (holds) add(found[rank]!, false);
    };
    const one = async (peerId: string, rank: number) => {
      try {
        const known = await mesh.libp2p.peerStore.get(peerIdFromString(peerId));
        let holds: boolean;
        if (known.protocols.includes(LOOKUP_PROTOCOL)) {
          const stated = this.#statementOf(peerId, cid, signal);
          asked.set(peerId, stated);
          holds = await stated;
        } else holds = (await mesh.hasChunks(peerId, [cid], { signal }))[0] === true;
        // The addresses it listens on (an inbound connection's remote address is no dialable one).
        if (holds) {
          found[rank] = { peerId, multiaddrs: known.addresses.map((a) => a.multiaddr.toString()) };
        }
        settle(rank, holds);
      } catch {
        // Away, slow or without the exchange: the walk may still find it.
        settle(rank, false);
      }
    };
    const stopped = new Promise<void>((r) => {
      if (stop.aborted) r();
      else stop.addEventListener("abort", () => r(), { once: true });
    });
    for (let start = 0; start < ranked.length && !stop.aborted; start += this.#probeWave) {
      const wave = Promise.all(
        ranked.slice(start, start + this.#probeWave).map((p, i) => one(p, start + i)),
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((r) => timer = setTimeout(r, this.#probeWaveMs));
      await Promise.race([wave, late, stopped]);
      clearTimeout(timer);
      // A holder answered: the rest of this wave may be nearer, none further is asked.
      if (found.some((f) => f !== undefined)) await Promise.race([wave, stopped]);
      if (found.some((f) => f !== undefined)) return;
    }
  }

  /** Whether `peerId` states it holds `cid` (its statement, checked, kept for the record). */
  async #statementOf(peerId: string, cid: CID, signal: AbortSignal): Promise<boolean> {
    const [s] = await requestStatements(this.dialer, peerId, [cid], { signal });
    if (!s || !await verifyStatement(peerId, cid, s)) return false;
    bounded(this.#statements, `${peerId} ${cid}`, s);
    return true;
  }

  /**
   * Each provider's statement: kept ones, else the probe's request still under way (in `asked`), else asked
   * now, unless the peer is known not to run this protocol (either at most `statementMs`).
   */
  async #gather(
    cid: CID,
    providers: readonly Provider[],
    asked: ReadonlyMap<string, Promise<unknown>>,
    signal?: AbortSignal,
  ): Promise<Map<string, ProviderStatement>> {
    const out = new Map<string, ProviderStatement>();
    const key = cid.toString();
    const self = this.#init.mesh.peerId;
    const kept = (peerId: string) => {
      const s = this.#statements.get(`${peerId} ${key}`);
      const fresh = s !== undefined && Date.now() - s.at < STATEMENT_TTL_MS;
      if (fresh) out.set(peerId, s);
      return fresh;
    };
    const ask: string[] = [];
    for (const { peerId } of providers) {
      if (kept(peerId)) continue;
      if (peerId === self) out.set(peerId, await signStatement(this.#init.privateKey, cid));
      else ask.push(peerId);
    }
    if (ask.length === 0 || this.#statementMs <= 0) return out;
    const wait = AbortSignal.any([
      AbortSignal.timeout(this.#statementMs),
      ...(signal ? [signal] : []),
    ]);
    const waited = new Promise<void>((r) =>
      wait.addEventListener("abort", () => r(), { once: true })
    );
    const peerStore = this.#init.mesh.libp2p.peerStore;
    await Promise.all(ask.map(async (peerId) => {
      try {
        const pending = asked.get(peerId);
        if (pending) {
          await Promise.race([pending.catch(() => {}), waited]);
          kept(peerId);
          return;
        }
        const known = await peerStore.get(peerIdFromString(peerId)).catch(() => undefined);
        // Identified without this protocol: it has no statement to give.
        if (known && known.protocols.length > 0 && !known.protocols.includes(LOOKUP_PROTOCOL)) {
          return;
        }
        const [s] = await requestStatements(this.dialer, peerId, [cid], {
          signal: wait,
        });
        if (s && await verifyStatement(peerId, cid, s)) {
          out.set(peerId, s);
          bounded(this.#statements, `${peerId} ${key}`, s);
        }
      } catch {
        // Late or refused: the record names the provider without its statement.
      }
    }));
    return out;
  }
}

/** A provider as found: its peer ID and addresses. */
type Provider = { peerId: string; multiaddrs: string[] };

function cidOf(raw: unknown): CID {
  if (typeof raw !== "string") throw new LookupError("lookup_malformed", "A CID is a string");
  try {
    return parseCid(raw);
  } catch (e) {
    throw new LookupError("lookup_malformed", `"${raw.slice(0, 80)}" is not a CID`, { cause: e });
  }
}

// -------------------------------------------------------------------------------------------------------------
// Client calls

type Dialer = Pick<Libp2p, "dialProtocol">;

/** Sends one lookup-protocol request and reads the answer; an `{error}` answer becomes a {@link LookupError}
 * (`lookup_refused` unless the operator's code is one of ours). */
export async function callLookup(
  libp2p: Dialer,
  peer: string | PeerId,
  request: Record<string, unknown>,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  const m = await callPeer(libp2p, peer, LOOKUP_PROTOCOL, request, signal, WIRE);
  if (typeof m.error === "string") {
    const code = m.error.startsWith("lookup_") ? m.error as LookupErrorCode : "lookup_refused";
    const message = typeof m.message === "string" ? m.message.slice(0, 300) : m.error.slice(0, 40);
    throw new LookupError(code, `Operator "${peer}" refused (${m.error.slice(0, 40)}): ${message}`);
  }
  return m;
}

/** A fresh request nonce: 16 random bytes, hex. */
export function lookupNonce(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(16)));
}

/**
 * Asks `operator` who provides `cid` and checks its answer ({@link verifyLookupRecord}). Throws
 * {@link LookupError}: `lookup_refused` when it would not answer, `lookup_forged` for a forged record.
 */
export async function requestLookup(
  libp2p: Dialer,
  operator: string,
  cid: CID,
  options: { signal?: AbortSignal; nonce?: string } = {},
): Promise<VerifiedLookup> {
  const nonce = options.nonce ?? lookupNonce();
  const m = await callLookup(
    libp2p,
    operator,
    { op: "find", cid: cid.toString(), nonce },
    options.signal ?? AbortSignal.timeout(10_000),
  );
  if (m.op !== "found") {
    throw new LookupError(
      "lookup_malformed",
      `Operator "${operator}" answered "${String(m.op).slice(0, 20)}"`,
    );
  }
  return await verifyLookupRecord(m.record, { operator, cid, nonce });
}

/** Asks `peer` for its statements of `cids` (those it holds), in the order of `cids` (undefined: not held). */
export async function requestStatements(
  libp2p: Dialer,
  peer: string,
  cids: readonly CID[],
  options: { signal?: AbortSignal } = {},
): Promise<(ProviderStatement | undefined)[]> {
  const m = await callLookup(
    libp2p,
    peerIdFromString(peer),
    { op: "statement", cids: cids.map(String) },
    options.signal ?? AbortSignal.timeout(5000),
  );
  const list = Array.isArray(m.statements) ? m.statements : [];
  return cids.map((cid) => {
    const s = list.find((x: { cid?: unknown }) => x?.cid === cid.toString()) as
      | { at?: unknown; sig?: unknown }
      | undefined;
    return s && Number.isSafeInteger(s.at) && typeof s.sig === "string"
      ? { at: s.at as number, sig: s.sig }
      : undefined;
  });
}

export { CID };
