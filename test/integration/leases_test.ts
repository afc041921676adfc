/**
 * Leases between real `serve` processes: `put --lease` leases the upload from every holder, the client's
 * audits run on its own schedule and pass, both sides list their leases in `GET /api/leases`, and a
 * renewal is the client's alone.
 */
import assert from "node:assert/strict";
import { startCluster, waitForPeers } from "../../src/cluster.ts";

const CLI = new URL("../../src/cli.ts", import.meta.url).pathname;

Deno.test({
  name: "serve processes: put --lease, audits on schedule, GET /api/leases on both sides, renewal",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-leases-" });
    const cluster = await startCluster({
      nodes: 4,
      dir,
      stderr: "null",
      args: ["--audit-every", "400"],
    });
    try {
      await Promise.all(cluster.nodes.map((n) => waitForPeers(n.url, 3, 60_000)));
      const [client, ...holders] = cluster.nodes;
      const file = `${dir}/f.bin`;
      await Deno.writeFile(file, crypto.getRandomValues(new Uint8Array(60_000)));
      const put = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          CLI,
          "put",
          file,
          "--gateway",
          client!.url,
          "--k",
          "4",
          "--m",
          "2",
          "--lease",
          "2h",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(put.stderr);
      assert.equal(put.code, 0, err);
      const m = /leased from (\d+) of (\d+) holders · first lease ends (\S+)/.exec(err);
      assert.ok(m, err);
      assert.equal(m[1], m[2], err);
      const ends = Date.parse(m[3]!) - Date.now();
      assert.ok(ends > 1.9 * 3_600_000 && ends <= 2 * 3_600_000, `ends in ${ends} ms`);

      const leases = async (url: string) => await (await fetch(`${url}/api/leases`)).json();
      const mine = (await leases(client!.url)).asClient;
      assert.equal(mine.length, Number(m[1]));
      for (const l of mine) {
        const h = holders.find((n) => n.peerId === l.holder)!;
        const kept = (await leases(h.url)).asHolder;
        assert.deepEqual(kept.map((k: { id: string }) => k.id), [l.id]);
      }
      // The audit timer runs by itself (every 400 ms here) and honest holders pass.
      const deadline = Date.now() + 30_000;
      for (;;) {
        const now = (await leases(client!.url)).asClient;
        if (now.every((l: { passed: number }) => l.passed >= 8)) {
          assert.ok(now.every((l: { failed: number }) => l.failed === 0), JSON.stringify(now));
          break;
        }
        assert.ok(Date.now() < deadline, `audits did not run: ${JSON.stringify(now)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      // A holder cannot renew the lease it keeps for the client; the client can.
      const lease = mine[0]!;
      const h = holders.find((n) => n.peerId === lease.holder)!;
      const theirs = await fetch(`${h.url}/api/leases/${lease.id}/renew?duration=1d`, {
        method: "POST",
      });
      assert.equal(theirs.status, 403);
      assert.equal((await theirs.json()).error, "lease_not_yours");
      const renewed = await fetch(`${client!.url}/api/leases/${lease.id}/renew?duration=1d`, {
        method: "POST",
      });
      assert.equal(renewed.status, 201, await renewed.clone().text());
      const body = await renewed.json();
      assert.equal(body.renews, lease.id);
      assert.equal(body.start, lease.end);
      // A bad duration is refused before anything is read.
      const bad = await fetch(`${client!.url}/mesh?lease=forever`, { method: "POST", body: "x" });
      assert.equal(bad.status, 400);
      assert.match((await bad.json()).message, /lease/);
    } finally {
      await cluster.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
