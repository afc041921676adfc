import { httpStatus } from "../../edge/errors.ts";
import assert from "node:assert/strict";
import { type Hex, parseEther, recoverTypedDataAddress, toHex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  VoucherAmountError,
  VoucherChannelError,
  VoucherDepositError,
  VoucherError,
  VoucherReplayError,
  VoucherSignatureError,
  VoucherSignerError,
} from "../../src/pay/errors.ts";
import { DeskBusyError, PayRateLimitedError } from "../../src/pay/pay_protocol.ts";
import {
  channelHubDomain,
  checkSignature,
  hashVoucher,
  recoverVoucherSigner,
  signVoucher,
  verifyVoucher,
  type Voucher,
  voucherTypes,
} from "../../src/pay/voucher.ts";

const payer = privateKeyToAccount(generatePrivateKey());
const stranger = privateKeyToAccount(generatePrivateKey());
const hub = "0x5FbDB2315678afecb367f032d93F642f64180aa3" as const;
const domain = channelHubDomain(31337, hub);
const channel = toHex(0xc0ffeen, { size: 32 });
const voucher: Voucher = {
  channel,
  cumulativeAmount: parseEther("2"),
  receiptsRoot: toHex(99n, { size: 32 }),
  receiptCount: 12n,
};

function check(
  signature: Hex,
  over: Partial<Parameters<typeof verifyVoucher>[0]> = {},
) {
  return verifyVoucher({ domain, voucher, signature, channel, payer: payer.address, ...over });
}

Deno.test("signVoucher() then verifyVoucher() returns the payer", async () => {
  const signature = await signVoucher(payer, domain, voucher);
  assert.equal(signature.length, 2 + 65 * 2);
  assert.equal(
    await check(signature, { accepted: parseEther("1"), deposit: parseEther("2") }),
    payer.address,
  );
  assert.equal(await recoverVoucherSigner(domain, voucher, signature), payer.address);
});

Deno.test("hashVoucher() changes with every field and with the domain", () => {
  const base = hashVoucher(domain, voucher);
  const variants: Voucher[] = [
    { ...voucher, channel: toHex(1n, { size: 32 }) },
    { ...voucher, cumulativeAmount: voucher.cumulativeAmount + 1n },
    { ...voucher, receiptsRoot: toHex(98n, { size: 32 }) },
    { ...voucher, receiptCount: 13n },
  ];
  for (const v of variants) assert.notEqual(hashVoucher(domain, v), base);
  assert.notEqual(hashVoucher(channelHubDomain(1, hub), voucher), base);
  assert.notEqual(hashVoucher(channelHubDomain(31337, payer.address), voucher), base);
});

Deno.test("verifyVoucher() refuses a voucher for another channel", async () => {
  const signature = await signVoucher(payer, domain, voucher);
  const other = toHex(1n, { size: 32 });
  await assert.rejects(check(signature, { channel: other }), (e) => {
    assert.ok(e instanceof VoucherChannelError && e instanceof VoucherError);
    assert.equal(httpStatus(e), 402);
    assert.equal(e.code, "voucher_channel");
    return true;
  });
});

Deno.test("verifyVoucher() refuses another signer, chain or hub", async () => {
  const cases: [string, Hex][] = [
    ["stranger", await signVoucher(stranger, domain, voucher)],
    ["other chain", await signVoucher(payer, channelHubDomain(1, hub), voucher)],
    ["other hub", await signVoucher(payer, channelHubDomain(31337, stranger.address), voucher)],
  ];
  for (const [label, signature] of cases) {
    await assert.rejects(check(signature), VoucherSignerError, label);
  }
});

Deno.test("verifyVoucher() refuses what the hub's _recover refuses, though viem recovers the payer", async () => {
  const signature = await signVoucher(payer, domain, voucher);
  const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
  const s = BigInt("0x" + signature.slice(66, 130));
  const v = parseInt(signature.slice(130), 16);
  const flipped = (v === 27 ? 28 : 27).toString(16);
  const cases: [string, Hex][] = [
    ["v - 27", `${signature.slice(0, 130)}0${v - 27}` as Hex],
    [
      "high s",
      `${signature.slice(0, 66)}${(n - s).toString(16).padStart(64, "0")}${flipped}` as Hex,
    ],
  ];
  for (const [label, bad] of cases) {
    // viem alone takes it for the payer's signature: the very hole.
    assert.equal(
      await recoverTypedDataAddress({
        domain,
        types: voucherTypes,
        primaryType: "Voucher",
        message: voucher,
        signature: bad,
      }),
      payer.address,
      label,
    );
    await assert.rejects(check(bad), VoucherSignatureError, label);
    assert.throws(() => checkSignature(bad), VoucherSignatureError, label);
  }
  assert.throws(() => checkSignature(`${signature}00` as Hex), VoucherSignatureError);
  checkSignature(signature);
  assert.equal(httpStatus(new VoucherSignatureError("v")), 402);
  assert.equal(httpStatus(new PayRateLimitedError("p")), 429);
  assert.equal(httpStatus(new DeskBusyError("p")), 503);
});

Deno.test("verifyVoucher() refuses a replay, a lower amount and more than the deposit", async () => {
  const signature = await signVoucher(payer, domain, voucher);
  await assert.rejects(check(signature, { accepted: parseEther("2") }), VoucherReplayError);
  await assert.rejects(check(signature, { accepted: parseEther("3") }), VoucherAmountError);
  await assert.rejects(check(signature, { deposit: parseEther("2") - 1n }), VoucherDepositError);
});

Deno.test("signVoucher() refuses malformed fields", async () => {
  await assert.rejects(
    signVoucher(payer, domain, { ...voucher, channel: "0x1234" }),
    TypeError,
  );
  await assert.rejects(
    signVoucher(payer, domain, { ...voucher, receiptCount: 1n << 64n }),
    RangeError,
  );
  assert.throws(() => hashVoucher(domain, { ...voucher, cumulativeAmount: -1n }), RangeError);
});
