/**
 * The mesh, measured: 8 local node processes; a 64 MiB file put through node 0 and read through node 7
 * (which holds none of it). Prints time to first byte of a mid-file range and sustained get throughput.
 */
import { spawnNode, startCluster, waitForPeers } from "../src/cluster.ts";
import { patternStream, postStream } from "../test/_util.ts";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const ROUNDS = 3;

const dir = await Deno.makeTempDir({ prefix: "meshgate-bench-mesh-" });
const cluster = await startCluster({ nodes: 7, dir, stderr: "null" });
try {
  const a = cluster.nodes[0]!;
  let t = performance.now();
  const put = await postStream(`${a.url}/mesh?name=bench.bin`, patternStream(SIZE, 3), SIZE);
  const { cid } = await put.json() as { cid: string };
  const putSeconds = (performance.now() - t) / 1000;

  const h = await spawnNode(["--data", `${dir}/h`, "--bootstrap", a.multiaddrs[0]!], {
    stderr: "null",
  });
  try {
    await waitForPeers(h.url, 6);
    // Let the holders finish announcing their chunks in the DHT: measure the steady state.
    await new Promise((r) => setTimeout(r, 15_000));
    const ttfb: number[] = [];
    const rates: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // A mid-file range, as a video player seeking would ask.
      const start = Math.floor(SIZE / 2 + round * 3 * MiB + 12345);
      t = performance.now();
      const res = await fetch(`${h.url}/mesh/${cid}`, { headers: { Range: `bytes=${start}-` } });
      const reader = res.body!.getReader();
      await reader.read();
      ttfb.push(performance.now() - t);
      await reader.cancel();

      t = performance.now();
      const whole = await fetch(`${h.url}/mesh/${cid}`);
      let n = 0;
      for await (const piece of whole.body!) n += piece.length;
      if (n !== SIZE) throw new Error(`got ${n} of ${SIZE} bytes`);
      rates.push(SIZE / MiB / ((performance.now() - t) / 1000));
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    console.log(
      `\n  mesh of 8 local nodes, 64 MiB file (20+4 stripes, 256 KiB chunks), read through a node holding none of it`,
    );
    console.log(
      `    put through node 0                 ${
        (SIZE / MiB / putSeconds).toFixed(0).padStart(6)
      } MiB/s`,
    );
    console.log(
      `    time to first byte, mid-file range ${
        median(ttfb).toFixed(0).padStart(6)
      } ms (median of ${ROUNDS})`,
    );
    console.log(
      `    sustained get, whole file          ${
        median(rates).toFixed(0).padStart(6)
      } MiB/s (median of ${ROUNDS})`,
    );
  } finally {
    await h.stop();
  }
} finally {
  await cluster.stop();
  await Deno.remove(dir, { recursive: true });
}
