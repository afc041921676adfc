/**
 * The operators API over real HTTP on a node with a mesh: `POST /api/evidence` takes a valid proof of fraud
 * from any origin without a token and excludes the operator (shown with its evidence in `/api/operators` and
 * counted in `/metrics`, and still excluded after a restart); forged and malformed proofs are refused with
 * their reason, and a sender of too many is refused for the hour.
 */
import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { createGateway, onServeError } from "../../edge/app.ts";
import { MAX_BAD_PROOFS } from "../../edge/reputation.ts";
import { cidOf } from "../../src/content/cid.ts";
import { fraudProof, signDelivery } from "../../src/reputation/evidence.ts";
import { MeshgateNode } from "../../src/node.ts";

const LISTEN = ["/ip4/127.0.0.1/tcp/0"];

async function serve(dir: string) {
  const node = await MeshgateNode.create({
    dataDir: dir,
    parityWorkers: 0,
    mesh: { listen: LISTEN },
  });
  const gw = createGateway(node, { apiToken: "a-token-of-sixteen-chars" });
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: resolve, onError: onServeError },
    gw.app.fetch,
  );
  const addr = await promise;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    async stop() {
      await server.shutdown();
      await node.stop();
    },
  };
}

Deno.test({
  name:
    "operators API: evidence excludes (and survives a restart), forged and malformed proofs are refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-operators-" });
    let gw = await serve(dir);
    try {
      const empty = await (await fetch(`${gw.url}/api/operators`)).json();
      assert.deepEqual(empty.operators, []);

      const liarKey = await generateKeyPair("Ed25519");
      const liar = peerIdFromPrivateKey(liarKey).toString();
      const bytes = new Uint8Array(2048).fill(3);
      const cid = cidOf(bytes);
      const proof = fraudProof(
        liar,
        cid,
        await signDelivery(liarKey, cid, bytes.map((x) => x ^ 4)),
      );
      const post = (body: string) =>
        fetch(`${gw.url}/api/evidence`, {
          method: "POST",
          // Another site's page, and no token: a proof checks itself.
          headers: { "Content-Type": "application/json", Origin: "https://elsewhere.example" },
          body,
        });
      const ok = await post(JSON.stringify(proof));
      assert.equal(ok.status, 200, await ok.clone().text());
      assert.equal(ok.headers.get("access-control-allow-origin"), "*");
      assert.deepEqual(await ok.json(), { peer: liar, excluded: true, new: true });

      const one = await (await fetch(`${gw.url}/api/operators/${liar}`)).json();
      assert.equal(one.state, "excluded");
      assert.equal(one.score, 0);
      assert.deepEqual(one.evidence, proof);
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      assert.match(metrics, /^mesh_operators\{state="excluded"\} 1$/m);
      assert.doesNotMatch(metrics, new RegExp(liar), "no peer ID in a label");

      // Forged: the signature is not the accused's.
      const honestKey = await generateKeyPair("Ed25519");
      const honest = peerIdFromPrivateKey(honestKey).toString();
      const forged = { ...proof, peer: honest };
      const refused = await post(JSON.stringify(forged));
      assert.equal(refused.status, 422);
      assert.equal((await refused.json()).error, "evidence_signature");
      const notJson = await post("{not json");
      assert.equal(notJson.status, 400);
      assert.equal((await notJson.json()).error, "evidence_malformed");
      const unknown = await fetch(`${gw.url}/api/operators/${honest}`);
      assert.equal(unknown.status, 404);
      await unknown.body?.cancel();

      // Past the limit of refused proofs, this address is refused for the hour.
      for (let i = 2; i < MAX_BAD_PROOFS; i++) await (await post("[]")).body?.cancel();
      const limited = await post(JSON.stringify(proof));
      assert.equal(limited.status, 429);
      await limited.body?.cancel();

      // Restarted: the exclusion stands.
      await gw.stop();
      gw = await serve(dir);
      const after = await (await fetch(`${gw.url}/api/operators/${liar}`)).json();
      assert.equal(after.state, "excluded");
    } finally {
      await gw.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
