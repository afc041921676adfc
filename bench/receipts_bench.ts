/**
 * A receipt batch's Merkle root (hash 100,000 receipts of 160 bytes, then the sorted-pair tree over their
 * hashes), the tree alone over 100,000 ready leaf hashes, and keccak-256 throughput: the receipts kernel
 * beside hash-wasm and @noble/hashes, each building the same tree with its own keccak-256.
 */
import { createKeccak } from "hash-wasm";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { keccak256, keccak256Many, merkleRoot } from "../src/kernels/receipts.ts";

const RECEIPTS = 100_000;
const RECEIPT_SIZE = 160;

type HashPair = (lo: Uint8Array, hi: Uint8Array) => Uint8Array;

/** The leaf hashes of the receipts in `data`, with any keccak-256 of one record. */
function leafHashes(data: Uint8Array, hashLeaf: (record: Uint8Array) => Uint8Array): Uint8Array[] {
  const level: Uint8Array[] = [];
  for (let off = 0; off < data.length; off += RECEIPT_SIZE) {
    level.push(hashLeaf(data.subarray(off, off + RECEIPT_SIZE)));
  }
  return level;
}

/** The tree of `src/kernels/receipts.ts` over `level`, with any keccak-256 of a sorted pair. */
function treeRoot(level: Uint8Array[], hashPair: HashPair): Uint8Array {
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) {
      const a = level[i]!;
      const b = level[i + 1]!;
      next.push(below(b, a) ? hashPair(b, a) : hashPair(a, b));
    }
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    level = next;
  }
  return level[0]!;
}

function below(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 32; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}

const hasher = await createKeccak(256);
function hashWasm(...parts: Uint8Array[]): Uint8Array {
  hasher.init();
  for (const part of parts) hasher.update(part);
  return hasher.digest("binary");
}

const pair = new Uint8Array(64);
function noblePair(lo: Uint8Array, hi: Uint8Array): Uint8Array {
  pair.set(lo, 0);
  pair.set(hi, 32);
  return keccak_256(pair);
}

const receipts = new Uint8Array(RECEIPTS * RECEIPT_SIZE);
for (let off = 0; off < receipts.length; off += 65536) {
  crypto.getRandomValues(receipts.subarray(off, off + 65536));
}

const hashWasmPair: HashPair = (a, b) => hashWasm(a, b);
const meshgateRoot = () => merkleRoot(keccak256Many(receipts, RECEIPT_SIZE));
const hashWasmRoot = () => treeRoot(leafHashes(receipts, (r) => hashWasm(r)), hashWasmPair);
const nobleRoot = () => treeRoot(leafHashes(receipts, (r) => keccak_256(r)), noblePair);

const leaves = keccak256Many(receipts, RECEIPT_SIZE);
const leafList = leafHashes(receipts, (r) => keccak_256(r));

// The implementations must agree before their speed means anything.
const want = String(meshgateRoot());
if (
  String(hashWasmRoot()) !== want || String(nobleRoot()) !== want ||
  String(merkleRoot(leaves)) !== want || String(treeRoot(leafList, hashWasmPair)) !== want
) throw new Error("merkle root: the implementations disagree");

const rootGroup = `merkle root ${RECEIPTS} receipts`;
Deno.bench({ name: "meshgate", group: rootGroup, baseline: true, fn: () => void meshgateRoot() });
Deno.bench({ name: "hash-wasm", group: rootGroup, fn: () => void hashWasmRoot() });
Deno.bench({ name: "@noble/hashes", group: rootGroup, fn: () => void nobleRoot() });

// The tree alone, over leaf hashes that are already there.
const treeGroup = `merkle root ${RECEIPTS} leaves`;
Deno.bench({
  name: "meshgate",
  group: treeGroup,
  baseline: true,
  fn: () => void merkleRoot(leaves),
});
Deno.bench({
  name: "hash-wasm",
  group: treeGroup,
  fn: () => void treeRoot(leafList, hashWasmPair),
});
Deno.bench({
  name: "@noble/hashes",
  group: treeGroup,
  fn: () => void treeRoot(leafList, noblePair),
});

const mib = receipts.subarray(0, 1 << 20);
const hashGroup = "keccak256 1 MiB";
Deno.bench({ name: "meshgate", group: hashGroup, baseline: true, fn: () => void keccak256(mib) });
Deno.bench({ name: "hash-wasm", group: hashGroup, fn: () => void hashWasm(mib) });
Deno.bench({ name: "@noble/hashes", group: hashGroup, fn: () => void keccak_256(mib) });
