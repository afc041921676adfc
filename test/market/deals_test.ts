import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { createWalletClient, http } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { DealDesk } from "../../src/market/deals.ts";
import { signQuote } from "../../src/market/quote.ts";
import { signPayoutLink } from "../../src/market/rating.ts";
import { meshChain } from "../../src/pay/chain.ts";
import type { PayClient } from "../../src/pay/_tx.ts";

Deno.test("DealDesk.fund refuses a quote without payout, on another chain, or with a forged payout link", async () => {
  const chain = meshChain({ chainId: 31337, rpc: "http://127.0.0.1:9" }); // never called: refused before
  const wallet = createWalletClient({
    account: privateKeyToAccount(generatePrivateKey()),
    chain,
    transport: http("http://127.0.0.1:9"),
  }) as PayClient;
  const desk = new DealDesk({ wallet, escrow: `0x${"11".repeat(20)}` });
  const key = await generateKeyPair("Ed25519");
  const other = await generateKeyPair("Ed25519");
  const seller = peerIdFromPrivateKey(key).toString();
  const address = privateKeyToAccount(generatePrivateKey()).address;
  const terms = {
    item: "x",
    quantity: 1,
    price: "1000",
    currency: "wei",
    terms: "",
    deliveryTime: 0,
    validUntil: Date.now() + 60_000,
  };
  const quote = async (payout?: { chainId: number; address: string; link: string }) =>
    await signQuote(key, seller, "ab".repeat(32), payout ? { ...terms, payout } : terms);
  const refused = async (p: Promise<unknown>, pattern: RegExp) =>
    await assert.rejects(p, (e: Error & { code?: string }) => {
      assert.equal(e.code, "deal_unfundable");
      assert.match(e.message, pattern);
      return true;
    });
  await refused(desk.fund(await quote()), /no payout/);
  const link = await signPayoutLink(key, { chainId: 1, address });
  await refused(desk.fund(await quote({ chainId: 1, address, link })), /chain 1/);
  const forged = await signPayoutLink(other, { chainId: 31337, address });
  await refused(
    desk.fund(await quote({ chainId: 31337, address, link: forged })),
    /did not sign/,
  );
});
