/**
 * verifiedFetch in Deno against real gateways: whole files and ranges byte-identical; a lying operator (bad
 * bytes under its own signature) is proven, reported to the other gateway and left, the file rebuilt from
 * parity; a tampering network switches gateways but accuses nobody; lying manifests and oversize blocks fail
 * with clear errors, without reading past the limit.
 */
import assert from "node:assert/strict";
import { cidOf, DAG_JSON_CODE } from "../../src/content/cid.ts";
import { encodeManifest } from "../../src/content/manifest.ts";
import { MAX_CHUNK_SIZE } from "../../src/content/chunker.ts";
import { verifiedFetch, type VerifiedFetchEvent } from "../../src/mod.ts";
import {
  DELIVERY_HEADER,
  parseDeliveryHeader,
  verifyDeliveryWeb,
} from "../../src/mesh/delivery_format.ts";
import { signedHashMatches, verifyDelivery } from "../../src/reputation/evidence.ts";
import { content, flipped, flippedFile, startGateway, startProxy, upload } from "./_fixture.ts";

const CHUNK = 64 * 1024;
/** 3 stripes of 4 + 2: 10.5 chunks of data. */
const SIZE = 10 * CHUNK + CHUNK / 2;
const options = { sanitizeOps: false, sanitizeResources: false };

async function setup() {
  const a = await startGateway();
  const b = await startGateway();
  const bytes = content(7, SIZE);
  const file = await upload([a.url, b.url], bytes, { k: 4, m: 2, chunkSize: CHUNK });
  return {
    a,
    b,
    bytes,
    ...file,
    async stop() {
      await a.stop();
      await b.stop();
    },
  };
}

Deno.test({
  ...options,
  name:
    "verifiedFetch: whole file and ranges byte-identical; raw answers are signed, CORS-readable",
  async fn() {
    const t = await setup();
    try {
      const res = await verifiedFetch(t.cid, { gateway: t.a.url });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-length"), String(SIZE));
      assert.equal(
        res.headers.get("content-disposition"),
        `inline; filename="data.bin"`,
        "the manifest's name",
      );
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), t.bytes);

      for (
        const [range, from, to] of [
          [{ start: CHUNK - 10, end: 3 * CHUNK + 5 }, CHUNK - 10, 3 * CHUNK + 5],
          ["bytes=-100", SIZE - 100, SIZE],
          ["bytes=600000-", 600000, SIZE],
          [{ start: 5, end: 6 }, 5, 6],
        ] as const
      ) {
        const r = await verifiedFetch(`${t.a.url}/mesh/${t.cid}`, { range });
        assert.equal(r.status, 206);
        assert.equal(r.headers.get("content-range"), `bytes ${from}-${to - 1}/${SIZE}`);
        assert.deepEqual(new Uint8Array(await r.arrayBuffer()), t.bytes.slice(from, to));
      }
      await assert.rejects(
        verifiedFetch(t.cid, { gateway: t.a.url, range: { start: SIZE } }),
        { code: "range_not_satisfiable" },
      );

      const raw = await fetch(`${t.a.url}/mesh/${t.manifest.stripes[0]![0]}?format=raw`);
      assert.equal(raw.headers.get("access-control-allow-origin"), "*");
      assert.match(raw.headers.get("access-control-expose-headers")!, /Meshgate-Delivery/);
      const d = parseDeliveryHeader(raw.headers.get(DELIVERY_HEADER));
      assert.equal(d?.peer, t.a.peerId);
      // The node's signature of what it sent, as evidence.ts checks it: here an honest delivery.
      const first = t.manifest.stripes[0]![0]!;
      await verifyDelivery(d!.peer, first, d);
      assert.ok(signedHashMatches(first, d!));
      assert.equal(await verifyDeliveryWeb(d!.peer, first, d!), true);
      assert.equal(await verifyDeliveryWeb(t.b.peerId, first, d!), false, "not B's signature");
      await raw.body?.cancel();
    } finally {
      await t.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "verifiedFetch: a lying operator is proven, reported and left; the file is rebuilt from parity",
  async fn() {
    const t = await setup();
    // Stripe 1's second data chunk: its answer flipped and signed with A's own key.
    const bad = t.manifest.stripes[1]![1]!.toString();
    const proxy = await startProxy(
      t.a.url,
      (cid, res) => cid.toString() === bad ? flipped(res, cid, t.a.key) : undefined,
      (cid, res) => cid.toString() === t.cid ? flippedFile(res, t.manifest, [4 + 1]) : undefined,
    );
    try {
      const events: VerifiedFetchEvent[] = [];
      const reported = Promise.withResolvers<void>();
      const res = await verifiedFetch(t.cid, {
        gateway: [proxy.url, t.b.url],
        onEvent: (e) => (events.push(e), e.type === "reported" && reported.resolve()),
      });
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), t.bytes);
      await reported.promise;
      const of = (type: string) => events.filter((e) => e.type === type);
      assert.deepEqual(of("bad_block"), [{
        type: "bad_block",
        gateway: proxy.url,
        cid: bad,
        reason: "bytes do not match the CID",
        provable: true,
      }]);
      assert.deepEqual(of("switched"), [{ type: "switched", from: proxy.url, to: t.b.url }]);
      assert.ok(of("rebuilt").some((e) => e.type === "rebuilt" && e.cid === bad), "from parity");
      const [report] = of("reported") as Extract<VerifiedFetchEvent, { type: "reported" }>[];
      assert.equal(report!.to, t.b.url);
      assert.equal(report!.status, 200, JSON.stringify(report!.answer));
      assert.equal(report!.peer, t.a.peerId);
      const op = await (await fetch(`${t.b.url}/api/operators/${t.a.peerId}`)).json();
      assert.equal(op.state, "excluded");
      assert.equal(op.evidence.cid, bad);
      assert.equal(proxy.asked.get(bad), 1, "the bad block is not asked of the liar again");
    } finally {
      await proxy.stop();
      await t.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "verifiedFetch: bytes changed on the way (the honest signature kept) switch gateways, accuse nobody",
  async fn() {
    const t = await setup();
    const bad = new Set([t.manifest.stripes[0]![2]!.toString()]);
    const proxy = await startProxy(
      t.a.url,
      (cid, res) => bad.has(cid.toString()) ? flipped(res, cid) : undefined,
      (cid, res) => cid.toString() === t.cid ? flippedFile(res, t.manifest, [2]) : undefined,
    );
    try {
      const events: VerifiedFetchEvent[] = [];
      const res = await verifiedFetch(t.cid, {
        gateway: [proxy.url, t.b.url],
        onEvent: (e) => events.push(e),
      });
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), t.bytes);
      const badBlocks = events.filter((e) => e.type === "bad_block");
      assert.equal(badBlocks.length, 1);
      assert.equal((badBlocks[0] as { provable: boolean }).provable, false);
      assert.ok(events.some((e) => e.type === "switched"));
      assert.ok(!events.some((e) => e.type === "reported"));
      const { operators } = await (await fetch(`${t.b.url}/api/operators`)).json();
      assert.deepEqual(operators, []);
    } finally {
      await proxy.stop();
      await t.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "verifiedFetch: a manifest that lies about sizes, an oversize manifest or block: clear errors",
  async fn() {
    const t = await setup();
    // A manifest over real chunks whose size claims 100 more bytes: the last chunk then has the wrong length.
    const liar = { ...t.manifest, size: t.manifest.size + 100 };
    const liarBytes = encodeManifest(liar);
    const liarCid = cidOf(liarBytes, DAG_JSON_CODE).toString();
    // One chunk's file claiming to be shorter than it is.
    const one = t.manifest.stripes[0]![0]!;
    const shortBytes = encodeManifest({
      name: "",
      type: "application/octet-stream",
      size: 1000,
      chunkSize: CHUNK,
      k: 1,
      m: 0,
      stripes: [[one]],
    });
    const shortCid = cidOf(shortBytes, DAG_JSON_CODE).toString();
    let endless = 0;
    const oversize = new Set<string>();
    const endlessBody = () =>
      new ReadableStream({
        pull(c) {
          endless += 64 * 1024;
          c.enqueue(new Uint8Array(64 * 1024));
        },
      });
    const proxy = await startProxy(t.a.url, async (cid, res) => {
      const key = cid.toString();
      if (key === liarCid || key === shortCid) {
        await res.body?.cancel();
        return new Response((key === liarCid ? liarBytes : shortBytes) as Uint8Array<ArrayBuffer>);
      }
      if (!oversize.has(key)) return undefined;
      await res.body?.cancel();
      // No length announced, and no end: the reader must stop on its own.
      return new Response(endlessBody());
    }, async (_cid, res) => {
      if (oversize.size === 0) return undefined;
      await res.body?.cancel();
      return new Response(endlessBody(), { status: res.status, headers: res.headers });
    });
    try {
      // The lie is in the last chunk: the answer starts, then its body errors before any wrong byte.
      const res = await verifiedFetch(liarCid, { gateway: proxy.url });
      const reader = res.body!.getReader();
      let got = 0;
      const err = await (async () => {
        try {
          while (true) {
            const { value, done } = await reader.read();
            if (done) return undefined;
            assert.deepEqual(value, t.bytes.subarray(got, got + value.length));
            got += value.length;
          }
        } catch (e) {
          return e as { code?: string; message: string };
        }
      })();
      assert.equal(err?.code, "manifest_mismatch", String(err?.message));
      assert.match(err!.message, /declares .* as 32868 bytes, but that chunk is 32768 bytes/);
      assert.ok(got <= 10 * CHUNK, `only the chunks before the lie were handed over (${got})`);

      await assert.rejects(verifiedFetch(shortCid, { gateway: proxy.url }), {
        code: "manifest_mismatch",
        message: /as 1000 bytes, but that chunk is 65536 bytes/,
      });

      // Every block of stripe 0 answered with an endless body: refused at the limit, and the stripe lost.
      for (const c of t.manifest.stripes[0]!) oversize.add(c.toString());
      await assert.rejects(verifiedFetch(t.cid, { gateway: proxy.url }), (e: Error) => {
        assert.equal((e as { code?: string }).code, "unrecoverable");
        assert.match(e.message, /Stripe 0 cannot be rebuilt/);
        assert.match(
          e.message,
          new RegExp(`more than ${MAX_CHUNK_SIZE} bytes for block .* over the limit`),
        );
        return true;
      });
      // The bodies have no end: that the call returned at all shows each was left at the limit.
      assert.ok(endless > MAX_CHUNK_SIZE);

      // A manifest (not fetched before: verified manifests are kept) with an endless body.
      const other = cidOf(encodeManifest({ ...t.manifest, name: "other" }), DAG_JSON_CODE);
      oversize.add(other.toString());
      await assert.rejects(verifiedFetch(other.toString(), { gateway: proxy.url }), {
        code: "unrecoverable",
        message: /No gateway gave .*over the limit of a block/,
      });
    } finally {
      await proxy.stop();
      await t.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "verifiedFetch: a whole file is one ranged GET, read no further than a bound ahead of a reader that waits",
  async fn() {
    const a = await startGateway();
    try {
      const chunk = 1024 * 1024;
      // 64 MiB: well past the 8 MiB read ahead and what Deno's fetch and the sockets buffer (~14 MiB here).
      const size = 64 * chunk;
      const bytes = content(3, size);
      const { cid } = await upload([a.url], bytes, { k: 8, m: 2, chunkSize: chunk });
      const ranges: string[] = [];
      let sent = 0;
      const proxy = await startProxy(a.url, () => undefined, (_c, res, req) => {
        ranges.push(req.headers.get("range") ?? "");
        const counted = res.body!.pipeThrough(
          new TransformStream({ transform: (b, ctl) => (sent += b.length, ctl.enqueue(b)) }),
          // No buffering of our own: what passes is what the reader pulled (plus the sockets' buffers).
        );
        return new Response(counted, { status: res.status, headers: res.headers });
      });
      const res = await verifiedFetch(cid, { gateway: proxy.url, prefetch: 1 });
      const reader = res.body!.getReader();
      try {
        await reader.read();
        await new Promise((r) => setTimeout(r, 500));
        // 8 MiB ahead of the reader, plus socket buffers; far from all 32 MiB.
        assert.ok(sent < size / 2, `sent ${sent} of ${size} to a reader that waits`);
        let got = (await reader.read()).value!.length + chunk;
        while (true) {
          const { value, done } = await reader.read();
          if (done) break;
          got += value.length;
        }
        assert.equal(got, size);
        assert.deepEqual(ranges, [`bytes=0-${size - 1}`]);
      } finally {
        await reader.cancel().catch(() => {}); // the proxy's shutdown waits for its answers to end
        await proxy.stop();
      }
    } finally {
      await a.stop();
    }
  },
});
