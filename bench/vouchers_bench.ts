/**
 * Cost of paying per byte: one voucher signature per batch. "meshgate" is `signVoucher` / `verifyVoucher`
 * (field checks, then viem), "viem" is viem's `signTypedData` / `recoverTypedDataAddress` on the same message.
 * At load it prints how many signatures a GiB served costs at `DEFAULT_BATCH_BYTES`, and the time they take.
 */
import { type Hex, parseEther, recoverTypedDataAddress, toHex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { DEFAULT_BATCH_BYTES } from "../src/pay/receipts.ts";
import {
  channelHubDomain,
  signVoucher,
  verifyVoucher,
  type Voucher,
  voucherTypes,
} from "../src/pay/voucher.ts";

const payer = privateKeyToAccount(generatePrivateKey());
const domain = channelHubDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
const channel = toHex(7n, { size: 32 });
let amount = parseEther("1");

function nextVoucher(): Voucher {
  amount += 1_000_000_000n;
  return {
    channel,
    cumulativeAmount: amount,
    receiptsRoot: toHex(amount, { size: 32 }),
    receiptCount: 4n,
  };
}

const voucher = nextVoucher();
const signature: Hex = await signVoucher(payer, domain, voucher);

// Signatures per GiB served at the default batch size, and what they cost on this machine.
const perGiB = (1024 ** 3) / DEFAULT_BATCH_BYTES;
const samples = 200;
let t0 = performance.now();
for (let i = 0; i < samples; i++) await signVoucher(payer, domain, nextVoucher());
const signMs = (performance.now() - t0) / samples;
t0 = performance.now();
for (let i = 0; i < samples; i++) {
  await verifyVoucher({ domain, voucher, signature, channel, payer: payer.address });
}
const verifyMs = (performance.now() - t0) / samples;
console.error(
  `vouchers: DEFAULT_BATCH_BYTES = ${DEFAULT_BATCH_BYTES} B -> ${perGiB} signatures per GiB served; ` +
    `~${(signMs * perGiB).toFixed(0)} ms to sign and ~${
      (verifyMs * perGiB).toFixed(0)
    } ms to verify them ` +
    `(${signMs.toFixed(3)} / ${verifyMs.toFixed(3)} ms each)`,
);

Deno.bench({
  name: "meshgate",
  group: "voucher sign",
  baseline: true,
  async fn() {
    await signVoucher(payer, domain, nextVoucher());
  },
});

Deno.bench({
  name: "viem",
  group: "voucher sign",
  async fn() {
    await payer.signTypedData({
      domain,
      types: voucherTypes,
      primaryType: "Voucher",
      message: nextVoucher(),
    });
  },
});

Deno.bench({
  name: "meshgate",
  group: "voucher verify",
  baseline: true,
  async fn() {
    await verifyVoucher({ domain, voucher, signature, channel, payer: payer.address });
  },
});

Deno.bench({
  name: "viem",
  group: "voucher verify",
  async fn() {
    await recoverTypedDataAddress({
      domain,
      types: voucherTypes,
      primaryType: "Voucher",
      message: voucher,
      signature,
    });
  },
});
