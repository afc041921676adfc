/**
 * Churn: six real `serve` processes hold a 16 MiB file (k = 3, m = 2: every stripe on 5 distinct holders),
 * and one holder at a time is SIGKILLed and restarted (same data directory, same mesh port) every few seconds
 * while a seventh node, which joined after the upload and holds none of the file (nor keeps any: no cache,
 * no room to write back what it rebuilds), reads it again and again through its gateway.
 * With one holder down at any moment, no stripe ever misses more than one chunk: every read must come back
 * byte-identical. A reader that kept skipping holders that had already come back failed here within seconds.
 */
import assert from "node:assert/strict";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { type NodeProcess, spawnNode, waitForPeers } from "../../src/cluster.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import { MeshgateNode } from "../../src/node.ts";
import { createGateway } from "../../edge/app.ts";
import { expectPattern, patternStream, postStream } from "../_util.ts";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const SEED = 21;
const HOLDERS = 6;
/** How long the holders churn while the reader reads (and at least until each was restarted once). */
const CHURN_MS = 30_000;
const CLI = new URL("../../src/cli.ts", import.meta.url).pathname;

/**
 * A free port below the ephemeral range (32768 and up on Linux), where no outgoing connection's source
 * port can take it between this check and the holder's listen: holders keep their port across restarts.
 */
const taken = new Set<number>();
function freePort(): number {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port)) continue;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    } catch {
      continue;
    }
    taken.add(port);
    return port;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name:
    "churn: one of 6 holders at a time killed and restarted, every read through a non-holder is intact",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-churn-" });
    // Identities and mesh ports fixed up front: a restarted holder comes back as the same peer at the same
    // address, and every holder can bootstrap through all the others (whichever are up).
    const holders = await Promise.all(Array.from({ length: HOLDERS }, async (_, i) => {
      const data = `${dir}/node-${i}`;
      await Deno.mkdir(data, { recursive: true });
      const peerId = peerIdFromPrivateKey(await loadOrCreatePrivateKey(data)).toString();
      return { data, addr: `/ip4/127.0.0.1/tcp/${freePort()}/p2p/${peerId}` };
    }));
    const command = (i: number) => [
      "run",
      "-A",
      CLI,
      "serve",
      "--port",
      "0",
      "--data",
      holders[i]!.data,
      "--local",
      "--listen",
      holders[i]!.addr.replace(/\/p2p\/.*/, ""),
      ...holders.flatMap((h, j) => j === i ? [] : ["--bootstrap", h.addr]),
    ];
    // Piped: a holder that fails to start says why in the test's error.
    const start = (i: number) => spawnNode([], { command: command(i), stderr: "piped" });
    const nodes: (NodeProcess | undefined)[] = [];
    let reader: MeshgateNode | undefined;
    let server: Deno.HttpServer<Deno.NetAddr> | undefined;
    try {
      nodes.push(...await Promise.all(holders.map((_, i) => start(i))));
      await Promise.all(nodes.map((n) => waitForPeers(n!.url, HOLDERS - 1)));
      const put = await postStream(
        `${nodes[0]!.url}/mesh?k=3&m=2&name=churn.bin`,
        patternStream(SIZE, SEED),
        SIZE,
      );
      assert.equal(put.status, 201, await put.clone().text());
      const { cid } = await put.json() as { cid: string };

      // The reader joins after the upload, so placement gave it nothing; it keeps nothing in memory, and its
      // store is too small to keep what it rebuilds (repair write-back fails): it holds none of the file
      // throughout, and every read comes from the mesh. In this process, to set its cache to 0.
      reader = await MeshgateNode.create({
        dataDir: `${dir}/reader`,
        maxStoreBytes: 1024,
        cacheBytes: 0,
        parityWorkers: 0,
        mesh: { listen: ["/ip4/127.0.0.1/tcp/0"], bootstrap: [holders[0]!.addr] },
      });
      const gateway = createGateway(reader);
      server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, gateway.app.fetch);
      const url = `http://127.0.0.1:${server.addr.port}`;
      await waitForPeers(url, HOLDERS);
      const first = await fetch(`${url}/mesh/${cid}`);
      assert.equal(first.status, 200);
      assert.equal(await expectPattern(first.body!, 0, SEED), SIZE);

      const failures: string[] = [];
      let reads = 0;
      let restarts = 0;
      const until = Date.now() + CHURN_MS;
      let churning = true;
      const reading = (async () => {
        while (churning) {
          try {
            const res = await fetch(`${url}/mesh/${cid}`);
            if (res.status !== 200) {
              failures.push(`read ${reads}: ${res.status} ${await res.text()}`);
            } else await expectPattern(res.body!, 0, SEED);
          } catch (e) {
            failures.push(`read ${reads}: ${e}`);
          }
          reads++;
        }
      })();
      // One holder down at a time: kill, leave it down a moment, restart on the same port, then the next.
      for (let i = 0; Date.now() < until || restarts < HOLDERS; i = (i + 1) % HOLDERS) {
        await nodes[i]!.stop("SIGKILL");
        nodes[i] = undefined;
        await sleep(1500);
        nodes[i] = await start(i);
        restarts++;
        await sleep(1500);
      }
      churning = false;
      await reading;
      const metrics = await (await fetch(`${url}/metrics`)).text();
      const repaired = /^mesh_chunks_repaired (\d+)$/m.exec(metrics)?.[1];
      console.log(
        `churn: ${reads} reads of 16 MiB during ${restarts} holder restarts, ${repaired} chunks rebuilt on the way`,
      );
      assert.deepEqual(failures, [], `${failures.length} of ${reads} reads failed`);
      assert.ok(reads >= 5, `the reader kept reading (${reads} reads)`);
      assert.equal(reader.store.stats().chunks, 0, "the reader never held a chunk");
    } finally {
      await server?.shutdown();
      await reader?.stop();
      await Promise.all(nodes.map((n) => n?.stop()));
      await Deno.remove(dir, { recursive: true });
    }
  },
});
