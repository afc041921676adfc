/**
 * Paid lookups over real libp2p nodes on loopback, paid on a real anvil: a light client reads a file through
 * an operator's lookups and pays it per lookup that delivered; a lying operator (naming a peer that does not
 * hold the chunk) is not paid and drops in the client's book; forged records are refused with their reason
 * (and exclude the forger); a lookup voucher on another channel is refused.
 */
import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { type CID, cidOf } from "../../src/content/cid.ts";
import { LookupService } from "../../src/market/lookups.ts";
import {
  callLookup,
  LookupError,
  lookupNonce,
  requestLookup,
  signLookupRecord,
  signStatement,
} from "../../src/mesh/lookup.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { loadPay } from "../../src/pay/load.ts";
import { openChannel } from "../../src/pay/channel.ts";
import { PayingClient, PaymentDesk } from "../../src/pay/mod.ts";
import { channelHubDomain, signVoucher } from "../../src/pay/voucher.ts";
import { EMPTY_RECEIPTS_ROOT } from "../../src/pay/receipts.ts";
import { ReputationBook } from "../../src/reputation/book.ts";
import { MemorySource, randomBytes, startNode, stopNodes } from "../mesh/_helpers.ts";
import { startTestChain, type TestChain, type Wallet } from "../pay/_chain.ts";

/** Wei per 1,000 lookups: 10^12, so one lookup is 10^9 wei. */
const PER_1000 = 1_000_000_000_000n;
const ONE = PER_1000 / 1000n;

interface Operator {
  mesh: MeshNode;
  key: PrivateKey;
  desk: PaymentDesk;
  lookups: LookupService;
  wallet: Wallet;
}

async function keyed(
  store?: MemorySource,
): Promise<{ key: PrivateKey; mesh: MeshNode; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "lookup-" });
  const key = await loadOrCreatePrivateKey(dir);
  return { key, dir, mesh: await startNode({ dataDir: dir, store }) };
}

async function operator(
  chain: TestChain,
  bootstrap: MeshNode[],
  maxUnpaid = 4,
): Promise<Operator & { dir: string }> {
  const { key, mesh, dir } = await keyed();
  for (const b of bootstrap) await mesh.connect(b.multiaddrs()[0]!);
  const wallet = await chain.wallet();
  const cfg = { chainId: chain.chain.id, contracts: chain.contracts };
  const desk = new PaymentDesk({ chain: cfg, wallet, price: 0n, watchPollMs: 200 });
  await desk.start(mesh.libp2p);
  const lookups = new LookupService({
    mesh,
    privateKey: key,
    has: () => false,
    serve: true,
    per1000Lookups: PER_1000,
    desk,
    pay: await loadPay(),
    maxUnpaid,
    server: { statementMs: 2000 },
  });
  await lookups.start(mesh.libp2p);
  return { mesh, key, desk, lookups, wallet, dir };
}

Deno.test({
  name:
    "paid lookups: read through an operator, liars unpaid, forgeries and foreign channels refused",
  // As in the pay tests: the payer's last vouchers leave AbortSignal.timeout timers running out afterwards
  // (Deno counts those under resources too: a CI run failed on 2 of them).
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const chain = await startTestChain();
    const nodes: MeshNode[] = [];
    const services: LookupService[] = [];
    const desks: PaymentDesk[] = [];
    const dirs: string[] = [];
    try {
      // The holder keeps three chunks (a file) and announces them; it signs statements of what it holds.
      const store = new MemorySource();
      const chunks = [randomBytes(70_000), randomBytes(70_000), randomBytes(30_000)];
      const cids = chunks.map((c) => cidOf(c));
      chunks.forEach((c, i) => store.chunks.set(cids[i]!.toString(), c));
      const h = await keyed(store);
      dirs.push(h.dir);
      const holder = h.mesh;
      nodes.push(holder);
      const holderLookups = new LookupService({
        mesh: holder,
        privateKey: h.key,
        has: (cid) => store.chunks.has(cid.toString()),
      });
      await holderLookups.start(holder.libp2p);
      services.push(holderLookups);

      const honest = await operator(chain, [holder]);
      const liar = await operator(chain, [holder], 2);
      const other = await operator(chain, [holder]);
      for (const o of [honest, liar, other]) {
        nodes.push(o.mesh);
        services.push(o.lookups);
        desks.push(o.desk);
        dirs.push(o.dir);
      }
      for (const cid of cids) {
        await holder.provide(cid, { signal: AbortSignal.timeout(10_000) });
      }

      // The light client knows the operators only: never the holder, never the DHT beyond them.
      const c = await keyed();
      dirs.push(c.dir);
      nodes.push(c.mesh);
      await c.mesh.connect(honest.mesh.multiaddrs()[0]!);
      await c.mesh.connect(liar.mesh.multiaddrs()[0]!);
      const clientWallet = await chain.wallet();
      const payer = new PayingClient({
        chain: { chainId: chain.chain.id, contracts: chain.contracts },
        wallet: clientWallet,
        idleCloseMs: 0,
      });
      await payer.start(c.mesh.libp2p);
      const book = new ReputationBook();
      await book.start();
      const client = new LookupService({
        mesh: c.mesh,
        privateKey: c.key,
        has: () => false,
        payer,
        pay: await loadPay(),
        book,
      });
      await client.start(c.mesh.libp2p);
      services.push(client);

      await t.step(
        "a paid lookup finds the holder and reads the file; each lookup paid once",
        async () => {
          const got: Uint8Array[] = [];
          for (const cid of cids) {
            const r = await client.fetch(honest.mesh.peerId, cid);
            assert.equal(r.provider, holder.peerId);
            // The holder's own statement came with the record.
            assert.ok(r.record.providers.some((p) => p.peerId === holder.peerId && p.statement));
            got.push(r.bytes);
          }
          await client.settle();
          assert.deepEqual(got, chunks);
          assert.equal(honest.lookups.stats().paid, 3);
          assert.equal(honest.lookups.stats().earnedWei, 3n * ONE);
          assert.equal(client.stats().spentWei, 3n * ONE);
          const account = honest.desk.accounts().find((a) => a.peer === c.mesh.peerId)!;
          assert.equal(account.accepted - account.base, 3n * ONE);
          assert.ok(book.score(honest.mesh.peerId).factors.lookup === 1);
        },
      );

      await t.step(
        "a lying operator (naming a peer without the chunk) is not paid and drops",
        async () => {
          // The liar names the honest operator, which is reachable but holds nothing.
          liar.lookups.server.find = (cid: CID, nonce: string) =>
            signLookupRecord(liar.key, {
              operator: liar.mesh.peerId,
              cid: cid.toString(),
              nonce,
              at: Date.now(),
              providers: [{ peerId: honest.mesh.peerId, multiaddrs: honest.mesh.multiaddrs() }],
            });
          const before = book.score(liar.mesh.peerId).score;
          for (const cid of cids.slice(0, 2)) {
            await assert.rejects(client.fetch(liar.mesh.peerId, cid), (e: LookupError) => {
              assert.equal(e.code, "lookup_failed");
              assert.match(e.message, /None of the 1 peers .* named delivered/);
              return true;
            });
          }
          await client.settle();
          assert.equal(liar.lookups.stats().answered, 2);
          assert.equal(liar.lookups.stats().paid, 0);
          assert.equal(liar.lookups.stats().earnedWei, 0n);
          assert.equal(liar.desk.accounts().find((a) => a.peer === c.mesh.peerId), undefined);
          const after = book.score(liar.mesh.peerId);
          assert.ok(after.factors.lookup < 0.5, `lookup factor ${after.factors.lookup}`);
          assert.ok(after.score < before / 2, `score ${before} -> ${after.score}`);
          assert.ok(after.reasons.some((r) => /paid lookups that did not deliver: 2 of 2/.test(r)));
          // Its unpaid lookups are at its cap now: it refuses this client until they lapse.
          await assert.rejects(
            requestLookup(c.mesh.libp2p, liar.mesh.peerId, cids[0]!),
            (e: LookupError) => e.code === "lookup_refused" && /not paid/.test(e.message),
          );
        },
      );

      await t.step(
        "forged records are refused with the reason, and exclude the forger",
        async () => {
          const forger = other;
          // A record whose signature does not hold (altered after signing).
          forger.lookups.server.find = async (cid: CID, nonce: string) => {
            const r = await signLookupRecord(forger.key, {
              operator: forger.mesh.peerId,
              cid: cid.toString(),
              nonce,
              at: Date.now(),
              providers: [{ peerId: holder.peerId, multiaddrs: holder.multiaddrs() }],
            });
            return { ...r, providers: [{ peerId: other.mesh.peerId, multiaddrs: [] }] };
          };
          const fresh = await keyed();
          dirs.push(fresh.dir);
          nodes.push(fresh.mesh);
          await fresh.mesh.connect(forger.mesh.multiaddrs()[0]!);
          await assert.rejects(
            requestLookup(fresh.mesh.libp2p, forger.mesh.peerId, cids[0]!),
            (e: LookupError) =>
              e.code === "lookup_forged" && /is not signed by operator/.test(e.message),
          );
          // A record the operator signed with a provider statement that provider never made.
          const fake: PrivateKey = await generateKeyPair("Ed25519");
          const forgedStatement = async (cid: CID, nonce: string) =>
            signLookupRecord(forger.key, {
              operator: forger.mesh.peerId,
              cid: cid.toString(),
              nonce,
              at: Date.now(),
              providers: [{
                peerId: holder.peerId,
                multiaddrs: holder.multiaddrs(),
                statement: await signStatement(fake, cid),
              }],
            });
          forger.lookups.server.find = forgedStatement;
          await assert.rejects(
            requestLookup(fresh.mesh.libp2p, forger.mesh.peerId, cids[1]!),
            (e: LookupError) =>
              e.code === "lookup_forged" &&
              new RegExp(`statement of provider "${holder.peerId}" is not that peer's signature`)
                .test(e.message),
          );
          // A record for another request (a replayed answer).
          forger.lookups.server.find = (cid: CID) =>
            signLookupRecord(forger.key, {
              operator: forger.mesh.peerId,
              cid: cid.toString(),
              nonce: lookupNonce(),
              at: Date.now(),
              providers: [],
            });
          await assert.rejects(
            requestLookup(fresh.mesh.libp2p, forger.mesh.peerId, cids[2]!),
            (e: LookupError) => e.code === "lookup_forged" && /another request/.test(e.message),
          );
          // Through the service the forgery excludes the operator, the record kept as the proof.
          const fresher = await keyed();
          dirs.push(fresher.dir);
          nodes.push(fresher.mesh);
          await fresher.mesh.connect(forger.mesh.multiaddrs()[0]!);
          const book2 = new ReputationBook({ log: () => {} });
          await book2.start();
          const reader = new LookupService({
            mesh: fresher.mesh,
            privateKey: fresher.key,
            has: () => false,
            payer,
            pay: await loadPay(),
            book: book2,
          });
          forger.lookups.server.find = forgedStatement;
          await assert.rejects(
            reader.fetch(forger.mesh.peerId, cids[0]!),
            /lookup_forged|not that peer's/,
          );
          const s = book2.score(forger.mesh.peerId);
          assert.equal(s.state, "excluded");
          assert.equal(book2.record(forger.mesh.peerId)?.fraud?.kind, "forged_lookup");
          await assert.rejects(
            reader.fetch(forger.mesh.peerId, cids[0]!),
            (e: LookupError) => e.code === "lookup_refused" && /excluded/.test(e.message),
          );
          await book2.stop();
        },
      );

      await t.step("a lookup voucher on another channel is refused", async () => {
        // The client answered by the honest operator, paying with a channel that pays another operator.
        const nonce = lookupNonce();
        const found = await callLookup(
          c.mesh.libp2p,
          honest.mesh.peerId,
          { op: "find", cid: cids[0]!.toString(), nonce },
          AbortSignal.timeout(10_000),
        );
        assert.equal(found.op, "found");
        const { channel } = await openChannel(clientWallet, {
          address: chain.contracts.channelHub,
          payee: other.wallet.account.address,
          deposit: 10n * ONE,
          challengePeriod: 86_400n,
        });
        const voucher = {
          channel,
          cumulativeAmount: ONE,
          receiptsRoot: EMPTY_RECEIPTS_ROOT,
          receiptCount: 0n,
        };
        const domain = channelHubDomain(chain.chain.id, chain.contracts.channelHub);
        const signature = await signVoucher(clientWallet.account, domain, voucher);
        const pay = await loadPay();
        await assert.rejects(
          callLookup(
            c.mesh.libp2p,
            honest.mesh.peerId,
            {
              op: "pay",
              nonces: [nonce],
              ...pay.encodeVoucherMessage({ voucher, signature, receipts: [] }),
            },
            AbortSignal.timeout(10_000),
          ),
          (e: LookupError) => {
            assert.match(
              e.message,
              /\(voucher_channel\): Voucher is for channel "0x[0-9a-f]+", not "0x/,
            );
            return true;
          },
        );
        assert.equal(honest.lookups.stats().paid, 3);
      });

      await t.step("what a lookup voucher pays is no credit for deliveries", async () => {
        const operatorWallet = await chain.wallet();
        const desk = new PaymentDesk({
          chain: { chainId: chain.chain.id, contracts: chain.contracts },
          wallet: operatorWallet,
          price: 1n, // a wei a byte
          creditBytes: 1000,
          paymentWaitMs: 50,
        });
        const { channel } = await openChannel(clientWallet, {
          address: chain.contracts.channelHub,
          payee: operatorWallet.account.address,
          deposit: 10_000n,
          challengePeriod: 86_400n,
        });
        const voucher = {
          channel,
          cumulativeAmount: 5000n,
          receiptsRoot: EMPTY_RECEIPTS_ROOT,
          receiptCount: 0n,
        };
        const domain = channelHubDomain(chain.chain.id, chain.contracts.channelHub);
        const signature = await signVoucher(clientWallet.account, domain, voucher);
        const peer = c.mesh.peerId;
        assert.equal(
          await desk.takeOtherVoucher(peer, { voucher, signature, receipts: [] }),
          5000n,
        );
        const signal = AbortSignal.timeout(5000);
        // 3000 bytes are within the 5000 wei paid, but those paid for lookups: past the 1000-byte credit.
        await assert.rejects(
          desk.authorize(peer, cids[0]!, 3000, { signal }),
          (e: { code?: string }) => e.code === "payment_required",
        );
        await desk.authorize(peer, cids[0]!, 900, { signal });
        await desk.stop();
      });

      await payer.stop();
      await book.stop();
    } finally {
      for (const s of services) await s.stop().catch(() => {});
      for (const d of desks) await d.stop().catch(() => {});
      await stopNodes(...nodes);
      await chain.stop();
      for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  },
});
