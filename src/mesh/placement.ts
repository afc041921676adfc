/**
 * Where a stripe's chunks go: each chunk to the peer nearest to it by XOR distance (kernel `XorTable`),
 * never two chunks of one stripe to the same peer while there are enough peers, so losing one peer costs
 * a stripe at most one chunk.
 */
import { blake3, XorTable } from "../kernels/mod.ts";
import type { CID } from "../content/cid.ts";

const utf8 = new TextEncoder();

/** The 32-byte key of a peer in XOR space: BLAKE3 of its peer ID text. */
export function peerKey(peerId: string): Uint8Array {
  return blake3(utf8.encode(peerId));
}

/** A set of candidate holders, with their keys packed once for the kernel. */
export class PeerTable {
  readonly peers: readonly string[];
  #table: XorTable;

  constructor(peers: Iterable<string>) {
    this.peers = [...new Set(peers)];
    const ids = new Uint8Array(this.peers.length * 32);
    this.peers.forEach((p, i) => ids.set(peerKey(p), i * 32));
    this.#table = new XorTable(ids);
  }

  /** Up to `k` peers nearest to `key`, nearest first. */
  closest(key: Uint8Array, k: number): string[] {
    return [...this.#table.closest(key, k)].map((i) => this.peers[i]!);
  }

  /**
   * A holder for each chunk, in order: the nearest peer to the chunk's digest that holds fewer of this
   * stripe's chunks than any peer must (distinct when peers >= chunks).
   */
  placeStripe(chunks: readonly CID[]): string[] {
    const n = this.peers.length;
    if (n === 0) throw new RangeError("No peers to place chunks on");
    const cap = Math.ceil(chunks.length / n);
    const used = new Map<string, number>();
    return chunks.map((cid) => {
      const holder = this.closest(cid.multihash.digest, n).find((p) => (used.get(p) ?? 0) < cap)!;
      used.set(holder, (used.get(holder) ?? 0) + 1);
      return holder;
    });
  }
}
