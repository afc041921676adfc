/**
 * Run by framing_memory_test.ts with `--v8-flags=--expose-gc`: a peer floods a real node's chunk exchange with
 * garbage streams (oversize length prefixes, frames cut short, random bytes, junk headers); after each round we
 * collect garbage and print the victim process's heap, one JSON line at the end.
 */
import { multiaddr } from "@multiformats/multiaddr";
import { CHUNK_PROTOCOL } from "../../src/mesh/exchange.ts";
import { encodeUvarint } from "../../src/mesh/_framing.ts";
import { MAX_FRAME_BYTES } from "../../src/mesh/exchange.ts";
import { MemorySource, startNode, stopNodes } from "../mesh/_helpers.ts";

const ROUNDS = Number(Deno.args[0] ?? 8);
const STREAMS = Number(Deno.args[1] ?? 48);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/** One garbage stream's bytes; kind cycles through the ways a frame can be wrong. */
function garbage(kind: number): Uint8Array[] {
  switch (kind % 5) {
    case 0: // a length far above the limit, then bytes
      return [encodeUvarint(MAX_FRAME_BYTES + 1 + kind), random(64 * 1024)];
    case 1: // a frame that claims the full limit and stops a third of the way
      return [encodeUvarint(MAX_FRAME_BYTES), random(Math.floor(MAX_FRAME_BYTES / 3))];
    case 2: // random bytes
      return [random(96 * 1024)];
    case 3: { // a well-formed frame whose header is not JSON, many times over
      const body = random(16 * 1024);
      const payload = [encodeUvarint(8), random(8), body];
      const len = 1 + 8 + body.length;
      return Array.from({ length: 8 }, () => [encodeUvarint(len), ...payload]).flat();
    }
    default: // a varint that never ends
      return [new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), random(1024)];
  }
}

const victim = await startNode({ store: new MemorySource() });
const attacker = await startNode({ store: new MemorySource() });
const heap: number[] = [];
let sent = 0;
try {
  const addr = multiaddr(victim.multiaddrs()[0]!);
  for (let round = 0; round < ROUNDS; round++) {
    // A few streams at a time, under the exchange's inbound limit; a victim that hangs up is dialled again.
    for (let batch = 0; batch < STREAMS; batch += 8) {
      await Promise.all(
        Array.from({ length: Math.min(8, STREAMS - batch) }, async (_, i) => {
          try {
            const stream = await attacker.libp2p.dialProtocol(addr, CHUNK_PROTOCOL);
            for (const piece of garbage(round * STREAMS + batch + i)) {
              sent += piece.length;
              if (!stream.send(piece)) await stream.onDrain({ signal: AbortSignal.timeout(5000) });
            }
            await stream.close({ signal: AbortSignal.timeout(5000) });
          } catch (e) {
            // The victim resets garbage streams: that is the point.
            if (Deno.env.get("DEBUG_FLOOD")) console.error(String(e));
          }
        }),
      );
    }
    gc();
    await new Promise((r) => setTimeout(r, 50));
    gc();
    // Typed arrays keep their bytes outside the JS heap: count both.
    const { heapUsed, external } = Deno.memoryUsage();
    heap.push(heapUsed + external);
  }
} finally {
  await stopNodes(victim, attacker);
}
const reports = [...victim.misbehaviour().values()].reduce((n, r) => n + r.length, 0);
console.log(JSON.stringify({ heap, sent, reports }));
Deno.exit(0);
