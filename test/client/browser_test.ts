/**
 * verifiedFetch in headless Chromium, from the bundle a gateway serves: through a proxy that flips a bit in
 * two chunks wherever they are sent (raw block answers, signed with the operator's key as a lying operator
 * would, and the file's ranged answers), the page
 * gets byte-identical content rebuilt from parity, never a wrong byte, and the bad gateway is reported to
 * the other one with a proof it accepts (its /api/operators shows the exclusion). A manifest that lies
 * about sizes fails in the page with its clear error.
 */
import assert from "node:assert/strict";
import type { Browser } from "playwright-core";
import { browserTest, launchChromium } from "../_browser.ts";
import { cidOf, DAG_JSON_CODE } from "../../src/content/cid.ts";
import { encodeManifest } from "../../src/content/manifest.ts";
import { checkFraudProof } from "../../src/reputation/evidence.ts";
import {
  byteAt,
  content,
  flipped,
  flippedFile,
  startGateway,
  startProxy,
  upload,
} from "./_fixture.ts";

const CHUNK = 256 * 1024;
const SIZE = 4 * 1024 * 1024 + 12345;
const SEED = 11;

Deno.test({
  ...browserTest,
  sanitizeOps: false,
  sanitizeResources: false,
  name:
    "Chromium: verifiedFetch through a bit-flipping proxy rebuilds from parity and reports the liar",
  async fn() {
    const a = await startGateway();
    const b = await startGateway();
    let browser: Browser | undefined;
    try {
      const { cid, manifest } = await upload([a.url, b.url], content(SEED, SIZE), {
        k: 4,
        m: 2,
        chunkSize: CHUNK,
      });
      // Data chunks of stripes 1 and 2 come back with a bit flipped, signed with A's key.
      const bad = new Set([manifest.stripes[1]![1]!, manifest.stripes[2]![0]!].map(String));
      const liar = encodeManifest({ ...manifest, size: manifest.size - 1 });
      const liarCid = cidOf(liar, DAG_JSON_CODE).toString();
      // Later, every block of the last stripe answered with a body that never ends.
      const endless = new Set<string>();
      const proxy = await startProxy(a.url, async (c, res) => {
        if (endless.has(c.toString())) {
          await res.body?.cancel();
          const body = new ReadableStream({ pull: (ctl) => ctl.enqueue(new Uint8Array(65536)) });
          return new Response(body, { headers: { "Access-Control-Allow-Origin": "*" } });
        }
        if (c.toString() === liarCid) {
          await res.body?.cancel();
          return new Response(liar as Uint8Array<ArrayBuffer>, {
            headers: { "Access-Control-Allow-Origin": "*" },
          });
        }
        return bad.has(c.toString()) ? await flipped(res, c, a.key) : undefined;
      }, async (c, res) => {
        if (c.toString() !== cid) return undefined;
        if (endless.size === 0) return await flippedFile(res, manifest, [4 + 1, 8]);
        await res.body?.cancel();
        const body = new ReadableStream({ pull: (ctl) => ctl.enqueue(new Uint8Array(65536)) });
        return new Response(body, { status: res.status, headers: res.headers });
      });
      try {
        browser = await launchChromium();
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on("pageerror", (e) => errors.push(String(e)));
        await page.goto(`${b.url}/livez`);
        const got = await page.evaluate(async ({ b, proxy, cid, liarCid, seed, byteAtSource }) => {
          const byteAt = (0, eval)(`(${byteAtSource})`) as (seed: number, i: number) => number;
          const m = await import(`${b}/meshgate.js`);
          const events: { type: string }[] = [];
          const res: Response = await m.verifiedFetch(cid, {
            gateway: [proxy, b],
            onEvent: (e: { type: string }) => events.push(e),
          });
          const reader = res.body!.getReader();
          let length = 0;
          let wrong = 0;
          while (true) {
            const { value, done } = await reader.read();
            if (done) break;
            for (let i = 0; i < value.length; i++) {
              if (value[i] !== byteAt(seed, length + i)) wrong++;
            }
            length += value.length;
          }
          for (let i = 0; i < 200 && !events.some((e) => e.type === "reported"); i++) {
            await new Promise((r) => setTimeout(r, 50));
          }
          let liar = "";
          try {
            const r: Response = await m.verifiedFetch(liarCid, { gateway: proxy });
            await r.arrayBuffer();
            liar = "no error";
          } catch (e) {
            liar = `${(e as { code?: string }).code}: ${(e as Error).message}`;
          }
          return { status: res.status, length, wrong, events, liar };
        }, {
          b: b.url,
          proxy: proxy.url,
          cid,
          liarCid,
          seed: SEED,
          byteAtSource: byteAt.toString(),
        });
        assert.deepEqual(errors, []);
        assert.equal(got.status, 200);
        assert.equal(got.length, SIZE);
        assert.equal(got.wrong, 0, "no wrong byte reached the page");
        const events = got.events as Record<string, unknown>[];
        const badBlocks = events.filter((e) => e.type === "bad_block");
        assert.ok(badBlocks.length >= 1, JSON.stringify(events));
        for (const e of badBlocks) {
          assert.ok(bad.has(e.cid as string));
          assert.equal(e.provable, true);
          assert.equal(e.gateway, proxy.url);
        }
        assert.ok(
          events.some((e) => e.type === "rebuilt" && bad.has(e.cid as string)),
          "rebuilt from parity",
        );
        assert.ok(events.some((e) => e.type === "switched" && e.to === b.url));
        const reports = events.filter((e) => e.type === "reported");
        assert.equal(reports.length, 1, JSON.stringify(events));
        assert.equal(reports[0]!.status, 200, JSON.stringify(reports[0]));
        assert.equal(reports[0]!.peer, a.peerId);

        const op = await (await fetch(`${b.url}/api/operators/${a.peerId}`)).json();
        assert.equal(op.state, "excluded");
        const proof = await checkFraudProof(op.evidence);
        assert.equal(proof.peer, a.peerId);
        assert.ok(bad.has(proof.cid));
        const { operators } = await (await fetch(`${b.url}/api/operators`)).json();
        assert.ok(
          operators.some((o: { peer: string; state: string }) =>
            o.peer === a.peerId && o.state === "excluded"
          ),
        );

        assert.match(got.liar, /^manifest_mismatch: The manifest disagrees with its chunks/);
        for (const c of manifest.stripes.at(-1)!) endless.add(c.toString());
        // A fresh context: the blocks read so far are in the first one's HTTP cache (immutable).
        const fresh = await (await browser.newContext()).newPage();
        const freshErrors: string[] = [];
        fresh.on("pageerror", (e) => freshErrors.push(String(e)));
        await fresh.goto(`${b.url}/livez`);
        const oversize = await fresh.evaluate(async ({ b, proxy, cid, last }) => {
          const m = await import(`${b}/meshgate.js`);
          try {
            const r: Response = await m.verifiedFetch(cid, {
              gateway: proxy,
              range: `bytes=${last}-`,
            });
            await r.arrayBuffer();
            return "no error";
          } catch (e) {
            return `${(e as { code?: string }).code}: ${(e as Error).message}`;
          }
        }, { b: b.url, proxy: proxy.url, cid, last: (manifest.stripes.length - 1) * 4 * CHUNK });
        assert.match(oversize, /^unrecoverable: .*Stripe 4 cannot be rebuilt/);
        assert.match(
          oversize,
          /sent more than 1048576 bytes for block .*over the limit of a block/,
        );
      } finally {
        await proxy.stop();
      }
    } finally {
      await browser?.close();
      await a.stop();
      await b.stop();
    }
  },
});
