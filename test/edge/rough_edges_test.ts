/** Issue 8, finding 9: the gateway's rough edges, each pinned by a test. */
import assert from "node:assert/strict";
import { MeshgateNode } from "../../src/node.ts";
import { createGateway, type Gateway } from "../../edge/app.ts";
import { buildUi, sourcesStamp, staleFiles } from "../../edge/ui/build.ts";
import { formatBytes } from "../../src/units.ts";

async function withGateway(fn: (gw: Gateway, node: MeshgateNode) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-rough-" });
  const node = await MeshgateNode.create({ dataDir: dir, cacheBytes: 0 });
  try {
    await fn(createGateway(node, { maxUploadBytes: 1 << 20 }), node);
  } finally {
    await node.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

const base = "http://gw.test";
const FORM = "application/x-www-form-urlencoded"; // what `curl --data-binary @file` sends

Deno.test("an upload typed as a form (curl's default) is stored with the name's type, else octet-stream", () =>
  withGateway(async (gw) => {
    const post = async (query: string, type?: string) => {
      const res = await gw.app.request(`${base}/mesh${query}`, {
        method: "POST",
        body: new TextEncoder().encode("some notes\n"), // bytes: no type of their own
        headers: type ? { "Content-Type": type } : {},
      });
      assert.equal(res.status, 201);
      const { cid, type: stored } = await res.json();
      const head = await gw.app.request(`${base}/mesh/${cid}`, { method: "HEAD" });
      assert.equal(head.headers.get("content-type"), stored);
      return stored;
    };
    assert.equal(await post("?name=notes.txt", FORM), "text/plain; charset=utf-8");
    assert.equal(await post("?name=clip.MP4", `${FORM}; charset=utf-8`), "video/mp4");
    assert.equal(await post("?name=notes.txt"), "text/plain; charset=utf-8");
    assert.equal(await post("", FORM), "application/octet-stream");
    assert.equal(await post("?name=data.unknownext", FORM), "application/octet-stream");
    assert.equal(
      await post("?name=raw", "multipart/form-data; boundary=x"),
      "application/octet-stream",
    );
    // A type the client really chose wins over the extension, kept with its charset (only).
    assert.equal(await post("?name=notes.txt", "text/markdown"), "text/markdown");
    assert.equal(
      await post("?name=notes.txt", "text/plain; charset=utf-8"),
      await post("?name=notes.txt"),
    );
    assert.equal(await post("?name=notes.txt", "text/plain"), "text/plain; charset=utf-8"); // a browser
    assert.equal(await post("", 'Text/Plain; Charset="UTF-8"'), "text/plain; charset=utf-8");
    assert.equal(await post("", "text/plain; format=flowed"), "text/plain");
    assert.equal(await post("", "text/plain; charset=<script>"), "text/plain");
  }));

Deno.test("an empty POST is refused with 400 and pins nothing", () =>
  withGateway(async (gw, node) => {
    const empty = await gw.app.request(`${base}/mesh?name=empty.txt`, { method: "POST" });
    assert.equal(empty.status, 400);
    const body = await empty.json();
    assert.equal(body.error, "empty_upload");
    assert.match(body.message, /empty/);
    // Also when the length is not declared up front: a stream that ends before its first byte.
    const streamed = await gw.app.request(`${base}/mesh?name=x`, {
      method: "POST",
      body: new ReadableStream({ start: (c) => (c.enqueue(new Uint8Array(0)), c.close()) }),
    });
    assert.equal(streamed.status, 400);
    assert.equal((await streamed.json()).error, "empty_upload");
    assert.deepEqual([...node.store.pins()], []);
    assert.deepEqual((await (await gw.app.request(`${base}/api/files`)).json()).files, []);
    // One byte is a file.
    const one = await gw.app.request(`${base}/mesh`, { method: "POST", body: "x" });
    assert.equal(one.status, 201);
    assert.equal((await one.json()).size, 1);
  }));

Deno.test("/favicon.ico is a real icon, and the page's files come from edge/ui/dist", () =>
  withGateway(async (gw) => {
    const icon = await gw.app.request(`${base}/favicon.ico`);
    assert.equal(icon.status, 200);
    assert.equal(icon.headers.get("content-type"), "image/x-icon");
    const bytes = new Uint8Array(await icon.arrayBuffer());
    assert.deepEqual([...bytes.slice(0, 4)], [0, 0, 1, 0], "ICO header");
    const page = await gw.app.request(`${base}/`);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    const html = await page.text();
    for (const [path, type] of [["/ui/app.js", /javascript/], ["/ui/style.css", /css/]] as const) {
      assert.ok(html.includes(path), path);
      const res = await gw.app.request(`${base}${path}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type")!, type);
      const etag = res.headers.get("etag")!;
      await res.body?.cancel();
      const again = await gw.app.request(`${base}${path}`, { headers: { "If-None-Match": etag } });
      assert.equal(again.status, 304);
    }
  }));

Deno.test("counters that only grow are Prometheus counters named _total", () =>
  withGateway(async (gw) => {
    const text = await (await gw.app.request(`${base}/metrics`)).text();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    for (
      const name of [
        "mesh_chunks_repaired_total",
        "mesh_chunks_fetched_total",
        "mesh_chunks_placed_total",
        "mesh_peer_misbehaviour_total",
        "mesh_store_corrupt_chunks_total",
      ]
    ) {
      assert.equal(types.get(name), "counter", name);
      assert.match(text, new RegExp(`^${name} 0$`, "m"));
    }
    for (const [name, type] of types) {
      if (type === "counter") assert.match(name!, /_total$/, `${name} is a counter`);
      if (name!.endsWith("_total")) assert.equal(type, "counter", `${name} is named like one`);
    }
  }));

Deno.test("limits read as people write them", async () => {
  assert.equal(formatBytes(1024 ** 3), "1 GiB");
  assert.equal(formatBytes(10 * 1024 ** 3), "10 GiB");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(700), "700 B");
  await withGateway(async (gw) => {
    const res = await gw.app.request(`${base}/mesh`, {
      method: "POST",
      body: new Uint8Array(2 << 20),
    });
    assert.equal(res.status, 413);
    assert.match((await res.json()).message, /exceeds the 1 MiB limit/);
  });
});

Deno.test("edge/ui/dist is what the sources build to, byte for byte", async () => {
  const stamp = await Deno.readTextFile(new URL("../../edge/ui/dist/SOURCES", import.meta.url));
  assert.equal(stamp, await sourcesStamp(), "a source changed: run deno task build:ui");
  assert.deepEqual(await staleFiles(await buildUi()), [], "run deno task build:ui");
});

Deno.test("the page's amounts tell small prices apart: wei, then gwei, then ETH", async () => {
  const { ether } = await import("../../edge/ui/pay.ts");
  assert.deepEqual(
    ["0", "5", "100", "1000000000", "1500000000", "1000000000000", "20000000000000000", "-5", "x"]
      .map(ether),
    ["0 ETH", "5 wei", "100 wei", "1 gwei", "1.5 gwei", "0.000001 ETH", "0.02 ETH", "-5 wei", "?"],
  );
});
