import assert from "node:assert/strict";
import { bytesToHex, concat, type Hex, hexToBytes, keccak256, pad, toHex } from "viem";
import { merkleProof, merkleRoot } from "../../src/kernels/mod.ts";
import {
  EMPTY_RECEIPTS_ROOT,
  encodeReceipt,
  hashReceipt,
  type Receipt,
  ReceiptBatch,
  verifyReceiptProof,
} from "../../src/pay/receipts.ts";

const operator = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8" as const;
const client = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC" as const;

function receipt(i: number, cidLength = 36): Receipt {
  const cid = crypto.getRandomValues(new Uint8Array(cidLength));
  return { operator, client, cid, size: BigInt(1000 + i), time: 1_700_000_000n + BigInt(i) };
}

/** Independent oracle: the tree written as its definition, over hex strings. */
function oracleRoot(level: Hex[]): Hex {
  if (level.length === 1) return level[0]!;
  const up: Hex[] = [];
  for (let i = 0; i + 1 < level.length; i += 2) {
    const [a, b] = [level[i]!, level[i + 1]!];
    up.push(keccak256(BigInt(a) < BigInt(b) ? concat([a, b]) : concat([b, a])));
  }
  if (level.length % 2 === 1) up.push(level[level.length - 1]!);
  return oracleRoot(up);
}

function flipBit(hex: Hex, bit: number): Hex {
  const bytes = hexToBytes(hex);
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return bytesToHex(bytes);
}

Deno.test("encodeReceipt() is the flat ABI encoding of the five fields", () => {
  const r = receipt(1);
  const encoded = hexToBytes(encodeReceipt(r));
  // 5 head words, then the cid's length word and its 36 bytes padded to 64.
  assert.equal(encoded.length, 5 * 32 + 32 + 64);
  assert.equal(bytesToHex(encoded.subarray(0, 32)), pad(operator.toLowerCase() as Hex));
  assert.equal(BigInt(bytesToHex(encoded.subarray(64, 96))), 160n, "offset of the cid");
  assert.equal(BigInt(bytesToHex(encoded.subarray(160, 192))), 36n, "cid length");
  assert.deepEqual(encoded.subarray(192, 228), r.cid);
  assert.equal(bytesToHex(hashReceipt(r)), keccak256(encodeReceipt(r)));
});

Deno.test("merkleRoot() matches the tree's definition for 1 to 33 leaves", () => {
  for (let n = 1; n <= 33; n++) {
    const leaves = crypto.getRandomValues(new Uint8Array(32 * n));
    const hexLeaves = Array.from(
      { length: n },
      (_, i) => bytesToHex(leaves.subarray(i * 32, i * 32 + 32)),
    );
    assert.equal(bytesToHex(merkleRoot(leaves)), oracleRoot(hexLeaves), `n = ${n}`);
  }
});

Deno.test("every receipt of a batch verifies with its proof, for 1 to 33 receipts", () => {
  for (let n = 1; n <= 33; n++) {
    const batch = new ReceiptBatch();
    for (let i = 0; i < n; i++) batch.add(receipt(i));
    const root = batch.root();
    for (let i = 0; i < n; i++) {
      assert.ok(verifyReceiptProof(batch.receipts[i]!, batch.proof(i), root), `n = ${n}, i = ${i}`);
    }
  }
});

Deno.test("a flipped bit in the root, a proof node or the receipt is refused", () => {
  const batch = new ReceiptBatch();
  for (let i = 0; i < 11; i++) batch.add(receipt(i));
  const root = batch.root();
  for (let trial = 0; trial < 50; trial++) {
    const i = trial % 11;
    const r = batch.receipts[i]!;
    const proof = batch.proof(i);
    const bit = Math.floor(Math.random() * 256);
    assert.equal(verifyReceiptProof(r, proof, flipBit(root, bit)), false, "root");
    const k = trial % proof.length;
    const badProof = proof.map((node, j) => (j === k ? flipBit(node, bit) : node));
    assert.equal(verifyReceiptProof(r, badProof, root), false, "proof");
    const cid = r.cid.slice();
    cid[bit % cid.length]! ^= 1 << (bit & 7);
    assert.equal(verifyReceiptProof({ ...r, cid }, proof, root), false, "receipt");
  }
});

Deno.test("a three-leaf tree promotes its last leaf unchanged", () => {
  const leaves = Array.from({ length: 3 }, (_, i) => keccak256(toHex(i)));
  const packed = hexToBytes(concat(leaves));
  const sorted = (a: Hex, b: Hex) => (BigInt(a) < BigInt(b) ? concat([a, b]) : concat([b, a]));
  const left = keccak256(sorted(leaves[0]!, leaves[1]!));
  assert.equal(bytesToHex(merkleRoot(packed)), keccak256(sorted(left, leaves[2]!)));
  assert.deepEqual(merkleProof(packed, 2).map((n) => bytesToHex(n)), [left]);
  assert.deepEqual(merkleProof(packed, 0).map((n) => bytesToHex(n)), [leaves[1], leaves[2]]);
  assert.equal(bytesToHex(merkleRoot(hexToBytes(leaves[0]!))), leaves[0]);
});

Deno.test("ReceiptBatch counts receipts and bytes, and an empty batch has the zero root", () => {
  const batch = new ReceiptBatch();
  assert.equal(batch.root(), EMPTY_RECEIPTS_ROOT);
  let bytes = 0n;
  for (let i = 0; i < 100; i++) {
    assert.equal(batch.add(receipt(i, 36 + (i % 5))), i);
    bytes += BigInt(1000 + i);
  }
  assert.equal(batch.count, 100n);
  assert.equal(batch.bytes, bytes);
  assert.equal(batch.leaves().length, 3200);
  assert.ok(verifyReceiptProof(batch.receipts[99]!, batch.proof(99), batch.root()));
});

Deno.test("merkleRoot() and merkleProof() refuse bad input", () => {
  assert.throws(() => merkleRoot(new Uint8Array(0)), RangeError);
  assert.throws(() => merkleRoot(new Uint8Array(33)), RangeError);
  assert.throws(() => merkleProof(new Uint8Array(64), 2), RangeError);
  assert.throws(() => merkleProof(new Uint8Array(64), -1), RangeError);
});
