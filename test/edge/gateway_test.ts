import assert from "node:assert/strict";
import { type CID, cidOf, parseCid } from "../../src/content/cid.ts";
import { MeshgateNode } from "../../src/node.ts";
import { createGateway, type Gateway } from "../../edge/app.ts";
import { pattern } from "../_util.ts";

async function withGateway(
  fn: (gw: Gateway, node: MeshgateNode, dir: string) => Promise<void>,
  options = { maxUploadBytes: 1 << 20 },
) {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-gw-" });
  const node = await MeshgateNode.create({ dataDir: dir, cacheBytes: 0 });
  try {
    await fn(createGateway(node, options), node, dir);
  } finally {
    await node.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

const base = "http://gw.test";
const body = pattern(0, 300_000);

async function upload(
  gw: Gateway,
  bytes = body,
  query = "name=clip%20%C3%A9t%C3%A9.mp4&chunkSize=65536",
) {
  const res = await gw.app.request(`${base}/mesh?${query}`, {
    method: "POST",
    body: bytes,
    headers: { "Content-Type": "video/mp4" },
  });
  assert.equal(res.status, 201, await res.clone().text());
  return res;
}

Deno.test("POST /mesh stores a file and answers 201 with its CID, URL and Location", () =>
  withGateway(async (gw, node) => {
    const res = await upload(gw);
    const json = await res.json();
    assert.match(json.cid, /^bagu/);
    assert.equal(res.headers.get("location"), `/mesh/${json.cid}`);
    assert.equal(json.url, `${base}/mesh/${json.cid}`);
    assert.equal(json.size, body.length);
    assert.equal(json.name, "clip été.mp4");
    assert.equal(json.type, "video/mp4");
    assert.deepEqual([json.k, json.m, json.chunkSize], [20, 4, 65536]);
    assert.deepEqual(node.store.pins().map(String), [json.cid]);
  }));

Deno.test("GET /mesh/<cid> serves the whole file with immutable caching and CID ETag", () =>
  withGateway(async (gw) => {
    const { cid } = await (await upload(gw)).json();
    for (const prefix of ["/mesh/", "/ipfs/"]) {
      const res = await gw.app.request(`${base}${prefix}${cid}`);
      assert.equal(res.status, 200);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), body);
      const h = res.headers;
      assert.equal(h.get("etag"), `"${cid}"`);
      assert.equal(h.get("cache-control"), "public, max-age=29030400, immutable");
      assert.equal(h.get("accept-ranges"), "bytes");
      assert.equal(h.get("content-type"), "video/mp4");
      assert.equal(h.get("content-length"), String(body.length));
      assert.equal(
        h.get("content-disposition"),
        `inline; filename="clip _t_.mp4"; filename*=UTF-8''clip%20%C3%A9t%C3%A9.mp4`,
      );
    }
    const head = await gw.app.request(`${base}/mesh/${cid}`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(body.length));
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  }));

Deno.test("GET with Range answers 206, 416 or the whole file as the header deserves", () =>
  withGateway(async (gw) => {
    const { cid } = await (await upload(gw)).json();
    const size = body.length;
    const get = (range: string) =>
      gw.app.request(`${base}/mesh/${cid}`, { headers: { Range: range } });
    const partial: [string, number, number][] = [
      ["bytes=0-0", 0, 1],
      ["bytes=100-199", 100, 200],
      ["bytes=65530-65545", 65530, 65546], // across a chunk edge
      ["bytes=299990-", 299990, size],
      ["bytes=-10", size - 10, size],
      ["bytes=-999999999", 0, size],
      ["bytes=5-999999999", 5, size],
    ];
    for (const [range, start, end] of partial) {
      const res = await get(range);
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get("content-range"), `bytes ${start}-${end - 1}/${size}`, range);
      assert.equal(res.headers.get("content-length"), String(end - start));
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), body.slice(start, end), range);
    }
    for (const range of [`bytes=${size}-`, "bytes=999999999-1000000000", "bytes=-0"]) {
      const res = await get(range);
      assert.equal(res.status, 416, range);
      assert.equal(res.headers.get("content-range"), `bytes */${size}`);
      assert.equal((await res.json()).error, "range_not_satisfiable");
    }
    for (const range of ["bytes=0-1,5-6", "items=0-5", "bytes=abc", "bytes=10-5", "bytes="]) {
      const res = await get(range);
      assert.equal(res.status, 200, range);
      assert.equal((await res.arrayBuffer()).byteLength, size);
    }
  }));

Deno.test("If-None-Match with the CID ETag answers 304 with caching headers and no body", () =>
  withGateway(async (gw) => {
    const { cid } = await (await upload(gw)).json();
    for (const tag of [`"${cid}"`, `W/"${cid}"`, `"other", "${cid}"`, "*"]) {
      const res = await gw.app.request(`${base}/mesh/${cid}`, {
        headers: { "If-None-Match": tag },
      });
      assert.equal(res.status, 304, tag);
      assert.equal(res.headers.get("etag"), `"${cid}"`);
      assert.equal(res.headers.get("cache-control"), "public, max-age=29030400, immutable");
      assert.equal(await res.text(), "");
    }
    const miss = await gw.app.request(`${base}/mesh/${cid}`, {
      headers: { "If-None-Match": '"nope"' },
    });
    assert.equal(miss.status, 200);
    await miss.body?.cancel();
  }));

Deno.test("format=raw and Accept: application/vnd.ipld.raw serve one verifiable block", () =>
  withGateway(async (gw) => {
    const { cid } = await (await upload(gw)).json();
    const res = await gw.app.request(`${base}/mesh/${cid}?format=raw`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/vnd.ipld.raw");
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.equal(res.headers.get("etag"), `"${cid}.raw"`);
    assert.equal(res.headers.get("content-disposition"), `attachment; filename="${cid}.bin"`);
    const manifest = JSON.parse(await res.text());
    assert.equal(manifest.size, body.length);
    const chunk = manifest.stripes[0][0]["/"];

    const byAccept = await gw.app.request(`${base}/ipfs/${chunk}`, {
      headers: { Accept: "application/vnd.ipld.raw" },
    });
    assert.equal(byAccept.headers.get("content-location"), `/ipfs/${chunk}?format=raw`);
    assert.equal(byAccept.headers.get("vary"), "Accept");
    const block = new Uint8Array(await byAccept.arrayBuffer());
    assert.equal(cidOf(block).toString(), chunk);
    assert.deepEqual(block, body.slice(0, 65536));

    // A raw chunk CID without format=raw is served as plain bytes, Range included.
    const plain = await gw.app.request(`${base}/mesh/${chunk}`, {
      headers: { Range: "bytes=1-2" },
    });
    assert.equal(plain.status, 206);
    assert.deepEqual(new Uint8Array(await plain.arrayBuffer()), body.slice(1, 3));

    assert.equal((await gw.app.request(`${base}/mesh/${cid}?format=car`)).status, 406);
    const unknown = await gw.app.request(`${base}/mesh/${cid}?format=tar`);
    assert.equal(unknown.status, 400);
    assert.match((await unknown.json()).message, /Unknown format "tar"/);
  }));

Deno.test("bad and unknown CIDs get 400 and 404 with JSON bodies", () =>
  withGateway(async (gw) => {
    const bad = await gw.app.request(`${base}/mesh/not-a-cid`);
    assert.equal(bad.status, 400);
    assert.deepEqual(Object.keys(await bad.json()), ["error", "message"]);
    const v0 = await gw.app.request(`${base}/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG`);
    assert.equal((await v0.json()).error, "invalid_cid");
    const unknown = cidOf(new Uint8Array([9, 9, 9]));
    const missing = await gw.app.request(`${base}/mesh/${unknown}`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error, "not_found");
    assert.equal((await gw.app.request(`${base}/mesh/${unknown}?format=raw`)).status, 404);
    assert.equal((await gw.app.request(`${base}/nowhere`)).status, 404);
    // A content route asked with a method it does not take: 405 and the methods it does.
    const put = await gw.app.request(`${base}/mesh`, { method: "PUT", body: "x" });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get("allow"), "POST");
    assert.equal((await put.json()).error, "method_not_allowed");
    const del = await gw.app.request(`${base}/mesh/${unknown}`, { method: "DELETE" });
    assert.equal(del.status, 405);
    assert.equal(del.headers.get("allow"), "GET, HEAD");
    await del.body?.cancel();
  }));

Deno.test("uploads past the limit get 413 and leave no chunks behind", () =>
  withGateway(async (gw, node) => {
    const big = pattern(0, (1 << 20) + 1);
    const declared = await gw.app.request(`${base}/mesh`, { method: "POST", body: big });
    assert.equal(declared.status, 413);
    assert.equal((await declared.json()).error, "too_large");
    // Streamed without Content-Length: refused mid-stream, and what was written is removed.
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < 5; i++) c.enqueue(pattern(i * 300_000, 300_000));
        c.close();
      },
    });
    const streamed = await gw.app.request(`${base}/mesh?chunkSize=65536`, {
      method: "POST",
      body: stream,
    });
    assert.equal(streamed.status, 413);
    assert.equal(node.store.stats().chunks, 0);
    assert.equal(node.store.pins().length, 0);
  }));

Deno.test("an interrupted upload answers 400 and keeps nothing; bad stripe parameters answer 400", () =>
  withGateway(async (gw, node) => {
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(pattern(0, 200_000));
        c.error(new Error("client went away"));
      },
    });
    const res = await gw.app.request(`${base}/mesh?chunkSize=65536`, {
      method: "POST",
      body: stream,
    });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error, "upload_failed");
    assert.equal(node.store.stats().chunks, 0);
    for (const q of ["k=0", "k=200&m=100", "k=abc", "m=-1", "chunkSize=2097152"]) {
      const bad = await gw.app.request(`${base}/mesh?${q}`, { method: "POST", body: "x" });
      assert.equal(bad.status, 400, q);
    }
  }));

Deno.test("a lost and a corrupted chunk are rebuilt on read and written back to the store", () =>
  withGateway(async (gw, node, dir) => {
    const { cid } = await (await upload(gw, body, "chunkSize=65536&k=3&m=2")).json();
    const manifest = await node.manifest(parseCid(cid));
    const [lost, damaged] = manifest.stripes[0]!;
    const path = (c: CID) => `${dir}/chunks/${c.toString().slice(-2)}/${c}`;
    await Deno.remove(path(lost!));
    await Deno.writeFile(path(damaged!), new Uint8Array(10));
    const res = await gw.app.request(`${base}/mesh/${cid}`);
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), body);
    assert.equal(node.stats().repaired, 2);
    assert.equal(node.store.stats().corrupt, 1);
    for (
      let i = 0;
      i < 100 && !(await node.store.has(lost!) && await node.store.has(damaged!));
      i++
    ) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(await node.store.get(lost!), body.slice(0, 65536));
    assert.deepEqual(await node.store.get(damaged!), body.slice(65536, 2 * 65536));
  }));

Deno.test("/livez, /readyz and /metrics report health and Prometheus series", () =>
  withGateway(async (gw) => {
    assert.equal(await (await gw.app.request(`${base}/livez`)).text(), "ok");
    assert.equal((await gw.app.request(`${base}/readyz`)).status, 200);
    const { cid } = await (await upload(gw)).json();
    await (await gw.app.request(`${base}/mesh/${cid}`)).arrayBuffer();
    await (await gw.app.request(`${base}/mesh/bad`)).arrayBuffer();
    const res = await gw.app.request(`${base}/metrics`);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    assert.match(text, new RegExp(`^mesh_bytes_served_total ${body.length}$`, "m"));
    assert.match(
      text,
      /^mesh_http_requests_total\{method="GET",route="\/mesh\/:cid",status="400"\} 1$/m,
    );
    assert.match(text, /^mesh_http_request_duration_seconds_count\{route="\/mesh"\} 1$/m);
    assert.match(text, /^mesh_store_chunks \d+$/m);
    assert.match(text, /^mesh_store_bytes \d+$/m);
    assert.match(text, /^mesh_build_info\{version="[\d.]+"\} 1$/m);
    assert.ok(!text.includes(cid), "no CID in labels");
    gw.ready = false;
    assert.equal((await gw.app.request(`${base}/readyz`)).status, 503);
  }));

Deno.test("?prefer= takes balanced, reliable, fast or cheap on GET and POST; anything else is 400 and stores nothing", () =>
  withGateway(async (gw, node) => {
    const { cid } = await (await upload(gw, body, "name=a.bin&prefer=reliable")).json();
    for (const p of ["balanced", "reliable", "fast", "cheap"]) {
      const res = await gw.app.request(`${base}/mesh/${cid}?prefer=${p}`);
      assert.equal(res.status, 200, p);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), body);
    }
    const bad = await gw.app.request(`${base}/mesh/${cid}?prefer=cheapest`);
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).message, /"prefer" is one of balanced, reliable, fast, cheap/);
    const put = await gw.app.request(`${base}/mesh?name=b.bin&prefer=nope`, {
      method: "POST",
      body: pattern(1, 1000),
    });
    assert.equal(put.status, 400);
    await put.body?.cancel();
    assert.equal(node.store.pins().length, 1, "the refused upload pinned nothing");
  }));
