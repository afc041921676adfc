/**
 * Delivery receipts and receipt batches. A client that has verified a chunk against its CID writes a receipt;
 * receipts are hashed (keccak-256 of their ABI encoding) into a Merkle tree, and one voucher signs the root, so a
 * single signature covers a whole batch and any one receipt stays provable with its Merkle proof, off-chain
 * ({@link verifyReceiptProof}) or on-chain (`ChannelHub.verifyReceipt`, see `verifyReceipt` in `channel.ts`).
 *
 * @module
 */
import { type Address, bytesToHex, encodeAbiParameters, type Hex, hexToBytes } from "viem";
import { keccak256, merkleProof, merkleRoot } from "../kernels/mod.ts";

/**
 * Bytes served per voucher by default: the client signs a new voucher (one receipt batch) every 4 MiB, that is
 * 256 signatures per GiB served. Why 4 MiB (see `bench/vouchers_bench.ts`):
 * - CPU: a voucher costs ~0.3-0.9 ms to sign and ~1-2 ms to verify (recover) with viem on one core, so a GiB
 *   costs the operator ~0.3-0.5 s of verification; at 1 MiB it would be 1-2 s, over 10 % of a core at 1 Gbit/s.
 * - Flow: an operator that waits for the voucher of one batch before serving past the next caps a channel at
 *   batch / RTT, ~40 MiB/s at 100 ms for 4 MiB, but ~10 MiB/s for 1 MiB.
 * - Risk: unpaid bytes per peer never exceed the desk's credit (two batches by default, and all peers together
 *   its `maxUnpaidBytes`), worth a tiny fraction of a cent at any plausible per-GiB price; the voucher itself (169 bytes of fields and signature) is 0.004 % of it.
 */
export const DEFAULT_BATCH_BYTES = 4 * 1024 * 1024;

/** The receipts root of a voucher that covers no receipts. */
export const EMPTY_RECEIPTS_ROOT: Hex = `0x${"00".repeat(32)}`;

/** One delivery the client verified. Mirrors `Receipts.Receipt` in `contracts/Receipts.sol`. */
export interface Receipt {
  /** Who served the bytes. */
  operator: Address;
  /** Who received and verified them: the channel's payer. */
  client: Address;
  /** The chunk's binary CID (`CID.bytes`). */
  cid: Uint8Array;
  /** Bytes delivered (uint64). */
  size: bigint;
  /** Unix seconds of the delivery (uint64). */
  time: bigint;
}

const receiptParams = [
  { type: "address" },
  { type: "address" },
  { type: "bytes" },
  { type: "uint64" },
  { type: "uint64" },
] as const;

/** The receipt as the tuple viem passes to `ChannelHub.verifyReceipt` / `hashReceipt`. */
export function receiptArg(receipt: Receipt): {
  operator: Address;
  client: Address;
  cid: Hex;
  size: bigint;
  time: bigint;
} {
  return { ...receipt, cid: bytesToHex(receipt.cid) };
}

/** Flat ABI encoding `abi.encode(operator, client, cid, size, time)`. */
export function encodeReceipt(receipt: Receipt): Hex {
  return encodeAbiParameters(receiptParams, [
    receipt.operator,
    receipt.client,
    bytesToHex(receipt.cid),
    receipt.size,
    receipt.time,
  ]);
}

/** The Merkle leaf of `receipt`: keccak-256 of {@link encodeReceipt}, 32 bytes. */
export function hashReceipt(receipt: Receipt): Uint8Array {
  return keccak256(hexToBytes(encodeReceipt(receipt)));
}

/** Whether `receipt` belongs to the batch of `root`, given its proof (siblings from the leaf up). */
export function verifyReceiptProof(receipt: Receipt, proof: readonly Hex[], root: Hex): boolean {
  let node = hashReceipt(receipt);
  const pair = new Uint8Array(64);
  for (const siblingHex of proof) {
    const sibling = hexToBytes(siblingHex);
    if (sibling.length !== 32) return false;
    const first = compare(node, sibling) <= 0;
    pair.set(first ? node : sibling, 0);
    pair.set(first ? sibling : node, 32);
    node = keccak256(pair);
  }
  return bytesToHex(node) === root.toLowerCase();
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/**
 * The receipts of one voucher. The client adds a receipt per verified chunk; when {@link bytes} reaches the
 * batch size it signs a voucher with {@link root} and {@link count}, keeps the batch to answer proofs, and
 * starts a new one.
 */
export class ReceiptBatch {
  #receipts: Receipt[] = [];
  #leaves = new Uint8Array(32 * 64);
  #bytes = 0n;

  /** Receipts in the batch, in the order added (leaf order). */
  get receipts(): readonly Receipt[] {
    return this.#receipts;
  }

  /** Number of receipts: the voucher's `receiptCount`. */
  get count(): bigint {
    return BigInt(this.#receipts.length);
  }

  /** Sum of the receipts' sizes. */
  get bytes(): bigint {
    return this.#bytes;
  }

  /** Appends `receipt`; returns its leaf index. */
  add(receipt: Receipt): number {
    const index = this.#receipts.length;
    if ((index + 1) * 32 > this.#leaves.length) {
      const grown = new Uint8Array(this.#leaves.length * 2);
      grown.set(this.#leaves);
      this.#leaves = grown;
    }
    this.#leaves.set(hashReceipt(receipt), index * 32);
    this.#receipts.push(receipt);
    this.#bytes += receipt.size;
    return index;
  }

  /** The packed 32-byte leaves. */
  leaves(): Uint8Array {
    return this.#leaves.subarray(0, this.#receipts.length * 32);
  }

  /** Merkle root of the batch; {@link EMPTY_RECEIPTS_ROOT} when empty. */
  root(): Hex {
    if (this.#receipts.length === 0) return EMPTY_RECEIPTS_ROOT;
    return bytesToHex(merkleRoot(this.leaves()));
  }

  /** Merkle proof of receipt `index`. */
  proof(index: number): Hex[] {
    return merkleProof(this.leaves(), index).map((node) => bytesToHex(node));
  }
}
