/**
 * Paid delivery, measured: one operator (PaymentDesk) and one client (PayingClient) over loopback libp2p on
 * a real anvil, 64 MiB of 256 KiB chunks fetched in one request, paid per byte with a voucher per 4 MiB
 * batch; beside the same transfer unpaid in the same run. Prints MiB/s of each (median of 3) and the ratio.
 */
import { cidOf } from "../src/content/cid.ts";
import { PayingClient, PaymentDesk } from "../src/pay/mod.ts";
import { MemorySource, randomBytes, startNode, stopNodes } from "../test/mesh/_helpers.ts";
import { startTestChain } from "../test/pay/_chain.ts";

const MiB = 1024 * 1024;
const CHUNK = 256 * 1024;
const COUNT = 256; // 64 MiB
const ROUNDS = 3;
const PRICE = 1_000_000_000n; // 1 gwei per byte, the --paid cluster's price

const held = Array.from({ length: COUNT }, () => {
  const bytes = randomBytes(CHUNK);
  return { cid: cidOf(bytes), bytes };
});
const cids = held.map((c) => c.cid);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const env = await startTestChain();
const chain = { chainId: env.chain.id, contracts: env.contracts };
try {
  const rate = async (paid: boolean) => {
    const rates: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const store = new MemorySource();
      for (const c of held) await store.put(c.cid, c.bytes);
      const desk = paid
        ? new PaymentDesk({ chain, wallet: await env.wallet(), price: PRICE })
        : undefined;
      // Limits far above this transfer: the benchmark measures the rail, not the caps.
      const payer = paid
        ? new PayingClient(
          {
            chain,
            wallet: await env.wallet(),
            maxPrice: PRICE,
            maxSpendPerFile: 10n ** 21n,
            maxSpendPerDay: 10n ** 21n,
          } as ConstructorParameters<typeof PayingClient>[0],
        )
        : undefined;
      const operator = await startNode({ store, exchange: desk ? { gate: desk } : {} });
      const client = await startNode(payer ? { exchange: { payer } } : {});
      await desk?.start(operator.libp2p);
      await payer?.start(client.libp2p);
      try {
        const t = performance.now();
        let bytes = 0;
        for await (const c of client.fetchChunks(operator.multiaddrs()[0]!, cids)) {
          if (!c.bytes) throw new Error(`chunk ${c.cid} was not served`);
          bytes += c.bytes.length;
        }
        rates.push(bytes / MiB / ((performance.now() - t) / 1000));
      } finally {
        await payer?.stop();
        await desk?.stop();
        await stopNodes(operator, client);
      }
    }
    return median(rates);
  };
  const free = await rate(false);
  const paid = await rate(true);
  console.log(
    `\n  paid delivery, 64 MiB in 256 KiB chunks over loopback libp2p (median of ${ROUNDS})`,
  );
  console.log(`    unpaid                          ${free.toFixed(0).padStart(5)} MiB/s`);
  console.log(`    paid (1 gwei/byte, 4 MiB batch) ${paid.toFixed(0).padStart(5)} MiB/s`);
  console.log(`    ratio                          ${(paid / free).toFixed(2)}x of unpaid`);
} finally {
  await env.stop();
}
