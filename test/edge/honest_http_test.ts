/**
 * Honest HTTP over real sockets: a read that fails after the headers breaks the connection (never a short
 * 200) and says so in one log line; an unknown CID is a 404 at once with no peer to ask, and within the find
 * timeout when the peers there are do not answer.
 */
import assert from "node:assert/strict";
import { type CID, cidOf, parseCid } from "../../src/content/cid.ts";
import { MeshgateNode } from "../../src/node.ts";
import { spawnNode } from "../../src/cluster.ts";
import { createGateway, type Gateway, onServeError } from "../../edge/app.ts";
import { pattern } from "../_util.ts";

/** The gateway of `node` on a real socket at 127.0.0.1. */
async function listen(gw: Gateway) {
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: resolve, onError: onServeError },
    gw.app.fetch,
  );
  const addr = await promise;
  return { url: `http://127.0.0.1:${addr.port}`, port: addr.port, server };
}

/** One GET written by hand: the status line, the declared length and the body bytes that came. */
async function rawGet(port: number, path: string, headers = "") {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`),
  );
  const parts: Uint8Array[] = [];
  try {
    for await (const piece of conn.readable) parts.push(piece);
  } catch {
    // a reset connection is what a broken transfer may look like
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, (at += p.length) - p.length);
  const text = new TextDecoder("latin1").decode(all);
  const split = text.indexOf("\r\n\r\n");
  const head = text.slice(0, split);
  return {
    status: head.split("\r\n")[0]!,
    length: Number(/^content-length: *(\d+)/im.exec(head)?.[1]),
    chunked: /^transfer-encoding: *chunked/im.test(head),
    received: all.length - split - 4,
  };
}

Deno.test("a read that fails mid-body aborts the connection and logs one JSON line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-abort-" });
  const node = await MeshgateNode.create({ dataDir: dir, cacheBytes: 0, parityWorkers: 0 });
  const gw = createGateway(node);
  const { url, port, server } = await listen(gw);
  const logged: string[] = [];
  const error = console.error;
  console.error = (line: string) => logged.push(line);
  try {
    const size = 65536 * 20;
    const res = await fetch(`${url}/mesh?chunkSize=65536&k=3&m=2`, {
      method: "POST",
      body: pattern(0, size),
    });
    assert.equal(res.status, 201);
    const { cid } = await res.json();
    // Stripe 4 (bytes 786432-983039) loses 3 of its 5 chunks: beyond repair with m = 2.
    const stripe = (await node.manifest(parseCid(cid))).stripes[4]!;
    const path = (c: CID) => `${dir}/chunks/${c.toString().slice(-2)}/${c}`;
    for (const c of stripe.slice(0, 3)) await Deno.remove(path(c));

    const whole = await rawGet(port, `/mesh/${cid}`);
    assert.equal(whole.status, "HTTP/1.1 200 OK");
    assert.equal(whole.length, size);
    assert.ok(!whole.chunked);
    assert.ok(whole.received < size, `only the bytes before the lost stripe: ${whole.received}`);
    assert.ok(whole.received <= 4 * 3 * 65536);

    const ranged = await rawGet(port, `/mesh/${cid}`, "Range: bytes=100000-\r\n");
    assert.equal(ranged.status, "HTTP/1.1 206 Partial Content");
    assert.ok(ranged.received < ranged.length);

    // fetch sees a broken transfer, not a complete short body.
    const client = await fetch(`${url}/ipfs/${cid}`);
    assert.equal(client.status, 200);
    await assert.rejects(client.arrayBuffer());

    const lines = logged.map((l) => JSON.parse(l)).filter((l) =>
      l.msg?.includes("after the headers")
    );
    assert.equal(lines.length, 3, logged.join("\n"));
    assert.deepEqual(
      lines.map((l) => [l.level, l.cid, l.range]),
      [["error", cid, `0-${size - 1}`], ["error", cid, `100000-${size - 1}`], [
        "error",
        cid,
        `0-${size - 1}`,
      ]],
    );
    assert.match(lines[0].cause, /Stripe 4/);
  } finally {
    console.error = error;
    await server.shutdown();
    await node.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "an unknown CID is a 404 at once with no peer, and within --find-timeout with a silent one",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-find-" });
    const unknown = cidOf(new Uint8Array([4, 0, 4]));
    const listenLoopback = ["/ip4/127.0.0.1/tcp/0"];
    const alone = await MeshgateNode.create({
      dataDir: `${dir}/alone`,
      parityWorkers: 0,
      mesh: { listen: listenLoopback },
    });
    try {
      const gw = createGateway(alone);
      for (const path of [`/mesh/${unknown}`, `/mesh/${unknown}?format=raw`]) {
        const t0 = performance.now();
        const res = await gw.app.request(`http://127.0.0.1${path}`);
        const ms = performance.now() - t0;
        assert.equal(res.status, 404);
        assert.equal(res.headers.get("cache-control"), "no-store");
        await res.body?.cancel();
        assert.ok(ms < 1000, `no peer to ask: answered in ${ms.toFixed(0)} ms`);
      }
    } finally {
      await alone.stop();
    }

    // A peer that is connected but never answers (stopped with SIGSTOP) must not hold the reader.
    const peer = await spawnNode(["--data", `${dir}/peer`], { stderr: "null" });
    const reader = await MeshgateNode.create({
      dataDir: `${dir}/reader`,
      parityWorkers: 0,
      findTimeoutMs: 1500,
      mesh: { listen: listenLoopback, bootstrap: [peer.multiaddrs[0]!] },
    });
    let stopped = false;
    try {
      for (let i = 0; i < 200 && !reader.mesh!.connectedPeers().includes(peer.peerId!); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(reader.mesh!.connectedPeers().includes(peer.peerId!), "connected to the peer");
      Deno.kill(peer.pid, "SIGSTOP");
      stopped = true;
      const gw = createGateway(reader);
      const t0 = performance.now();
      const res = await gw.app.request(`http://127.0.0.1/mesh/${unknown}`);
      const ms = performance.now() - t0;
      assert.equal(res.status, 404);
      const body = await res.json();
      assert.equal(body.error, "not_found");
      assert.match(body.message, /within 1500 ms/);
      assert.ok(ms >= 1400 && ms < 4000, `answered after ${ms.toFixed(0)} ms`);
    } finally {
      if (stopped) Deno.kill(peer.pid, "SIGCONT");
      await reader.stop();
      await peer.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
