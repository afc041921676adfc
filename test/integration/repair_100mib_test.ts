/**
 * Issue 3's acceptance scenario: 100 MiB through a real gateway process with 10+4 stripes, then exactly m
 * chunk files of every stripe deleted or corrupted (data and parity, mixed). The file must still come back
 * byte-identical, and a repair of the stopped node's store must then restore every chunk of every stripe
 * (reads write back what they rebuild; the parity of stripes that lost only parity is left to repair).
 */
import assert from "node:assert/strict";
import { type CID, matchesCid } from "../../src/content/cid.ts";
import { decodeManifest } from "../../src/content/manifest.ts";
import { repairStore } from "../../src/store/repair.ts";
import { ChunkStore } from "../../src/store/store.ts";
import { expectPattern, patternStream, postStream } from "../_util.ts";
import { spawnNode } from "../../src/cluster.ts";

const MiB = 1024 * 1024;
// 402 chunks of 256 KiB, the last one short: 40 stripes of 10+4 and a last one of 2+4.
const SIZE = 100 * MiB + 256 * 1024 + 12345;
const K = 10;
const M = 4;

function chunkPath(dir: string, cid: CID): string {
  const key = cid.toString();
  return `${dir}/chunks/${key.slice(-2)}/${key}`;
}

/** True when the chunk file exists and holds the bytes its CID names. */
async function intact(dir: string, cid: CID): Promise<boolean> {
  try {
    return matchesCid(cid, await Deno.readFile(chunkPath(dir, cid)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** `count` distinct numbers from `from` (shuffled by a fixed seed), for a reproducible damage plan. */
function pick(from: number[], count: number, seed: number): number[] {
  const pool = [...from];
  let s = seed;
  for (let i = pool.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, count);
}

Deno.test("100 MiB with m chunks of every stripe lost reads back whole and is repaired in full", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-repair-100-" });
  // A lone node: every chunk of every stripe stays in its own store.
  const server = await spawnNode(["--data", dir, "--no-mesh"]);
  let running = true;
  try {
    let t = performance.now();
    const res = await postStream(
      `${server.url}/mesh?name=big.bin&k=${K}&m=${M}`,
      patternStream(SIZE),
      SIZE,
    );
    assert.equal(res.status, 201);
    const { cid, chunkSize } = await res.json();
    assert.equal(chunkSize, 256 * 1024);
    const putSeconds = (performance.now() - t) / 1000;

    const manifest = decodeManifest(await Deno.readFile(`${dir}/chunks/${cid.slice(-2)}/${cid}`));
    assert.equal(manifest.stripes.length, 41);

    // Exactly m chunk files of every stripe: some stripes lose only parity, some only data, the rest a
    // mix; alternately deleted and corrupted.
    let deleted = 0;
    let corrupted = 0;
    const parityOnly: CID[] = [];
    for (const [s, cids] of manifest.stripes.entries()) {
      assert.equal(new Set(cids.map(String)).size, cids.length, `stripe ${s} has distinct chunks`);
      const data = cids.length - M;
      const positions = Array.from(cids.keys());
      const chosen = s % 4 === 0
        ? positions.slice(data)
        : s % 4 === 1 && data >= M
        ? pick(positions.slice(0, data), M, s)
        : pick(positions, M, s);
      for (const [j, at] of chosen.entries()) {
        const path = chunkPath(dir, cids[at]!);
        if ((s + j) % 2 === 0) {
          await Deno.remove(path);
          deleted++;
        } else {
          const bytes = await Deno.readFile(path);
          bytes[(s * 7919 + j) % bytes.length]! ^= 0xff;
          await Deno.writeFile(path, bytes);
          corrupted++;
        }
      }
      if (chosen.every((at) => at >= data)) parityOnly.push(...chosen.map((at) => cids[at]!));
    }
    assert.equal(deleted + corrupted, M * 41);
    assert.ok(deleted > 0 && corrupted > 0);

    t = performance.now();
    const whole = await fetch(`${server.url}/mesh/${cid}`);
    assert.equal(whole.status, 200);
    assert.equal(await expectPattern(whole.body!, 0), SIZE);
    const getSeconds = (performance.now() - t) / 1000;

    assert.equal(await server.stop(), 0);
    running = false;

    // Reads rebuilt every stripe that lost data and wrote lost chunks back (those whose loss they saw
    // before the stripe was whole again); the parity of stripes that lost nothing else was never read.
    const stillBad: CID[] = [];
    let dataStillBad = 0;
    for (const cids of manifest.stripes) {
      for (const [i, c] of cids.entries()) {
        if (!(await intact(dir, c))) {
          stillBad.push(c);
          if (i < cids.length - M) dataStillBad++;
        }
      }
    }
    for (const c of parityOnly) assert.ok(stillBad.some((b) => b.equals(c)), `${c} was not read`);
    assert.ok(stillBad.length < deleted + corrupted, "reads wrote chunks back");

    t = performance.now();
    const store = await ChunkStore.open(dir);
    const report = await repairStore(store);
    await store.close();
    const repairSeconds = (performance.now() - t) / 1000;
    assert.deepEqual(report, {
      roots: 1,
      stripes: 41,
      chunksChecked: 40 * (K + M) + 2 + M,
      missing: stillBad.length,
      repaired: stillBad.length,
      unrecoverable: [],
      manifestsMissing: [],
    });

    for (const cids of manifest.stripes) {
      for (const c of cids) assert.ok(await intact(dir, c), `${c} is back and verifies`);
    }
    const took = (seconds: number) => `${seconds.toFixed(1)} s`;
    console.log(
      `100 MiB: put ${
        took(putSeconds)
      }; get with ${deleted} deleted + ${corrupted} corrupt chunks ` +
        `${
          took(getSeconds)
        }; repair of the ${stillBad.length} chunks left (${dataStillBad} data) ` +
        took(repairSeconds),
    );
  } finally {
    if (running) await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
