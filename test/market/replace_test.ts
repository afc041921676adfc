import assert from "node:assert/strict";
import { CID } from "../../src/content/cid.ts";
import { ingest } from "../../src/content/ingest.ts";
import { placeLost, recoverChunk } from "../../src/market/replace.ts";
import { randomBytes } from "../mesh/_helpers.ts";

async function file() {
  const blocks = new Map<string, Uint8Array>();
  const result = await ingest(ReadableStream.from([randomBytes(40_000)]), (cid, bytes) => {
    blocks.set(cid.toString(), bytes.slice());
    return Promise.resolve();
  }, { chunkSize: 4096, k: 4, m: 2 });
  return { ...result, blocks };
}

Deno.test("a lost chunk is rebuilt from its stripe when no copy is left; not from too few", async () => {
  const { cid: root, manifest, blocks } = await file();
  const lost = manifest.stripes[1]![2]!;
  const want = blocks.get(lost.toString())!;
  const missing = new Set([lost.toString()]);
  const deps = {
    get: (c: CID) => Promise.resolve(c.equals(root) ? blocks.get(root.toString())! : null),
    fetch: (c: CID) =>
      Promise.resolve(missing.has(c.toString()) ? null : blocks.get(c.toString()) ?? null),
  };
  assert.deepEqual(await recoverChunk(deps, root, lost), want);
  // Parity too.
  const parity = manifest.stripes[0]![5]!;
  missing.add(parity.toString());
  assert.deepEqual(await recoverChunk(deps, root, parity), blocks.get(parity.toString()));
  // Three of the stripe's six gone: only two parity chunks, no rebuild.
  for (const c of manifest.stripes[1]!.slice(0, 2)) missing.add(c.toString());
  assert.equal(await recoverChunk(deps, root, lost), null);
});

Deno.test("lost chunks go to the best-scored peer away from the stripe's holders; a refusal to the next", async () => {
  const cidA = CID.parse("bafkr4ihff2wmw5fcftu2igij24pcvsxjbsq5mhjdd5u6x42hohnmangfku").toString();
  const cidB = CID.parse("bafkr4ifjmhkkfjmprruju6cqxjiatlzmiznxuozv7baysgrc32ycd6gaf4").toString();
  const asked: string[] = [];
  const placed = await placeLost(
    {
      candidates: () => [
        { peer: "cheater", score: 1 },
        { peer: "best", score: 0.9 },
        { peer: "good", score: 0.5 },
        { peer: "full", score: 0.7 },
      ],
      store: (peer, chunks) => {
        asked.push(`${peer}:${chunks.length}`);
        return Promise.resolve(chunks.map(() => peer !== "full"));
      },
    },
    new Map([[cidA, new Uint8Array(1)], [cidB, new Uint8Array(2)]]),
    new Set(["cheater"]),
    // A's stripe is already on "best": A goes to the next, "full", which refuses, then to "good".
    (cid) => new Set(cid === cidA ? ["best"] : []),
  );
  assert.deepEqual(placed.get("best"), [cidB]);
  assert.deepEqual(placed.get("good"), [cidA]);
  assert.equal(placed.has("cheater"), false);
  assert.deepEqual(asked, ["full:1", "best:1", "good:1"]);
});
