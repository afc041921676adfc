/**
 * Paid relaying end to end, with real `serve` processes on anvil:
 *
 * - a relay R (`--relay`, two reservations at most, a price per GiB relayed); a node B that listens nowhere
 *   (`--no-listen --relay-via R`) holds a file and sells its delivery; a reader C finds B through the DHT and
 *   reads the file through R byte-identical, paying B over the relayed connection; B pays R for the bytes R
 *   carried, and R's `mesh_pay_relay_*` series show them paid: wei earned = price x bytes carried;
 * - a third reservation is refused with the relay's reason;
 * - a node that stops paying (B2, `--relay-max-spend 1`) loses its circuits within the credit.
 */
import assert from "node:assert/strict";
import { type NodeProcess, spawnNode } from "../../src/cluster.ts";
import { startDevnet } from "../../src/pay/devnet.ts";

const MiB = 1024 * 1024;
/** 1 gwei a byte relayed, and as much for delivery. */
const PRICE = 1_000_000_000n;
/** The relay desk's credit (2 batches of 4 MiB) and a stream window in flight. */
const CREDIT = 8 * MiB;
const WINDOW = MiB;

async function metric(node: NodeProcess, name: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const value = new RegExp(`^${name} (\\d+(?:\\.\\d+)?(?:e\\+\\d+)?)$`, "m").exec(text)?.[1];
  assert.ok(value !== undefined, `no ${name} in /metrics`);
  return Number(value);
}

async function waitFor(check: () => Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** GET of `cid` from `node`, asked again while the mesh does not know it yet (its holder announces it in the
 * background after an upload). */
async function readWhenFound(node: NodeProcess, cid: string, ms = 30_000): Promise<Response> {
  const deadline = Date.now() + ms;
  while (true) {
    const res = await fetch(`${node.url}/mesh/${cid}`);
    if (res.status !== 404 || Date.now() > deadline) return res;
    await res.body?.cancel();
    await new Promise((r) => setTimeout(r, 500));
  }
}

function randomFile(size: number): Uint8Array<ArrayBuffer> {
  const body = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(body.subarray(i, i + 65536));
  return body;
}

/** Uploads `body` to `node` as 1 MiB chunks, no parity, kept there. */
async function put(node: NodeProcess, body: Uint8Array<ArrayBuffer>): Promise<string> {
  const res = await fetch(`${node.url}/mesh?k=1&m=0&chunkSize=${MiB}`, { method: "POST", body });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { cid: string }).cid;
}

Deno.test({
  name:
    "relay: a node behind no address serves through a paid relay; non-payers are cut within credit",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-relay-" });
    const devnet = await startDevnet({ out: `${dir}/chain.json` });
    const chain = ["--chain", devnet.config.rpc, "--chain-file", `${dir}/chain.json`];
    const nodes: NodeProcess[] = [];
    try {
      const relay = await spawnNode([
        "--data",
        `${dir}/relay`,
        ...chain,
        "--pay-key",
        "dev:1",
        "--relay",
        "--relay-reservations",
        "2",
        "--price-relayed",
        String(PRICE << 30n),
        "--relay-pay-wait",
        "1000",
        "--volunteer-quota",
        "0", // keeps nothing for others: every byte read comes from B, through the circuit
      ], { stderr: "piped" });
      nodes.push(relay);
      const via = relay.multiaddrs[0]!;
      const hidden = await spawnNode([
        "--data",
        `${dir}/hidden`,
        ...chain,
        "--pay-key",
        "dev:2",
        "--price-served",
        String(PRICE << 30n),
        "--no-listen",
        "--relay-via",
        via,
        "--bootstrap",
        via,
      ], { stderr: "piped" });
      nodes.push(hidden);
      const reader = await spawnNode([
        "--data",
        `${dir}/reader`,
        ...chain,
        "--pay-key",
        "dev:3",
        "--bootstrap",
        via,
        "--volunteer-quota",
        "0", // nor does C: B's uploads stay on B
        // C listens nowhere either (a light client): B cannot dial it, so DCUtR finds no direct path and
        // the relay carries the read.
        "--no-listen",
      ], { stderr: "piped" });
      nodes.push(reader);

      await t.step("R's signed offer states its price and limits", async () => {
        const offer = await (await fetch(`${relay.url}/api/offer`)).json();
        assert.equal(offer.prices.relayedPerGiB, String(PRICE << 30n));
        assert.deepEqual(offer.relay, {
          maxReservations: 2,
          reservationSeconds: 3600,
          circuitBytes: 1024 * MiB,
          circuitSeconds: 600,
        });
      });

      await t.step(
        "B is reachable only through R; C reads B's file through R, byte-identical",
        async () => {
          assert.ok(hidden.multiaddrs.length > 0);
          for (const a of hidden.multiaddrs) {
            assert.ok(a.endsWith(`/p2p/${relay.peerId}/p2p-circuit/p2p/${hidden.peerId}`), a);
          }
          const body = randomFile(8 * MiB);
          const cid = await put(hidden, body);
          const res = await readWhenFound(reader, cid);
          assert.equal(res.status, 200, await res.clone().text());
          const got = new Uint8Array(await res.arrayBuffer());
          assert.equal(got.length, body.length);
          assert.ok(got.every((b, i) => b === body[i]), "byte-identical");
          const carried = await metric(relay, "mesh_pay_relay_carried_bytes_total");
          assert.ok(carried > body.length, `R carried ${carried}`);
          // C paid B for delivery over the relayed connection (8 MiB is past B's credit to a newcomer).
          await waitFor(
            async () => await metric(hidden, "mesh_pay_vouchers_received_total") >= 1,
            "B paid by C through R",
          );
          assert.equal(await metric(relay, "mesh_pay_relay_circuits_total") >= 1, true);
        },
      );

      await t.step(
        "R's metrics show the relayed bytes paid for: earned = price x bytes",
        async () => {
          // B pays per 4 MiB as it goes, and the rest as it stops.
          assert.equal(await hidden.stop(), 0);
          nodes.splice(nodes.indexOf(hidden), 1);
          const carried = await metric(relay, "mesh_pay_relay_carried_bytes_total");
          await waitFor(
            async () => await metric(relay, "mesh_pay_relay_charged_bytes_total") === carried,
            "R's charge settling on what it carried",
          );
          const earned = await metric(relay, "mesh_pay_relay_earned_wei_total");
          assert.ok(await metric(relay, "mesh_pay_relay_vouchers_received_total") >= 2);
          assert.equal(earned, Number(PRICE) * carried, `earned ${earned} for ${carried} bytes`);
          assert.equal(await metric(relay, "mesh_pay_relay_owed_wei"), 0);
          assert.equal(await metric(relay, "mesh_pay_relay_unpaid_cuts_total"), 0);
        },
      );

      let stingy: NodeProcess | undefined;
      await t.step("a third reservation is refused with the relay's reason", async () => {
        stingy = await spawnNode([
          "--data",
          `${dir}/stingy`,
          ...chain,
          "--pay-key",
          "dev:4",
          "--no-listen",
          "--relay-via",
          via,
          "--bootstrap",
          via,
          "--relay-max-spend",
          "1",
        ], { stderr: "piped" });
        nodes.push(stingy);
        // B's reservation lasts its hour after B left: R holds two now.
        await assert.rejects(
          () =>
            spawnNode([
              "--data",
              `${dir}/third`,
              ...chain,
              "--pay-key",
              "dev:5",
              "--no-listen",
              "--relay-via",
              via,
            ], { stderr: "piped" }),
          /gave no reservation: it holds its most reservations \(RESERVATION_REFUSED\)/,
        );
        assert.equal(await metric(relay, "mesh_pay_relay_reservations"), 2);
      });

      await t.step("a node that stops paying loses its circuits within the credit", async () => {
        const body = randomFile(16 * MiB);
        const cid = await put(stingy!, body);
        const paidBefore = await metric(relay, "mesh_pay_relay_earned_wei_total");
        const chargedBefore = await metric(relay, "mesh_pay_relay_charged_bytes_total");
        let got = 0;
        try {
          const res = await readWhenFound(reader, cid);
          for await (const piece of res.body!) got += piece.length;
        } catch {
          // the body broke off: expected
        }
        assert.ok(got < body.length, `read ${got} of ${body.length}`);
        await waitFor(
          async () => await metric(relay, "mesh_pay_relay_unpaid_cuts_total") >= 1,
          "a circuit cut for want of payment",
        );
        const paid = (await metric(relay, "mesh_pay_relay_earned_wei_total") - paidBefore) /
          Number(PRICE);
        const charged = await metric(relay, "mesh_pay_relay_charged_bytes_total") - chargedBefore;
        assert.ok(paid > 0, "it paid its first batch");
        assert.ok(
          charged <= paid + CREDIT + WINDOW,
          `R carried ${charged} bytes for ${paid} paid: more than the credit`,
        );
      });
    } finally {
      await Promise.all(nodes.map((n) => n.stop().catch(() => {})));
      await devnet.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
