/**
 * k = 20 closest IDs to a target, over tables of N random 32-byte IDs: the XOR kernel (a prebuilt
 * `XorTable`, and the one-shot `xorClosest` that copies the table on every call) beside the way
 * `@libp2p/kad-dht` orders peers.
 *
 * `@libp2p/kad-dht` does not export its `PeerDistanceList`, so `KadStyleList` below follows its
 * `addWithKadId` (v16.4.5) step for step: skip a peer already in the list, compute the byte-wise XOR
 * distance into a new array, give up early when the list is full and the peer is not nearer than the
 * farthest, else insert before the first entry that is not nearer, and truncate to capacity. Peer identity
 * is compared on the raw key bytes, which is cheaper than a real `PeerId.equals`, so if anything this
 * flatters the kad-dht side.
 */
import { xorClosest, XorTable } from "../src/kernels/xor.ts";

const K = 20;

/** Byte-wise XOR into a new array, as `uint8arrays/xor`. */
function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length !== b.length) throw new Error("Inputs should have the same length");
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** -1, 0 or 1 comparing two distances byte by byte, as `uint8arrays/xor-compare`. */
function xorCompare(a: Uint8Array, b: Uint8Array): number {
  if (a.byteLength !== b.byteLength) throw new Error("Inputs should have the same length");
  for (let i = 0; i < a.byteLength; i++) {
    if (a[i] === b[i]) continue;
    return a[i]! < b[i]! ? -1 : 1;
  }
  return 0;
}

/** Content equality, as `uint8arrays/equals`. */
function equals(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Stands in for a `PeerId`: equal when the key bytes are. */
class PeerKey {
  constructor(readonly bytes: Uint8Array) {}
  equals(other: PeerKey): boolean {
    return equals(this.bytes, other.bytes);
  }
}

interface Peer {
  id: PeerKey;
}

function makePeer(bytes: Uint8Array): Peer {
  return { id: new PeerKey(bytes) };
}

interface PeerDistance {
  peer: Peer;
  distance: Uint8Array;
  path: number;
}

/** kad-dht's `PeerDistanceList` algorithm (see the module comment). */
class KadStyleList {
  private peerDistances: PeerDistance[] = [];
  constructor(private readonly originDhtKey: Uint8Array, private readonly capacity: number) {}

  get peers(): PeerDistance[] {
    return [...this.peerDistances];
  }

  addWithKadId(peer: Peer, kadId: Uint8Array, path = -1): void {
    if (this.peerDistances.find((pd) => pd.peer.id.equals(peer.id)) != null) return;
    const el: PeerDistance = { peer, distance: xor(this.originDhtKey, kadId), path };
    if (this.peerDistances.length === this.capacity) {
      const lastPeer = this.peerDistances[this.peerDistances.length - 1];
      if (lastPeer != null && xorCompare(el.distance, lastPeer.distance) !== -1) return;
    }
    let added = false;
    for (let j = 0; j < this.peerDistances.length; j++) {
      const distance = xorCompare(this.peerDistances[j]!.distance, el.distance);
      if (distance === 0 || distance === 1) {
        added = true;
        this.peerDistances.splice(j, 0, el);
        break;
      }
    }
    if (!added) this.peerDistances.push(el);
    this.peerDistances = this.peerDistances.slice(0, this.capacity);
  }
}

const ids1 = crypto.getRandomValues(new Uint8Array(32 * 64));
const targets = Array.from({ length: 64 }, (_, i) => ids1.subarray(i * 32, i * 32 + 32));

function randomIds(n: number): Uint8Array {
  const ids = new Uint8Array(n * 32);
  for (let off = 0; off < ids.length; off += 65536) {
    crypto.getRandomValues(ids.subarray(off, Math.min(ids.length, off + 65536)));
  }
  return ids;
}

for (const n of [1000, 20_000, 200_000]) {
  const group = `xor closest k=${K} N=${n}`;
  const ids = randomIds(n);
  const table = new XorTable(ids);
  const keys = Array.from({ length: n }, (_, i) => ids.subarray(i * 32, i * 32 + 32));
  const peers = keys.map(makePeer);

  // The three must agree before their speed means anything.
  const check = targets[0]!;
  const list = new KadStyleList(check, K);
  for (let i = 0; i < n; i++) list.addWithKadId(peers[i]!, keys[i]!);
  const kad = list.peers.map((pd) => peers.indexOf(pd.peer));
  if (
    String(kad) !== String([...table.closest(check, K)]) ||
    String(kad) !== String([...xorClosest(ids, check, K)])
  ) throw new Error(`${group}: the implementations disagree`);

  let t = 0;
  Deno.bench({
    name: "meshgate",
    group,
    baseline: true,
    fn() {
      table.closest(targets[t++ & 63]!, K);
    },
  });
  Deno.bench({
    name: "meshgate one-shot",
    group,
    fn() {
      xorClosest(ids, targets[t++ & 63]!, K);
    },
  });
  Deno.bench({
    name: "kad-dht PeerDistanceList-style",
    group,
    fn() {
      const list = new KadStyleList(targets[t++ & 63]!, K);
      for (let i = 0; i < n; i++) list.addWithKadId(peers[i]!, keys[i]!);
    },
  });
}
