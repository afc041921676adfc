import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import { blake3, blake3BlockCount } from "../../src/kernels/mod.ts";
import {
  answer,
  AuditError,
  Auditor,
  auditSecret,
  beaconIndex,
  challengeIndex,
  decodeChallenge,
  fromHex,
  toHex,
} from "../../src/market/audit.ts";
import { encodeMessage } from "../../src/mesh/message.ts";

const code = (c: string) => (e: unknown) => e instanceof AuditError && e.code === c;
const LEASE = "ab".repeat(16);

function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) out[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  return out;
}

Deno.test("an honest answer for a 256 KiB chunk checks and is under 2 KiB on the wire", () => {
  const chunk = bytes(256 * 1024);
  const cid = cidOf(chunk).toString();
  const { secret, commit } = auditSecret();
  assert.equal(commit, toHex(blake3(fromHex(secret))));
  const auditor = new Auditor();
  for (let i = 0; i < 20; i++) {
    const ch = auditor.challenge(LEASE, cid, chunk.length, secret);
    const a = answer(decodeChallenge({ ...ch }), chunk);
    const wire = encodeMessage(a).length;
    assert.ok(wire <= 2048, `answer is ${wire} bytes`);
    assert.ok(encodeMessage(ch).length < 300);
    auditor.check(ch, a as unknown as Record<string, unknown>);
  }
  assert.equal(auditor.pending, 0);
});

Deno.test("challenged blocks follow from the secret and the nonce, and spread over the chunk", () => {
  const cid = cidOf(bytes(10)).toString();
  const secret = fromHex(auditSecret().secret);
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  const blocks = blake3BlockCount(256 * 1024);
  assert.equal(
    challengeIndex(secret, nonce, cid, 256 * 1024),
    challengeIndex(secret, nonce, cid, 256 * 1024),
  );
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const n = crypto.getRandomValues(new Uint8Array(16));
    const idx = challengeIndex(secret, n, cid, 256 * 1024);
    assert.ok(idx >= 0 && idx < blocks);
    seen.add(idx);
  }
  assert.ok(seen.size > 240, `only ${seen.size} of ${blocks} blocks were ever named`);
  // Another secret, another block (mostly): a holder that learnt one lease's picks knows nothing of another.
  let same = 0;
  for (let i = 0; i < 200; i++) {
    const n = crypto.getRandomValues(new Uint8Array(16));
    const other = fromHex(auditSecret().secret);
    if (challengeIndex(secret, n, cid, 256 * 1024) === challengeIndex(other, n, cid, 256 * 1024)) {
      same++;
    }
  }
  assert.ok(same < 10);
});

Deno.test("a proof for the wrong block or the wrong chunk fails; a missing chunk fails", () => {
  const chunk = bytes(256 * 1024, 1);
  const other = bytes(256 * 1024, 2);
  const cid = cidOf(chunk).toString();
  const { secret } = auditSecret();
  const auditor = new Auditor();
  // Wrong block: the holder answers for the neighbouring block.
  let ch = auditor.challenge(LEASE, cid, chunk.length, secret);
  const wrongBlock = answer({ ...ch, index: (ch.index + 1) % 256 }, chunk);
  assert.throws(() => auditor.check(ch, { ...wrongBlock }), code("audit_failed"));
  // Wrong chunk: a proof from another chunk's tree.
  ch = auditor.challenge(LEASE, cid, chunk.length, secret);
  assert.throws(() => auditor.check(ch, { ...answer(ch, other) }), code("audit_failed"));
  // One flipped bit in the block.
  ch = auditor.challenge(LEASE, cid, chunk.length, secret);
  const good = answer(ch, chunk) as { nonce: string; block: string; proof: string };
  const flipped = atob(good.block).split("");
  flipped[5] = String.fromCharCode(flipped[5]!.charCodeAt(0) ^ 1);
  assert.throws(
    () => auditor.check(ch, { ...good, block: btoa(flipped.join("")) }),
    code("audit_failed"),
  );
  // The holder says it has none.
  ch = auditor.challenge(LEASE, cid, chunk.length, secret);
  assert.throws(() => auditor.check(ch, { ...answer(ch, null) }), code("audit_failed"));
  // A copy shorter than the lease says cannot answer for a block past its end.
  ch = auditor.challenge(LEASE, cid, chunk.length, secret);
  const short = answer({ ...ch, index: 255 }, chunk.subarray(0, 1024));
  assert.deepEqual(short, { nonce: ch.nonce, missing: true });
  auditor.drop(ch);
  // Garbage is malformed, not a pass.
  ch = auditor.challenge(LEASE, cid, chunk.length, secret);
  assert.throws(
    () => auditor.check(ch, { nonce: ch.nonce, block: "!!", proof: "" }),
    code("audit_malformed"),
  );
  assert.equal(auditor.pending, 0);
});

Deno.test("a replayed answer is refused: an old nonce, or the same answer twice", () => {
  const chunk = bytes(64 * 1024);
  const cid = cidOf(chunk).toString();
  const { secret } = auditSecret();
  const auditor = new Auditor();
  const first = auditor.challenge(LEASE, cid, chunk.length, secret);
  const old = answer(first, chunk) as unknown as Record<string, unknown>;
  auditor.check(first, old);
  // The same answer again.
  assert.throws(() => auditor.check(first, old), code("audit_replay"));
  // The old answer given to a new challenge (even one that names the same block) is refused.
  let next = auditor.challenge(LEASE, cid, chunk.length, secret);
  while (next.index !== first.index) {
    auditor.drop(next);
    next = auditor.challenge(LEASE, cid, chunk.length, secret);
  }
  assert.throws(() => auditor.check(next, old), code("audit_replay"));
  // The real answer still counts.
  auditor.check(next, answer(next, chunk) as unknown as Record<string, unknown>);
});

Deno.test("the holder refuses malformed challenges", () => {
  const cid = cidOf(bytes(10)).toString();
  const good = { op: "challenge", lease: LEASE, cid, index: 0, nonce: "00".repeat(16) };
  decodeChallenge(good);
  for (
    const patch of [
      { op: "prove" },
      { lease: "x" },
      { cid: "bafy" },
      { index: -1 },
      { index: 1.5 },
      { nonce: "00" },
      { extra: true },
    ]
  ) {
    assert.throws(() => decodeChallenge({ ...good, ...patch }), code("audit_malformed"));
  }
});

Deno.test("answers check for every block of inputs whose last block is short, and for tiny inputs", () => {
  const auditor = new Auditor();
  const { secret } = auditSecret();
  // Last blocks of every length mod 3 (the base64 padding cases), one block, one byte, none.
  for (const len of [5 * 1024 - 1, 5 * 1024 - 2, 5 * 1024 - 3, 1000, 1, 0]) {
    const chunk = bytes(len, len + 7);
    const cid = cidOf(chunk).toString();
    const seen = new Set<number>();
    for (let i = 0; i < 60; i++) {
      const ch = auditor.challenge(LEASE, cid, len, secret);
      auditor.check(ch, { ...answer(ch, chunk) });
      seen.add(ch.index);
    }
    assert.equal(seen.size, blake3BlockCount(len), `every block of a ${len}-byte chunk was asked`);
  }
});

Deno.test("a challenge seeded by a chain block: anyone recomputes its index; the answer stays under 2 KiB", () => {
  const chunk = bytes(256 * 1024, 3);
  const cid = cidOf(chunk).toString();
  const auditor = new Auditor();
  const hash = `0x${toHex(crypto.getRandomValues(new Uint8Array(32)))}`;
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const ch = auditor.challenge(LEASE, cid, chunk.length, "", { number: 123, hash });
    assert.equal(ch.block, 123);
    assert.equal(ch.index, beaconIndex(hash, LEASE, ch.nonce, cid, chunk.length));
    seen.add(ch.index);
    const a = answer(decodeChallenge({ ...ch }), chunk);
    assert.ok(encodeMessage(ch).length < 400);
    assert.ok(encodeMessage(a).length <= 2048, `answer is ${encodeMessage(a).length} bytes`);
    auditor.check(ch, a as unknown as Record<string, unknown>);
  }
  assert.ok(seen.size > 100, `only ${seen.size} blocks named`);
  // Another block hash, another index (mostly).
  const other = `0x${toHex(crypto.getRandomValues(new Uint8Array(32)))}`;
  let same = 0;
  for (let i = 0; i < 200; i++) {
    const nonce = toHex(crypto.getRandomValues(new Uint8Array(16)));
    if (
      beaconIndex(hash, LEASE, nonce, cid, 262144) === beaconIndex(other, LEASE, nonce, cid, 262144)
    ) {
      same++;
    }
  }
  assert.ok(same < 10);
  const good = { op: "challenge", lease: LEASE, cid, index: 0, nonce: "00".repeat(16) };
  assert.throws(() => decodeChallenge({ ...good, block: 1 }), /come together/);
  assert.throws(() => decodeChallenge({ ...good, block: -1, blockHash: hash }), /block number/);
  assert.throws(() => decodeChallenge({ ...good, block: 1, blockHash: "0x12" }), /blockHash/);
});
