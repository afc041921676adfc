/**
 * Drills: a node that misbehaves on purpose, so an operator can watch a mesh catch it (`deno task cluster
 * --drill liar=1,slow=1,flaky=1,offline=1`). Each wraps what the node serves from ({@link ChunkSource}); the
 * node logs that it is a drill at start, so nobody mistakes one for a fault.
 *
 * - `liar`: flips a bit in every chunk it serves (and signs what it sends: its lie is provable).
 * - `slow`: answers each request 10x later than it could (at least 200 ms later).
 * - `flaky`: fails 30% of the requests it gets.
 * - `offline`: goes away for 20 s of every 60 s (answers nothing, as if unreachable), then comes back.
 *
 * @module
 */
import type { CID } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import type { ChunkSource } from "./exchange.ts";

export type Drill = "liar" | "slow" | "flaky" | "offline";
export const DRILLS: readonly Drill[] = ["liar", "slow", "flaky", "offline"];

/** What the drills do, each a documented constant. */
export const DRILL = {
  slowFactor: 10,
  slowFloorMs: 200,
  flakyShare: 0.3,
  offlineMs: 20_000,
  periodMs: 60_000,
} as const;

export function parseDrill(text: string): Drill {
  if (!(DRILLS as readonly string[]).includes(text)) {
    throw new MeshError("bad_request", `A drill is one of ${DRILLS.join(", ")}, not "${text}"`);
  }
  return text as Drill;
}

/** True while an `offline` drill is away (`now` in ms; the first 20 s of each minute since `since`). */
export function drillAway(since: number, now = Date.now()): boolean {
  return (now - since) % DRILL.periodMs < DRILL.offlineMs;
}

/** `source` as a drill serves it. Puts (what others give it to keep) are left alone. */
export function drillSource(
  source: ChunkSource,
  drill: Drill,
  random: () => number = Math.random,
  since = Date.now(),
): ChunkSource {
  const never = () => new Promise<never>(() => {});
  return {
    put: (cid, bytes, from) => source.put(cid, bytes, from),
    async has(cid: CID) {
      if (drill === "offline" && drillAway(since)) return await never();
      return await source.has(cid);
    },
    async get(cid: CID) {
      if (drill === "offline" && drillAway(since)) return await never();
      if (drill === "flaky" && random() < DRILL.flakyShare) {
        throw new MeshError("store_failed", "drill: a flaky node failed this request");
      }
      const t0 = performance.now();
      const bytes = await source.get(cid);
      if (drill === "slow") {
        const ms = Math.max(DRILL.slowFloorMs, (DRILL.slowFactor - 1) * (performance.now() - t0));
        await new Promise((r) => setTimeout(r, ms));
      }
      if (drill === "liar" && bytes !== null && bytes.length > 0) {
        const lie = bytes.slice();
        lie[Math.floor(random() * lie.length)]! ^= 1 << Math.floor(random() * 8);
        return lie;
      }
      return bytes;
    },
  };
}
