/**
 * verifiedFetch in headless Chromium beside a plain `fetch` of the same file from the same gateway (a
 * `serve` process with a mesh, so its raw answers are signed): sustained MB/s of a 32 MiB file, and time to
 * the first byte of a mid-file range. Browser caching is off for both (`cache: "no-store"`). Prints both and
 * the ratios (the bar: >= 0.8x the throughput, first byte <= 1.5x the time).
 */
import { spawnNode } from "../src/cluster.ts";
import { CHROMIUM, haveChromium, launchChromium } from "../test/_browser.ts";
import { patternStream, postStream } from "../test/_util.ts";

const MiB = 1024 * 1024;
const SIZE = Number(Deno.env.get("MESH_BENCH_BROWSER_MIB") ?? 32) * MiB;
const ROUNDS = 5;

if (!haveChromium) {
  console.log(`\nbrowser bench skipped: no Chromium at ${CHROMIUM} (set MESH_CHROMIUM)`);
  Deno.exit(0);
}

const dir = await Deno.makeTempDir({ prefix: "meshgate-bench-browser-" });
const node = await spawnNode(["--data", dir], { stderr: "null" });
const browser = await launchChromium();
try {
  const put = await postStream(`${node.url}/mesh?name=bench.bin`, patternStream(SIZE, 5), SIZE);
  const { cid } = await put.json() as { cid: string };
  const page = await browser.newPage();
  await page.goto(`${node.url}/livez`);
  const got = await page.evaluate(async ({ cid, size, rounds }) => {
    const m = await import("/meshgate.js");
    const noStore = (u: string, init?: RequestInit) => fetch(u, { ...init, cache: "no-store" });
    /** Reads a body to its end; the time of its first piece and the byte count. */
    async function drain(res: Response, t0: number) {
      const reader = res.body!.getReader();
      let n = 0;
      let first = 0;
      while (true) {
        const { value, done } = await reader.read();
        if (done) return { n, first };
        if (n === 0) first = performance.now() - t0;
        n += value.length;
      }
    }
    const plain = async (range?: string) => {
      const t0 = performance.now();
      const res = await noStore(`/mesh/${cid}`, range ? { headers: { Range: range } } : {});
      const { n, first } = await drain(res, t0);
      return { ms: performance.now() - t0, n, first };
    };
    const verified = async (range?: string) => {
      const t0 = performance.now();
      const res: Response = await m.verifiedFetch(cid, { fetch: noStore, range });
      const { n, first } = await drain(res, t0);
      return { ms: performance.now() - t0, n, first };
    };
    // Warm both paths (kernels compiled, the node's cache hot), then alternate.
    await plain();
    await verified();
    const mid = `bytes=${Math.floor(size / 2) + 12345}-${Math.floor(size / 2) + 12345 + 65535}`;
    const out = {
      plain: [] as number[],
      verified: [] as number[],
      plainFirst: [] as number[],
      verifiedFirst: [] as number[],
    };
    for (let i = 0; i < rounds; i++) {
      const p = await plain();
      const v = await verified();
      if (p.n !== size || v.n !== size) throw new Error(`short read: ${p.n}, ${v.n}`);
      out.plain.push(p.ms);
      out.verified.push(v.ms);
      out.plainFirst.push((await plain(mid)).first);
      out.verifiedFirst.push((await verified(mid)).first);
    }
    return out;
  }, { cid, size: SIZE, rounds: ROUNDS });

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rate = (ms: number) => SIZE / MiB / (ms / 1000);
  const plainRate = rate(median(got.plain));
  const verifiedRate = rate(median(got.verified));
  const plainFirst = median(got.plainFirst);
  const verifiedFirst = median(got.verifiedFirst);
  console.log(
    `\nverifiedFetch in Chromium, ${SIZE / MiB} MiB from one gateway (median of ${ROUNDS}):`,
  );
  console.log(
    `  plain fetch      ${plainRate.toFixed(1)} MiB/s, first byte of a mid-file range ${
      plainFirst.toFixed(1)
    } ms`,
  );
  console.log(
    `  verifiedFetch    ${verifiedRate.toFixed(1)} MiB/s, first byte of a mid-file range ${
      verifiedFirst.toFixed(1)
    } ms`,
  );
  console.log(
    `  ratio            ${(verifiedRate / plainRate).toFixed(2)}x throughput, ${
      (verifiedFirst / plainFirst).toFixed(2)
    }x time to first byte`,
  );
} finally {
  await browser.close();
  await node.stop();
  await Deno.remove(dir, { recursive: true });
}
