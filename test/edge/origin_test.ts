/**
 * User content cannot attack the gateway: script-capable content is sandboxed on the node's own origin,
 * each CID has an origin of its own on the subdomain gateway, errors are never cached, and writes are the
 * operator's (token beyond loopback, no cross-site writes on it).
 */
import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import { MeshgateNode } from "../../src/node.ts";
import { createGateway, type Gateway, type GatewayOptions } from "../../edge/app.ts";
import { loadApiToken } from "../../edge/auth.ts";
import { pattern } from "../_util.ts";

async function withGateway(
  fn: (gw: Gateway, node: MeshgateNode, dir: string) => Promise<void>,
  options: GatewayOptions = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-origin-" });
  const node = await MeshgateNode.create({ dataDir: dir, cacheBytes: 0, parityWorkers: 0 });
  try {
    await fn(createGateway(node, options), node, dir);
  } finally {
    await node.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The gateway on a real socket at 127.0.0.1. */
async function withServer(
  fn: (url: string, gw: Gateway, node: MeshgateNode, dir: string) => Promise<void>,
  options: GatewayOptions = {},
) {
  await withGateway(async (gw, node, dir) => {
    const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: resolve },
      gw.app.fetch,
    );
    try {
      const addr = await promise;
      await fn(`http://127.0.0.1:${addr.port}`, gw, node, dir);
    } finally {
      await server.shutdown();
    }
  }, options);
}

const base = "http://127.0.0.1:8080";

/** Byte equality without node:assert's diff, which takes minutes and gigabytes on large arrays. */
function assertBytes(got: Uint8Array, want: Uint8Array) {
  assert.ok(
    got.length === want.length && got.every((b, i) => b === want[i]),
    `got ${got.length} bytes, want ${want.length} (or they differ)`,
  );
}

/** Sends `request` as written on a fresh connection; returns the whole answer. */
async function rawRequest(url: string, request: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
  await conn.write(new TextEncoder().encode(request));
  let answer = "";
  for await (const piece of conn.readable.pipeThrough(new TextDecoderStream())) answer += piece;
  return answer;
}

async function put(gw: Gateway, bytes: Uint8Array<ArrayBuffer> | string, type: string, name = "f") {
  const res = await gw.app.request(`${base}/mesh?name=${name}`, {
    method: "POST",
    body: bytes,
    headers: { "Content-Type": type },
  });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()).cid as string;
}

Deno.test("the path gateway sandboxes every type that could run script, and never lets it be sniffed", () =>
  withGateway(async (gw) => {
    const cases: [string, boolean][] = [
      ["text/html; charset=utf-8", true],
      ["TEXT/HTML", true],
      ["image/svg+xml", true],
      ["application/xhtml+xml", true],
      ["text/xml", true],
      ["application/javascript", true],
      ["application/x-unknown", true],
      ["application/octet-stream", true],
      ["text/plain; charset=utf-8", false],
      ["image/png", false],
      ["video/mp4", false],
      ["audio/mpeg", false],
      ["application/pdf", false],
    ];
    for (const [type, sandboxed] of cases) {
      const cid = await put(gw, `<script>parent.x=1</script>${type}`, type);
      for (const prefix of ["/mesh/", "/ipfs/"]) {
        const res = await gw.app.request(`${base}${prefix}${cid}`);
        await res.body?.cancel();
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("x-content-type-options"), "nosniff", type);
        assert.equal(
          res.headers.get("content-security-policy"),
          sandboxed ? "sandbox" : null,
          type,
        );
      }
      const raw = await gw.app.request(`${base}/mesh/${cid}?format=raw`);
      await raw.body?.cancel();
      assert.equal(raw.headers.get("content-security-policy"), "sandbox");
      assert.equal(raw.headers.get("x-content-type-options"), "nosniff");
    }
  }));

Deno.test("the subdomain gateway serves each CID at / of its own origin, and nothing else there", () =>
  withGateway(async (gw) => {
    const body = pattern(0, 200_000);
    const cid = await put(gw, body, "text/html");
    for (const origin of [`http://${cid}.mesh.localhost:8080`, `http://${cid}.MESH.example.org`]) {
      const res = await gw.app.request(`${origin}/`);
      assert.equal(res.status, 200, origin);
      assertBytes(new Uint8Array(await res.arrayBuffer()), body);
      assert.equal(res.headers.get("etag"), `"${cid}"`);
      assert.equal(res.headers.get("cache-control"), "public, max-age=29030400, immutable");
      assert.equal(res.headers.get("content-type"), "text/html");
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("x-ipfs-path"), `/ipfs/${cid}`);
      // Its own origin: it may run as a site, so it is not sandboxed.
      assert.equal(res.headers.get("content-security-policy"), null);
    }
    // The Host header decides, as behind a proxy or with curl.
    const viaHost = await gw.app.request(`${base}/`, {
      headers: { Host: `${cid}.mesh.localhost:8080`, Range: "bytes=10-19" },
    });
    assert.equal(viaHost.status, 206);
    assert.equal(viaHost.headers.get("content-range"), `bytes 10-19/${body.length}`);
    assertBytes(new Uint8Array(await viaHost.arrayBuffer()), body.slice(10, 20));
    const head = await gw.app.request(`http://${cid}.mesh.localhost/`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(body.length));
    const revalidate = await gw.app.request(`http://${cid}.mesh.localhost/`, {
      headers: { "If-None-Match": `"${cid}"` },
    });
    assert.equal(revalidate.status, 304);

    // The page, the API and uploads never answer on a content origin.
    const sub = `http://${cid}.mesh.localhost`;
    for (const [method, path] of [["GET", "/api/files"], ["GET", "/readyz"], ["POST", "/mesh"]]) {
      const res = await gw.app.request(`${sub}${path}`, {
        method,
        body: method === "POST" ? "x" : null,
      });
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal((await res.json()).error, "not_found");
    }
    const page = await gw.app.request(`${sub}/`, { headers: { Accept: "text/html" } });
    assert.doesNotMatch(await page.text(), /Meshgate/);
    const bad = await gw.app.request(`http://bafkqaaaaaaaaaaaaaaaaaaaaaaaa.mesh.localhost/`);
    assert.equal(bad.status, 400);
    // A host that merely contains "mesh" is the node's own.
    const own = await gw.app.request(`http://node.mesh.example.org/api/files`);
    assert.equal(own.status, 200);
  }));

Deno.test("errors are never cached: 4xx and 5xx answer Cache-Control: no-store and carry no ETag", () =>
  withGateway(async (gw, _node, dir) => {
    const unknown = cidOf(new Uint8Array([1, 2, 3]));
    const cid = await put(gw, pattern(0, 1000), "text/plain");
    const answers = [
      await gw.app.request(`${base}/mesh/${unknown}`),
      await gw.app.request(`${base}/ipfs/${unknown}?format=raw`),
      await gw.app.request(`http://${unknown}.mesh.localhost/`),
      await gw.app.request(`${base}/mesh/not-a-cid`),
      await gw.app.request(`${base}/mesh/${cid}`, { headers: { Range: "bytes=5000-" } }),
      await gw.app.request(`${base}/mesh/${cid}?format=car`),
      await gw.app.request(`${base}/nowhere`),
    ];
    // A disk that fails under the upload: a 5xx.
    await Deno.remove(`${dir}/tmp`, { recursive: true });
    await Deno.writeTextFile(`${dir}/tmp`, "not a directory");
    answers.push(
      await gw.app.request(`${base}/mesh?chunkSize=65536`, {
        method: "POST",
        body: pattern(1, 100_000),
      }),
    );
    const statuses = [];
    for (const res of answers) {
      statuses.push(res.status);
      assert.ok(res.status >= 400, String(res.status));
      assert.equal(res.headers.get("cache-control"), "no-store", `${res.status}`);
      assert.equal(res.headers.get("etag"), null, `${res.status}`);
      assert.equal(res.headers.get("content-type"), "application/json");
      await res.body?.cancel();
    }
    assert.deepEqual(statuses, [404, 404, 404, 400, 416, 406, 404, 500]);
  }));

Deno.test("a disk failure on upload is a 5xx of its own; a bad argument a 4xx; a broken body a 400", () =>
  withGateway(async (gw, node, dir) => {
    await Deno.remove(`${dir}/tmp`, { recursive: true });
    await Deno.writeTextFile(`${dir}/tmp`, "not a directory");
    const res = await gw.app.request(`${base}/mesh?chunkSize=65536`, {
      method: "POST",
      body: pattern(1, 300_000),
    });
    assert.equal(res.status, 500);
    const json = await res.json();
    assert.equal(json.error, "store_failed");
    assert.match(json.message, /could not store/);
    assert.equal(node.store.pins().length, 0);
    await Deno.remove(`${dir}/tmp`);
    await Deno.mkdir(`${dir}/tmp`);

    const bad = await gw.app.request(`${base}/mesh?k=0`, { method: "POST", body: "x" });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error, "bad_request");
    const broken = await gw.app.request(`${base}/mesh?chunkSize=65536`, {
      method: "POST",
      body: new ReadableStream({
        start(c) {
          c.enqueue(pattern(0, 100_000));
          c.error(new Error("client went away"));
        },
      }),
    });
    assert.equal(broken.status, 400);
    assert.equal((await broken.json()).error, "upload_failed");
  }));

Deno.test("on loopback, writes from another site's page are refused and reads stay public", () =>
  withServer(async (url, _gw, node) => {
    const post = (headers: Record<string, string>, body = "hello") =>
      fetch(`${url}/mesh?name=n.txt`, { method: "POST", body, headers });
    const text = { "Content-Type": "text/plain" };
    const refused: Record<string, string>[] = [
      { ...text, Origin: "http://evil.example" },
      { ...text, Origin: "null" }, // a sandboxed page, e.g. an uploaded one on the path gateway
      { ...text, Origin: url.replace("127.0.0.1", "localhost") }, // another origin, even on loopback
      {
        ...text,
        Origin:
          `http://bafkreieq5jui4j25lacwomsqgjeswwl3y5zcdrresptwgmfylxo2depppq.mesh.localhost:${
            new URL(url).port
          }`,
      },
      { ...text, "Sec-Fetch-Site": "cross-site" },
    ];
    for (const headers of refused) {
      const res = await post(headers);
      assert.equal(res.status, 403, JSON.stringify(headers));
      assert.equal((await res.json()).error, "forbidden");
      assert.equal(res.headers.get("cache-control"), "no-store");
    }
    // A DNS-rebound name: the browser thinks it is same-origin, but the node answers only loopback names.
    // (fetch would not send our Host, so this one is written by hand.)
    const rebound = await rawRequest(
      url,
      "POST /mesh HTTP/1.1\r\nHost: evil.example:8080\r\nOrigin: http://evil.example:8080\r\n" +
        "Content-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    assert.match(rebound, /^HTTP\/1.1 403 /);
    assert.match(rebound, /"forbidden"/);
    assert.equal(node.store.pins().length, 0);

    const same = await post({ ...text, Origin: url, "Sec-Fetch-Site": "same-origin" });
    assert.equal(same.status, 201);
    const curl = await post(text); // no Origin: not a browser page
    assert.equal(curl.status, 201);
    await same.body?.cancel();
    await curl.body?.cancel();
    const read = await fetch(`${url}/api/files`, { headers: { Origin: "http://evil.example" } });
    assert.equal(read.status, 200);
    assert.equal((await read.json()).files.length, 1);
  }));

Deno.test("with an API token, every write needs it (401 without) and reads stay public", () =>
  withServer(async (url, _gw, node) => {
    const token = "s3cret-token-for-tests-0123456789";
    const post = (headers: Record<string, string> = {}) =>
      fetch(`${url}/mesh`, { method: "POST", body: "hello", headers });
    for (const auth of [undefined, "Bearer wrong-token-0123456789", `Basic ${token}`, token]) {
      const res = await post(auth ? { Authorization: auth } : {});
      assert.equal(res.status, 401, auth);
      assert.equal((await res.json()).error, "unauthorized");
    }
    // Any state-changing method on any route, not only the routes known today.
    for (const method of ["PUT", "DELETE", "PATCH", "POST"]) {
      const res = await fetch(`${url}/api/files`, { method });
      assert.equal(res.status, 401, method);
      await res.body?.cancel();
    }
    assert.equal(node.store.pins().length, 0);
    const ok = await post({ Authorization: `Bearer ${token}` });
    assert.equal(ok.status, 201);
    const { cid } = await ok.json();
    const read = await fetch(`${url}/mesh/${cid}`);
    assert.equal(await read.text(), "hello");
    assert.equal((await fetch(`${url}/api/files`).then((r) => r.json())).files.length, 1);
    // The token does not make another site's page welcome.
    const cross = await post({ Authorization: `Bearer ${token}`, Origin: "http://evil.example" });
    assert.equal(cross.status, 403);
    await cross.body?.cancel();
  }, { apiToken: "s3cret-token-for-tests-0123456789" }));

Deno.test("the API token is made once into the data directory with mode 0600, then reused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-token-" });
  try {
    const first = await loadApiToken(`${dir}/data`);
    assert.equal(first.created, true);
    assert.match(first.token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal((await Deno.stat(`${dir}/data/api.token`)).mode! & 0o777, 0o600);
    const again = await loadApiToken(`${dir}/data`);
    assert.deepEqual(again, { token: first.token, created: false });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
