/**
 * The chain as a randomness beacon for audits of paid leases: the auditor names a recent block, the challenged
 * block of a chunk follows from that block's hash (audit.ts, `beaconIndex`), and the holder checks on its own
 * chain connection that the block is real and recent before it answers. Neither side can choose or predict
 * the hash of a block not mined yet; the holder can recompute every challenge, so an auditor cannot aim its
 * challenges either.
 *
 * Plain JSON-RPC (`eth_getBlockByNumber`) over any client with `request` (a viem client is one): this module
 * loads no viem, like the rest of leasing.
 *
 * @module
 */
import { AuditError } from "./audit.ts";

/** A block as challenges name it. */
export interface BeaconBlock {
  number: number;
  /** 0x and 64 hex digits, lower case. */
  hash: string;
}

/** What leasing asks of the chain. */
export interface Beacon {
  /** The latest block the auditor sees (its hash seeds the challenges of a round). */
  latest(): Promise<BeaconBlock>;
  /** Throws {@link AuditError} `audit_beacon` unless `block` is on this node's chain and recent. */
  check(block: BeaconBlock): Promise<void>;
}

export interface RpcClient {
  request(args: { method: string; params?: unknown }): Promise<unknown>;
}

export interface ChainBeaconOptions {
  /** A named block may be this many blocks behind the head at most. Default 256 (the EVM's BLOCKHASH window). */
  maxAgeBlocks?: number;
  /** The head is read again after this long, ms. Default 1 000. */
  headTtlMs?: number;
}

interface RpcBlock {
  number: string;
  hash: string;
}

/** A {@link Beacon} over a chain client (`eth_getBlockByNumber`); hashes and the head are cached. */
export function chainBeacon(client: RpcClient, options: ChainBeaconOptions = {}): Beacon {
  const maxAge = options.maxAgeBlocks ?? 256;
  const ttl = options.headTtlMs ?? 1000;
  let head: { block: BeaconBlock; at: number } | undefined;
  /** Block number -> hash, as this node's chain has them (a bounded cache: blocks are immutable enough here;
   * a reorg past a few blocks only makes an honest challenge look unknown for a round). */
  const hashes = new Map<number, string>();
  const get = async (tag: string): Promise<BeaconBlock | undefined> => {
    const b = await client.request({ method: "eth_getBlockByNumber", params: [tag, false] }) as
      | RpcBlock
      | null;
    if (!b) return undefined;
    const block = { number: Number(BigInt(b.number)), hash: b.hash.toLowerCase() };
    if (hashes.size >= 4096) hashes.delete(hashes.keys().next().value!);
    hashes.set(block.number, block.hash);
    return block;
  };
  const latest = async (): Promise<BeaconBlock> => {
    if (head && Date.now() - head.at < ttl) return head.block;
    const block = await get("latest");
    if (!block) throw new AuditError("audit_beacon", "The chain has no latest block");
    head = { block, at: Date.now() };
    return block;
  };
  return {
    latest,
    async check(block) {
      let top = (await latest()).number;
      if (block.number > top) {
        head = undefined; // the auditor's chain may be a block or two ahead of this node's view
        top = (await latest()).number;
      }
      if (block.number > top) {
        throw new AuditError(
          "audit_beacon",
          `The challenge names block ${block.number}, past this node's chain head ${top}`,
        );
      }
      if (top - block.number > maxAge) {
        throw new AuditError(
          "audit_beacon",
          `The challenge names block ${block.number}, ${
            top - block.number
          } blocks behind the head ${top}: at most ${maxAge} (not recent)`,
        );
      }
      const known = hashes.get(block.number) ??
        (await get(`0x${block.number.toString(16)}`))?.hash;
      if (known !== block.hash) {
        throw new AuditError(
          "audit_beacon",
          `The challenge names block ${block.number} with hash ${
            block.hash.slice(0, 18)
          }…, but this node's chain has ${
            known ? `${known.slice(0, 18)}…` : "no such block"
          } (not a real block)`,
        );
      }
    },
  };
}
