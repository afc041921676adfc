/**
 * Intents: what a buyer wants, said to the whole mesh. An intent is a record {topic, item, specs, quantity,
 * maxPrice, currency, expiry, a fresh X25519 public key, how to reach the buyer}, signed by the buyer's node
 * identity. Sellers seal their quotes to its key (`quote.ts`), so only the buyer reads them.
 *
 * It travels two ways:
 * - **Gossip**, for sellers online now: on the gossipsub topic {@link gossipTopic} of its topic, checked by
 *   {@link checkGossip} (bad signatures and expired intents are rejected before they spread).
 * - **The DHT**, for sellers that look later: each buyer keeps one signed record of its live intents per topic
 *   under `/meshgate-intent/<topic hash>/<buyer>` ({@link intentRecordKey}: its own key prefix, validator and
 *   selector, {@link marketDht}), and provides {@link topicProviderKey} so that sellers find who has
 *   intents under a topic. One record per buyer, not one shared per topic: a value under a shared key would
 *   let any buyer overwrite everyone else's intents, while only the buyer can sign its own record, and its
 *   newest one (highest `seq`) wins, so a withdrawn intent does not come back with an old copy.
 *
 * Expired intents are dropped everywhere: gossip rejects them, readers of a record skip them, the buyer's next
 * record leaves them out, and a record with nothing but expired intents fails the validator.
 *
 * Amounts (maxPrice) are integers in the currency's smallest unit, as decimal strings.
 *
 * @module
 */
import type { PrivateKey } from "@libp2p/interface";
import { multiaddr } from "@multiformats/multiaddr";
import { Buffer } from "node:buffer";
import { sha256 } from "@noble/hashes/sha2.js";
import { base32 } from "multiformats/bases/base32";
import { sha256 as multihashSha256 } from "multiformats/hashes/sha2";
import { CID, RAW_CODE } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import { signTagged, verifyTagged } from "../mesh/signature.ts";
import { canonical } from "./offers.ts";

/** Key prefix of intent records in the DHT (the validator's and selector's name). */
export const INTENT_NAMESPACE = "meshgate-intent";
/** Largest intent, encoded. */
export const MAX_INTENT_BYTES = 4096;
/** Live intents a buyer keeps per topic (one DHT record holds them all). */
export const MAX_INTENTS_PER_RECORD = 16;
/** Largest DHT record of intents, encoded. */
export const MAX_RECORD_BYTES = MAX_INTENTS_PER_RECORD * MAX_INTENT_BYTES + 1024;
/** Longest an intent may stand: a week. */
export const MAX_INTENT_VALIDITY_MS = 7 * 24 * 3_600_000;
/** How far in the future a signing time may lie (clock skew). */
const MAX_SKEW_MS = 5 * 60_000;

const te = new TextEncoder();
const INTENT_DOMAIN = te.encode("meshgate/intent/1\n");
const RECORD_DOMAIN = te.encode("meshgate/intent-record/1\n");
const WITHDRAW_DOMAIN = te.encode("meshgate/intent-withdraw/1\n");
const TOPIC_DOMAIN = te.encode("meshgate/market/topic/1\n");

/** What a buyer wants (before signing). */
export interface IntentTerms {
  /** What kind of thing, e.g. "storage", "books/used": sellers watch topics. */
  topic: string;
  item: string;
  /** Required properties, each a string (a seller must match every one). */
  specs: Record<string, string>;
  quantity: number;
  /** The most the buyer pays for the whole quantity, in the currency's smallest unit. */
  maxPrice: string;
  currency: string;
  /** Until when (ms since epoch) the buyer takes quotes. */
  expiry: number;
}

/** A signed intent. */
export interface Intent extends IntentTerms {
  v: 1;
  /** The buyer's peer ID: it signs, and quotes go to it. */
  buyer: string;
  /** Where to dial the buyer (multiaddrs); may be empty when the DHT knows it. */
  addrs: string[];
  /** The fresh X25519 public key quotes are sealed to, base64 (32 bytes). */
  key: string;
  /** Signing time, ms. */
  at: number;
  /** Base64 Ed25519 signature by `buyer`. */
  sig: string;
}

/** A buyer's withdrawal of one of its intents. */
export interface Withdrawal {
  v: 1;
  id: string;
  buyer: string;
  at: number;
  sig: string;
}

/** A buyer's live intents under one topic: the value of its DHT record. */
export interface IntentRecord {
  v: 1;
  peer: string;
  topic: string;
  /** Issue time (ms): the newest record wins. */
  seq: number;
  intents: Intent[];
  sig: string;
}

export type IntentErrorCode = "intent_malformed" | "intent_signature" | "intent_expired";

/** An intent (or its record, or a withdrawal) that does not hold, with why. */
export class IntentError extends MeshError {
  override name = "IntentError";
  constructor(code: IntentErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

const bad = (why: string): never => {
  throw new IntentError("intent_malformed", `Malformed intent: ${why}`);
};

const WEI = /^(0|[1-9][0-9]{0,77})$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function text(v: unknown, name: string, max: number): void {
  if (typeof v !== "string" || v.length === 0 || v.length > max || CONTROL.test(v)) {
    bad(`${name} must be 1 to ${max} printable characters`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function exactKeys(o: Record<string, unknown>, keys: readonly string[], what: string): void {
  const extra = Object.keys(o).find((k) => !keys.includes(k));
  if (extra !== undefined) bad(`unknown field ${extra.slice(0, 40)} in ${what}`);
}

function checkTime(v: unknown, name: string): void {
  if (!Number.isSafeInteger(v) || (v as number) < 0) bad(`${name} must be a time in ms`);
}

function checkSig(v: unknown): void {
  if (typeof v !== "string" || v.length > 200 || !BASE64.test(v)) bad("sig must be base64");
}

function checkPeer(v: unknown, name: string): void {
  if (typeof v !== "string" || !/^[1-9A-HJ-NP-Za-km-z]{20,100}$/.test(v)) {
    bad(`${name} must be a peer ID`);
  }
}

const INTENT_KEYS = [
  "v",
  "topic",
  "item",
  "specs",
  "quantity",
  "maxPrice",
  "currency",
  "expiry",
  "buyer",
  "addrs",
  "key",
  "at",
  "sig",
] as const;

/** Checks the terms alone (what the buyer writes; the API's input). */
export function checkTerms(t: unknown): IntentTerms {
  if (!isObject(t)) bad("not an object");
  const o = t as Record<string, unknown>;
  text(o.topic, "topic", 64);
  text(o.item, "item", 128);
  if (!isObject(o.specs)) bad("specs must be an object of strings");
  const specs = Object.entries(o.specs as Record<string, unknown>);
  if (specs.length > 8) bad("specs has at most 8 entries");
  for (const [k, v] of specs) {
    if (!/^[A-Za-z0-9_.-]{1,32}$/.test(k)) bad("a spec's name is 1 to 32 of A-Z a-z 0-9 _ . -");
    text(v, `specs.${k}`, 64);
  }
  if (!Number.isSafeInteger(o.quantity) || (o.quantity as number) < 1) {
    bad("quantity must be a positive integer");
  }
  if (typeof o.maxPrice !== "string" || !WEI.test(o.maxPrice)) {
    bad("maxPrice must be an integer amount as a decimal string");
  }
  if (typeof o.currency !== "string" || !/^[A-Za-z0-9:._/-]{1,64}$/.test(o.currency)) {
    bad("currency must be 1 to 64 of A-Z a-z 0-9 : . _ / -");
  }
  checkTime(o.expiry, "expiry");
  return t as unknown as IntentTerms;
}

function checkIntentShape(input: unknown): Intent {
  if (!isObject(input)) bad("not an object");
  const o = input as Record<string, unknown>;
  exactKeys(o, INTENT_KEYS, "an intent");
  if (o.v !== 1) bad("v must be 1");
  checkTerms(o);
  checkPeer(o.buyer, "buyer");
  if (!Array.isArray(o.addrs) || o.addrs.length > 4) bad("addrs must be at most 4 multiaddrs");
  for (const a of o.addrs as unknown[]) {
    if (typeof a !== "string" || a.length > 200) bad("addrs must be multiaddr strings");
    try {
      multiaddr(a as string);
    } catch {
      bad("addrs must be multiaddr strings");
    }
  }
  if (typeof o.key !== "string" || o.key.length !== 44 || !BASE64.test(o.key)) {
    bad("key must be a base64 X25519 public key");
  }
  checkTime(o.at, "at");
  if ((o.expiry as number) <= (o.at as number)) bad("expiry must come after at");
  if ((o.expiry as number) - (o.at as number) > MAX_INTENT_VALIDITY_MS) {
    bad("an intent may stand for a week at most");
  }
  checkSig(o.sig);
  return input as Intent;
}

const bytesOf = (v: unknown) => te.encode(canonical(v));

/**
 * Signs `terms` as `buyer`'s intent, with `key` (raw X25519 public key) for sealing quotes and `addrs` to
 * reach it. Throws {@link IntentError} for terms out of bounds.
 */
export async function signIntent(
  privateKey: PrivateKey,
  buyer: string,
  terms: IntentTerms,
  reach: { key: Uint8Array; addrs: string[] },
  now = Date.now(),
): Promise<Intent> {
  const unsigned: Omit<Intent, "sig"> = {
    v: 1,
    ...checkTerms(terms),
    specs: { ...terms.specs },
    buyer,
    addrs: reach.addrs.slice(0, 4),
    key: toBase64(reach.key),
    at: now,
  };
  checkIntentShape({ ...unsigned, sig: "AA==" });
  const intent = {
    ...unsigned,
    sig: await signTagged(privateKey, INTENT_DOMAIN, bytesOf(unsigned)),
  };
  if (encodeIntent(intent).length > MAX_INTENT_BYTES) bad(`at most ${MAX_INTENT_BYTES} bytes`);
  return intent;
}

/**
 * Checks an intent from anywhere: well formed, signed by its buyer, not expired, signed no later than a few
 * minutes from now. Throws {@link IntentError} saying which.
 */
export async function verifyIntent(input: unknown, now = Date.now()): Promise<Intent> {
  const o = checkIntentShape(input);
  const { sig, ...unsigned } = o;
  if (!await verifyTagged(o.buyer, INTENT_DOMAIN, bytesOf(unsigned), sig)) {
    throw new IntentError("intent_signature", `The intent is not signed by ${o.buyer}`);
  }
  if (o.at > now + MAX_SKEW_MS) bad("signed in the future");
  if (o.expiry <= now) {
    throw new IntentError(
      "intent_expired",
      `The intent expired at ${new Date(o.expiry).toISOString()}`,
    );
  }
  return o;
}

/** An intent's ID: hex SHA-256 of its canonical JSON (signature included). Quotes name it. */
export function intentId(intent: Intent): string {
  let id = ids.get(intent);
  if (id === undefined) {
    id = hex(sha256(bytesOf(intent)));
    ids.set(intent, id);
  }
  return id;
}
/** IDs by intent object: intents are not changed once signed, and sealing and opening ask often. */
const ids = new WeakMap<Intent, string>();

/** The raw X25519 public key quotes to `intent` are sealed to. */
export function intentKey(intent: Intent): Uint8Array {
  return fromBase64(intent.key);
}

export function encodeIntent(intent: Intent): Uint8Array {
  return te.encode(JSON.stringify(intent));
}

/** Parses bytes of JSON of at most `max` bytes; throws {@link IntentError}. */
function parse(bytes: Uint8Array, max: number, what: string): unknown {
  if (bytes.length > max) bad(`${what} is at most ${max} bytes`);
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new IntentError("intent_malformed", `${what} is UTF-8 JSON`, { cause: e });
  }
}

/** Parses and checks an encoded intent (size, shape, signature, expiry). */
export function decodeIntent(bytes: Uint8Array, now = Date.now()): Promise<Intent> {
  return Promise.resolve().then(() =>
    verifyIntent(parse(bytes, MAX_INTENT_BYTES, "An intent"), now)
  );
}

// --- topics ---------------------------------------------------------------------------------------------

/** A topic's hash, base32: what keys and gossip topics carry instead of the topic itself. */
export function topicHash(topic: string): string {
  const body = te.encode(topic);
  const input = new Uint8Array(TOPIC_DOMAIN.length + body.length);
  input.set(TOPIC_DOMAIN);
  input.set(body, TOPIC_DOMAIN.length);
  return base32.baseEncode(sha256(input));
}

/** The gossipsub topic on which intents under `topic` (and their withdrawals) travel. */
export function gossipTopic(topic: string): string {
  return `/meshgate/market/1/${topicHash(topic)}`;
}

/** The DHT key of `buyer`'s record of intents under `topic`. */
export function intentRecordKey(topic: string, buyer: string): Uint8Array {
  return te.encode(`/${INTENT_NAMESPACE}/${topicHash(topic)}/${buyer}`);
}

/** The content-routing key buyers with intents under `topic` provide, so sellers find them. */
export async function topicProviderKey(topic: string): Promise<CID> {
  return CID.createV1(
    RAW_CODE,
    await multihashSha256.digest(te.encode(`/meshgate/intent-topic/1/${topic}`)),
  );
}

// --- withdrawals --------------------------------------------------------------------------------------

/** Signs the withdrawal of the intent `id` by its buyer. */
export async function signWithdrawal(
  privateKey: PrivateKey,
  buyer: string,
  id: string,
  now = Date.now(),
): Promise<Withdrawal> {
  const unsigned = { v: 1 as const, id, buyer, at: now };
  return { ...unsigned, sig: await signTagged(privateKey, WITHDRAW_DOMAIN, bytesOf(unsigned)) };
}

export async function verifyWithdrawal(input: unknown): Promise<Withdrawal> {
  if (!isObject(input)) bad("a withdrawal is an object");
  const o = input as Record<string, unknown>;
  exactKeys(o, ["v", "id", "buyer", "at", "sig"], "a withdrawal");
  if (o.v !== 1) bad("v must be 1");
  if (typeof o.id !== "string" || !/^[0-9a-f]{64}$/.test(o.id)) bad("id must be an intent ID");
  checkPeer(o.buyer, "buyer");
  checkTime(o.at, "at");
  checkSig(o.sig);
  const { sig, ...unsigned } = o as unknown as Withdrawal;
  if (!await verifyTagged(o.buyer as string, WITHDRAW_DOMAIN, bytesOf(unsigned), sig)) {
    throw new IntentError("intent_signature", `The withdrawal is not signed by ${o.buyer}`);
  }
  return o as unknown as Withdrawal;
}

// --- gossip -------------------------------------------------------------------------------------------

/** What travels on a topic's gossip: an intent or a withdrawal. */
export type MarketGossip = { intent: Intent } | { withdraw: Withdrawal };

export function encodeGossip(message: MarketGossip): Uint8Array {
  return te.encode(JSON.stringify(message));
}

/**
 * Checks a gossip message that arrived on `topic`'s gossip topic: an intent must be valid, under that topic,
 * unexpired; a withdrawal signed by its buyer. Throws {@link IntentError}.
 */
export async function checkGossip(
  bytes: Uint8Array,
  topic: string,
  now = Date.now(),
): Promise<MarketGossip> {
  const o = parse(bytes, MAX_INTENT_BYTES + 256, "A market gossip message");
  if (!isObject(o) || Object.keys(o).length !== 1) bad("gossip is {intent} or {withdraw}");
  const m = o as Record<string, unknown>;
  if ("intent" in m) {
    const intent = await verifyIntent(m.intent, now);
    if (gossipTopic(intent.topic) !== topic) bad("the intent is not under this topic");
    return { intent };
  }
  if ("withdraw" in m) return { withdraw: await verifyWithdrawal(m.withdraw) };
  return bad("gossip is {intent} or {withdraw}");
}

// --- DHT records --------------------------------------------------------------------------------------

/** Signs `buyer`'s record of its live intents under `topic` (expired ones left out). */
export async function signIntentRecord(
  privateKey: PrivateKey,
  buyer: string,
  topic: string,
  intents: readonly Intent[],
  now = Date.now(),
): Promise<IntentRecord> {
  const live = intents.filter((i) => i.expiry > now && i.topic === topic && i.buyer === buyer);
  if (live.length > MAX_INTENTS_PER_RECORD) {
    bad(`at most ${MAX_INTENTS_PER_RECORD} live intents per topic`);
  }
  const unsigned = { v: 1 as const, peer: buyer, topic, seq: now, intents: live };
  return { ...unsigned, sig: await signTagged(privateKey, RECORD_DOMAIN, bytesOf(unsigned)) };
}

export function encodeIntentRecord(r: IntentRecord): Uint8Array {
  return te.encode(JSON.stringify(r));
}

/**
 * Parses and checks a DHT record of intents: well formed, signed by its peer, every intent signed by that peer
 * and under the record's topic; a record whose intents have all expired is refused. Returns it with only
 * its live intents.
 */
export async function decodeIntentRecord(
  bytes: Uint8Array,
  now = Date.now(),
): Promise<IntentRecord> {
  const o = parse(bytes, MAX_RECORD_BYTES, "An intent record");
  if (!isObject(o)) bad("a record is an object");
  const r = o as Record<string, unknown>;
  exactKeys(r, ["v", "peer", "topic", "seq", "intents", "sig"], "a record");
  if (r.v !== 1) bad("v must be 1");
  checkPeer(r.peer, "peer");
  text(r.topic, "topic", 64);
  checkTime(r.seq, "seq");
  checkSig(r.sig);
  if (!Array.isArray(r.intents) || r.intents.length > MAX_INTENTS_PER_RECORD) {
    bad(`a record holds at most ${MAX_INTENTS_PER_RECORD} intents`);
  }
  const { sig, ...unsigned } = r as unknown as IntentRecord;
  if (!await verifyTagged(unsigned.peer, RECORD_DOMAIN, bytesOf(unsigned), sig)) {
    throw new IntentError("intent_signature", `The intent record is not signed by ${r.peer}`);
  }
  const live: Intent[] = [];
  for (const item of unsigned.intents) {
    let intent: Intent;
    try {
      intent = await verifyIntent(item, now);
    } catch (e) {
      if ((e as IntentError).code === "intent_expired") continue;
      throw e;
    }
    if (intent.buyer !== unsigned.peer || intent.topic !== unsigned.topic) {
      bad("a record holds only its peer's intents under its topic");
    }
    live.push(intent);
  }
  if (live.length === 0 && unsigned.intents.length > 0) {
    throw new IntentError("intent_expired", "Every intent of the record has expired");
  }
  return { ...(r as unknown as IntentRecord), intents: live };
}

/** kad-dht validator: the record under `/meshgate-intent/<topic hash>/<peer>` is that peer's, for that topic. */
export async function intentRecordValidator(key: Uint8Array, value: Uint8Array): Promise<void> {
  const r = await decodeIntentRecord(value);
  const want = new TextDecoder().decode(key);
  if (want !== new TextDecoder().decode(intentRecordKey(r.topic, r.peer))) {
    throw new IntentError(
      "intent_signature",
      `A record of ${r.peer} cannot stand under ${want.slice(0, 120)}`,
    );
  }
}

/** kad-dht selector: the newest (highest `seq`) of the records that parse. */
export function intentRecordSelector(_key: Uint8Array, records: Uint8Array[]): number {
  let best = 0, bestSeq = -1;
  records.forEach((bytes, i) => {
    try {
      const seq = (JSON.parse(new TextDecoder().decode(bytes)) as { seq?: unknown }).seq;
      if (typeof seq === "number" && seq > bestSeq) {
        best = i;
        bestSeq = seq;
      }
    } catch {
      // A record that does not parse is never the best.
    }
  });
  return best;
}

/** The DHT options a market node needs (merge into the mesh's `dht`). */
export function marketDht() {
  return {
    validators: { [INTENT_NAMESPACE]: intentRecordValidator },
    selectors: { [INTENT_NAMESPACE]: intentRecordSelector },
  };
}

// --- bytes --------------------------------------------------------------------------------------------

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Base64 to bytes (callers check the alphabet first: Node's decoder skips what it does not know). */
export function fromBase64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "base64"));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
