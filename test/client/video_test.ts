/**
 * Verified streaming in headless Chromium: a WebM video (made in the page with WebCodecs' VP8 encoder and a
 * small muxer below, as this machine has no ffmpeg) is put on a 3-node mesh (two serve processes hold it, a
 * third joins later with no cache) and plays from the third through the service worker `/sw.js` as
 * `<video src="/verified/<cid>">`: timeupdate keeps firing during sequential playback, and a seek to 75%
 * resumes within 1 s. The third gateway holds none of the file before or after.
 */
import assert from "node:assert/strict";
import type { Browser } from "playwright-core";
import { browserTest, launchChromium } from "../_browser.ts";
import { type NodeProcess, spawnNode, startCluster, waitForPeers } from "../../src/cluster.ts";

// The page's globals: this file is checked against Deno's types, the functions below run in Chromium.
// deno-lint-ignore no-explicit-any
declare const document: any, VideoEncoder: any, VideoFrame: any;
// deno-lint-ignore no-explicit-any
type Any = any;

const MiB = 1024 * 1024;
/** The size; the encoder stops early (and the test says so) if the machine is too slow for it. */
const TARGET = 32 * MiB;

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
}

/** Runs in the page: a VP8 WebM of noise frames (hard to compress, so it reaches `target` bytes quickly). */
async function makeWebm(target: number, budgetMs: number) {
  const W = 640, H = 360, FPS = 15, SECONDS = 40;
  const frames: { data: Uint8Array; ms: number; key: boolean }[] = [];
  let total = 0;
  const encoder = new VideoEncoder({
    output: (chunk: Any) => {
      const data = new Uint8Array(chunk.byteLength);
      chunk.copyTo(data);
      frames.push({ data, ms: Math.round(chunk.timestamp / 1000), key: chunk.type === "key" });
      total += data.length;
    },
    error: (e: Any) => console.error(e),
  });
  encoder.configure({
    codec: "vp8",
    width: W,
    height: H,
    bitrate: Math.round(target * 8 / SECONDS),
    framerate: FPS,
  });
  const pixels = new Uint32Array(W * H);
  let x = 0x9e3779b9;
  const t0 = performance.now();
  let n = 0;
  // Frames in the encoder's queue add to `total` later: stop at the planned length as well.
  while (total < target && n < SECONDS * FPS && performance.now() - t0 < budgetMs) {
    for (let i = 0; i < pixels.length; i++) {
      x ^= x << 13, x ^= x >>> 17, x ^= x << 5;
      pixels[i] = x | 0xff000000;
    }
    // A bright bar that moves: frames differ visibly, not only in noise.
    const bar = (n * 8) % W;
    for (let y = 0; y < H; y++) for (let i = 0; i < 16; i++) pixels[y * W + ((bar + i) % W)] = ~0;
    const frame = new VideoFrame(pixels, {
      format: "RGBX",
      codedWidth: W,
      codedHeight: H,
      timestamp: Math.round(n * 1e6 / FPS),
      duration: Math.round(1e6 / FPS),
    });
    encoder.encode(frame, { keyFrame: n % FPS === 0 });
    frame.close();
    n++;
    if (encoder.encodeQueueSize > 8) await new Promise((r) => setTimeout(r, 5));
  }
  await encoder.flush();
  encoder.close();
  const encodeMs = performance.now() - t0;

  // EBML with every size written in 8 bytes: each element's length is known before its place.
  const parts = (...p: Uint8Array[]) => {
    const out = new Uint8Array(p.reduce((s, a) => s + a.length, 0));
    let at = 0;
    for (const a of p) (out.set(a, at), at += a.length);
    return out;
  };
  const idBytes = (id: number) => {
    const b: number[] = [];
    for (let v = id; v > 0; v = Math.floor(v / 256)) b.unshift(v & 255);
    return new Uint8Array(b);
  };
  const size8 = (n: number) => {
    const b = new Uint8Array(8);
    b[0] = 1;
    for (let i = 7, v = n; i >= 1; i--, v = Math.floor(v / 256)) b[i] = v & 255;
    return b;
  };
  const el = (id: number, ...payload: Uint8Array[]) => {
    const body = parts(...payload);
    return parts(idBytes(id), size8(body.length), body);
  };
  const uint = (id: number, v: number) => {
    const b = new Uint8Array(8);
    for (let i = 7; i >= 0; i--, v = Math.floor(v / 256)) b[i] = v & 255;
    return el(id, b);
  };
  const float = (id: number, v: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v);
    return el(id, b);
  };
  const str = (id: number, s: string) => el(id, new TextEncoder().encode(s));

  const header = el(
    0x1a45dfa3,
    uint(0x4286, 1),
    uint(0x42f7, 1),
    uint(0x42f2, 4),
    uint(0x42f3, 8),
    str(0x4282, "webm"),
    uint(0x4287, 2),
    uint(0x4285, 2),
  );
  const durationMs = (frames.length * 1000) / FPS;
  const info = el(
    0x1549a966,
    uint(0x2ad7b1, 1_000_000),
    float(0x4489, durationMs),
    str(0x4d80, "meshgate-test"),
    str(0x5741, "meshgate-test"),
  );
  const tracks = el(
    0x1654ae6b,
    el(
      0xae,
      uint(0xd7, 1),
      uint(0x73c5, 1),
      uint(0x83, 1),
      str(0x86, "V_VP8"),
      el(0xe0, uint(0xb0, W), uint(0xba, H)),
    ),
  );
  // A cluster per key frame (one a second).
  const clusters: { ms: number; bytes: Uint8Array }[] = [];
  let group: typeof frames = [];
  const close = () => {
    if (!group.length) return;
    const base = group[0]!.ms;
    const blocks = group.map((f) => {
      const rel = f.ms - base;
      return el(
        0xa3,
        new Uint8Array([0x81, (rel >> 8) & 255, rel & 255, f.key ? 0x80 : 0]),
        f.data,
      );
    });
    clusters.push({ ms: base, bytes: el(0x1f43b675, uint(0xe7, base), ...blocks) });
    group = [];
  };
  for (const f of frames) {
    if (f.key) close();
    group.push(f);
  }
  close();
  const cues = (positions: number[]) =>
    el(
      0x1c53bb6b,
      ...clusters.map((c, i) =>
        el(0xbb, uint(0xb3, c.ms), el(0xb7, uint(0xf7, 1), uint(0xf1, positions[i]!)))
      ),
    );
  // Cue positions count from the segment's payload; the cues come before the clusters, and their size does
  // not depend on the positions (fixed-width numbers).
  let at = info.length + tracks.length + cues(clusters.map(() => 0)).length;
  const positions = clusters.map((c) => {
    const p = at;
    at += c.bytes.length;
    return p;
  });
  const segment = el(0x18538067, info, tracks, cues(positions), ...clusters.map((c) => c.bytes));
  const file = parts(header, segment);
  return { file, durationMs, frames: frames.length, encodeMs };
}

Deno.test({
  ...browserTest,
  sanitizeOps: false,
  sanitizeResources: false,
  name:
    "Chromium: a video on a 3-node mesh plays and seeks through /sw.js from a gateway without it",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-video-" });
    const cluster = await startCluster({ nodes: 2, dir, stderr: "null" });
    const a = cluster.nodes[0]!;
    let g: NodeProcess | undefined;
    let browser: Browser | undefined;
    try {
      browser = await launchChromium();
      const maker = await browser.newPage();
      await maker.goto(`${a.url}/livez`);
      const made = await maker.evaluate(
        async ({ src, target }) => {
          const make = (0, eval)(`(${src})`) as typeof makeWebm;
          const { file, durationMs, frames, encodeMs } = await make(target, 45_000);
          const t0 = performance.now();
          const res = await fetch("/mesh?name=video.webm&k=4&m=2&chunkSize=262144", {
            method: "POST",
            headers: { "Content-Type": "video/webm" },
            body: file,
          });
          const answer = await res.json();
          return {
            status: res.status,
            cid: answer.cid as string,
            answer,
            size: file.length,
            durationMs,
            frames,
            encodeMs,
            uploadMs: performance.now() - t0,
            canPlay: document.createElement("video").canPlayType('video/webm; codecs="vp8"'),
          };
        },
        { src: makeWebm.toString(), target: TARGET },
      );
      await maker.close();
      assert.equal(made.status, 201, JSON.stringify(made.answer));
      assert.notEqual(made.canPlay, "", "this Chromium plays VP8 WebM");
      console.log(
        `video: ${(made.size / MiB).toFixed(1)} MiB, ${made.frames} frames, ${
          (made.durationMs / 1000).toFixed(1)
        } s; encoded in ${(made.encodeMs / 1000).toFixed(1)} s, put in ${
          (made.uploadMs / 1000).toFixed(1)
        } s`,
      );
      assert.ok(made.size >= 16 * MiB, `a video of ${made.size} B is too small to tell`);

      g = await spawnNode(
        ["--data", `${dir}/g`, "--cache", "0", "--bootstrap", a.multiaddrs[0]!],
        { stderr: "null" },
      );
      await waitForPeers(g.url, 2, 30_000);
      assert.equal(await metric(g.url, "mesh_store_chunks"), 0, "the gateway holds none of it");

      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`${g.url}/livez`);
      const got = await page.evaluate(async ({ cid }) => {
        const workers = (navigator as Any).serviceWorker;
        const reg = await workers.register("/sw.js");
        await workers.ready;
        if (!workers.controller) {
          await new Promise((r) => workers.addEventListener("controllerchange", r, { once: true }));
        }
        const video = document.createElement("video");
        video.muted = true;
        video.preload = "auto";
        document.body.append(video);
        const ticks: number[] = [];
        type Stats = { windows: number; bytes: number; aborted: number; furthest: number };
        const workerStats = () => {
          const channel = new MessageChannel();
          const got = new Promise<Stats>((r) => channel.port1.onmessage = (e) => r(e.data));
          workers.controller.postMessage({ type: "stats" }, [channel.port2]);
          return got;
        };
        video.addEventListener("timeupdate", () => ticks.push(video.currentTime));
        const wait = (event: string, ms: number) =>
          new Promise<boolean>((resolve) => {
            const t = setTimeout(() => resolve(false), ms);
            video.addEventListener(event, () => (clearTimeout(t), resolve(true)), { once: true });
          });
        const t0 = performance.now();
        video.src = `/verified/${cid}`;
        const playing = wait("playing", 30_000);
        await video.play().catch(() => {});
        const started = await playing;
        const firstPlayMs = performance.now() - t0;
        // Sequential playback for 3 s: timeupdate fires every ~250 ms.
        await new Promise((r) => setTimeout(r, 3000));
        const sequential = ticks.length;
        const playedTo = video.currentTime;
        const duration = video.duration;
        const beforeSeek = await workerStats();
        // Seek to 75%: the time until playback moves past the target again.
        const target = duration * 0.75;
        const s0 = performance.now();
        video.currentTime = target;
        let resumeMs = -1;
        await new Promise<void>((resolve) => {
          const check = () => {
            if (!video.seeking && !video.paused && video.currentTime > target + 0.05) {
              resumeMs = performance.now() - s0;
              return resolve();
            }
            if (performance.now() - s0 > 15_000) return resolve();
            setTimeout(check, 10);
          };
          check();
        });
        const afterSeek = ticks.length;
        await new Promise((r) => setTimeout(r, 1000));
        const fetched = await workerStats();
        // Ranges through the worker are the file's bytes (as the gateway sends them), bad ones refused.
        const same: boolean[] = [];
        for (const range of ["bytes=1000-300000", "bytes=20000000-21500000", "bytes=-5000"]) {
          const [a, b] = await Promise.all([
            fetch(`/verified/${cid}`, { headers: { Range: range } }),
            fetch(`/mesh/${cid}`, { headers: { Range: range } }),
          ]);
          const [x, y] = [
            new Uint8Array(await a.arrayBuffer()),
            new Uint8Array(await b.arrayBuffer()),
          ];
          same.push(
            a.status === 206 && a.headers.get("content-range") === b.headers.get("content-range") &&
              x.length === y.length && x.every((v, i) => v === y[i]),
          );
        }
        const refused = await Promise.all([
          fetch(`/verified/${cid}`, { headers: { Range: "bytes=999999999-" } }),
          fetch("/verified/not-a-cid"),
        ].map(async (p) => {
          const r = await p;
          return `${r.status} ${(await r.json()).error}`;
        }));
        return {
          scope: reg.scope,
          started,
          firstPlayMs,
          sequential,
          playedTo,
          duration,
          resumeMs,
          ticksAfterSeek: ticks.length - afterSeek,
          currentTime: video.currentTime,
          error: video.error ? `${video.error.code} ${video.error.message}` : "",
          fetched,
          beforeSeek,
          same,
          refused,
        };
      }, { cid: made.cid });
      const mib = (n: number) => (n / MiB).toFixed(1);
      console.log(
        `through /sw.js: first frame ${got.firstPlayMs.toFixed(0)} ms, ${got.sequential} ` +
          `timeupdates in 3 s (to ${got.playedTo.toFixed(2)} s of ${got.duration.toFixed(1)}), ` +
          `seek to 75% resumed in ${got.resumeMs.toFixed(0)} ms; before the seek the worker had ` +
          `fetched ${mib(got.beforeSeek.bytes)} MiB (asked up to ${
            mib(got.beforeSeek.furthest)
          } MiB), ` +
          `in all ${mib(got.fetched.bytes)} MiB in ${got.fetched.windows} windows ` +
          `(${got.fetched.aborted} dropped unfinished)`,
      );
      assert.deepEqual(errors, []);
      assert.equal(got.error, "");
      assert.ok(got.started, "playback started");
      assert.ok(Math.abs(got.duration - made.durationMs / 1000) < 0.5, `duration ${got.duration}`);
      assert.ok(got.sequential >= 6, `${got.sequential} timeupdates in 3 s of playback`);
      assert.ok(got.playedTo >= 1.5, `played to ${got.playedTo} s in 3 s`);
      assert.ok(got.resumeMs >= 0 && got.resumeMs <= 1000, `resumed after ${got.resumeMs} ms`);
      assert.ok(got.ticksAfterSeek >= 2, "timeupdate goes on after the seek");
      // The seek went where the worker had asked for nothing yet: it did not wait for the file to arrive.
      assert.ok(
        got.beforeSeek.furthest < made.size * 0.7,
        `before the seek the worker had asked up to byte ${got.beforeSeek.furthest} of ${made.size}`,
      );
      assert.deepEqual(
        got.same,
        [true, true, true],
        "ranges through the worker are the file's bytes",
      );
      assert.deepEqual(got.refused, ["416 range_not_satisfiable", "400 invalid_cid"]);
      assert.equal(await metric(g.url, "mesh_store_chunks"), 0, "the gateway still holds none");
    } finally {
      await browser?.close();
      await g?.stop();
      await cluster.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
