import { httpStatus } from "../../edge/errors.ts";
import assert from "node:assert/strict";
import { CID } from "multiformats/cid";
import { sha256 } from "multiformats/hashes/sha2";
import {
  ChunkMismatchError,
  cidOf,
  DAG_JSON_CODE,
  InvalidCidError,
  matchesCid,
  parseCid,
  RAW_CODE,
  verifyChunk,
} from "../../src/content/cid.ts";

const hello = new TextEncoder().encode("hello");

Deno.test("cidOf() makes a CIDv1 with a BLAKE3 multihash, base32 text", () => {
  const cid = cidOf(hello);
  assert.equal(cid.version, 1);
  assert.equal(cid.code, RAW_CODE);
  assert.equal(cid.multihash.code, 0x1e);
  // BLAKE3("hello") from the reference implementation.
  assert.equal(
    Array.from(cid.multihash.digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f",
  );
  assert.ok(cid.toString().startsWith("bafkr4i"));
  assert.equal(cidOf(hello, DAG_JSON_CODE).code, DAG_JSON_CODE);
});

Deno.test("parseCid() round-trips and rejects what Meshgate cannot serve", async () => {
  const cid = cidOf(hello);
  assert.ok(parseCid(cid.toString()).equals(cid));
  const bad = [
    "",
    "not-a-cid",
    "bafkr4i!!!",
    "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", // CIDv0
    CID.createV1(RAW_CODE, await sha256.digest(hello)).toString(), // sha2-256
    CID.createV1(0x70, cid.multihash).toString(), // dag-pb codec
    cid.toString().slice(0, -3), // truncated
  ];
  for (const input of bad) {
    assert.throws(() => parseCid(input), (e: unknown) => {
      assert.ok(e instanceof InvalidCidError, `${input}: ${e}`);
      assert.equal(httpStatus(e), 400);
      assert.match(e.message, /^Invalid CID "/);
      return true;
    });
  }
});

Deno.test("verifyChunk() accepts the right bytes and names the source of wrong ones", () => {
  const cid = cidOf(hello);
  verifyChunk(cid, hello, "peer A");
  assert.ok(matchesCid(cid, hello));
  const flipped = hello.slice();
  flipped[0]! ^= 1;
  assert.ok(!matchesCid(cid, flipped));
  assert.throws(() => verifyChunk(cid, flipped, "peer B"), (e: unknown) => {
    assert.ok(e instanceof ChunkMismatchError);
    assert.match(e.message, /peer B/);
    return true;
  });
});
