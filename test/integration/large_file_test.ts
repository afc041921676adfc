/**
 * A 200 MiB file through a real gateway process: back byte-identical, whole and by random ranges, while the
 * server's resident memory stays flat: it levels off early and does not grow with the bytes moved.
 */
import assert from "node:assert/strict";
import { expectPattern, pattern, patternStream, postStream } from "../_util.ts";
import { spawnNode } from "../../src/cluster.ts";

const SIZE = 200 * 1024 * 1024;
const MiB = 1024 * 1024;

/** Passes a stream through, sampling `rss()` at each quarter of `size`. */
function sampled(
  stream: ReadableStream<Uint8Array>,
  size: number,
  rss: () => number,
  into: number[],
) {
  let seen = 0;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(piece, controller) {
        const before = Math.floor((seen * 4) / size);
        seen += piece.length;
        if (Math.floor((seen * 4) / size) > before) into.push(rss());
        controller.enqueue(piece);
      },
    }),
  );
}

Deno.test("a 200 MiB file comes back whole and by ranges with flat server memory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-large-" });
  const server = await spawnNode(["--data", dir, "--max-upload", "300MiB"]);
  try {
    await (await fetch(`${server.url}/livez`)).text();
    const baseline = server.rss();
    const putRss: number[] = [];
    const getRss: number[] = [];

    let t = performance.now();
    const body = sampled(patternStream(SIZE), SIZE, server.rss, putRss);
    const res = await postStream(`${server.url}/mesh?name=large.bin`, body, SIZE);
    const { cid, size } = await res.json();
    assert.equal(res.status, 201);
    assert.equal(size, SIZE);
    const putSeconds = (performance.now() - t) / 1000;

    t = performance.now();
    const whole = await fetch(`${server.url}/mesh/${cid}`);
    assert.equal(whole.headers.get("content-length"), String(SIZE));
    assert.equal(await expectPattern(sampled(whole.body!, SIZE, server.rss, getRss), 0), SIZE);
    const getSeconds = (performance.now() - t) / 1000;

    for (let i = 0; i < 25; i++) {
      const start = Math.floor(Math.random() * SIZE);
      const end = Math.min(SIZE, start + 1 + Math.floor(Math.random() * 8 * MiB));
      const part = await fetch(`${server.url}/mesh/${cid}`, {
        headers: { Range: `bytes=${start}-${end - 1}` },
      });
      assert.equal(part.status, 206);
      assert.equal(await expectPattern(part.body!, start), end - start);
    }
    const tail = await fetch(`${server.url}/mesh/${cid}`, { headers: { Range: "bytes=-1" } });
    assert.deepEqual(new Uint8Array(await tail.arrayBuffer()), pattern(SIZE - 1, 1));

    const mib = (n: number) => (n / MiB).toFixed(0);
    console.log(
      `200 MiB: put ${(SIZE / MiB / putSeconds).toFixed(0)} MiB/s, get ${
        (SIZE / MiB / getSeconds).toFixed(0)
      } MiB/s; server RSS at rest ${mib(baseline)} MiB, at each quarter of the put ${
        putRss.map(mib).join("/")
      } MiB, of the get ${getRss.map(mib).join("/")} MiB`,
    );
    // Flat: V8 collects freed buffers only after ~64 MiB of them pile up, so memory climbs for the first
    // 100 MiB moved, then levels off: over the second half it grows by under 48 MiB, and it never holds
    // the file (a stripe and a prefetch window are all the node keeps).
    assert.equal(putRss.length, 4);
    assert.equal(getRss.length, 4);
    for (const series of [putRss, getRss]) {
      assert.ok(series[3]! - series[1]! < 48 * MiB, `RSS grew ${series.map(mib).join("/")}`);
    }
    assert.ok(Math.max(...putRss, ...getRss) - baseline < 192 * MiB, "never near the file's size");
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
