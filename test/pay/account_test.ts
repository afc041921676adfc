/** Where a node's pay key comes from: flags, key files (mode 0600 only), the environment, the dev default. */
import assert from "node:assert/strict";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  devAccountFor,
  payAccount,
  PayKeyError,
  type PayKeySources,
  resolvePayAccount,
} from "../../src/pay/mod.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-paykey-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function sources(dataDir: string, more: Partial<PayKeySources> = {}): PayKeySources {
  return { dataDir, chainId: 31337, ...more };
}

Deno.test("each data directory gets its own dev account, the same on every start", async () => {
  await withDir(async (dir) => {
    const accounts = await Promise.all(
      ["a", "b", "c", "d", "e", "f", "g", "h"].map((n) =>
        resolvePayAccount(sources(`${dir}/node-${n}`))
      ),
    );
    assert.ok(accounts.every((a) => a.source === "dev" && a.derived));
    const addresses = new Set(accounts.map((a) => a.account.address));
    assert.equal(addresses.size, 8, "distinct");
    // Stable: the same directory, spelt another way, is the same account.
    const again = await resolvePayAccount(sources(`${dir}/./node-a/`));
    assert.equal(again.account.address, accounts[0]!.account.address);
    assert.equal(devAccountFor(`${dir}/node-a`).address, accounts[0]!.account.address);
    // Never one of anvil's well-known ten, which every local node used to share.
    for (let i = 0; i < 10; i++) assert.ok(!addresses.has(payAccount(`dev:${i}`).address));
  });
});

Deno.test("<data>/pay.key is used when present, and refused when others may read it", async () => {
  await withDir(async (dir) => {
    const key = generatePrivateKey();
    const path = `${dir}/pay.key`;
    await Deno.writeTextFile(path, `${key}\n`, { mode: 0o600 });
    const found = await resolvePayAccount(sources(dir));
    assert.equal(found.source, "data");
    assert.equal(found.path, path);
    assert.equal(found.account.address, privateKeyToAccount(key).address);
    // Off anvil too: a key file needs no dev chain.
    assert.equal((await resolvePayAccount(sources(dir, { chainId: 1 }))).source, "data");

    for (const mode of [0o644, 0o640, 0o604]) {
      await Deno.chmod(path, mode);
      await assert.rejects(
        resolvePayAccount(sources(dir)),
        (e: unknown) =>
          e instanceof PayKeyError && e.code === "pay_key" &&
          e.message.includes(`(mode ${mode.toString(8)}): run "chmod 600 ${path}"`) &&
          !e.message.includes(key.slice(2)),
      );
    }
  });
});

Deno.test("--pay-key-file, MESH_PAY_KEY and --pay-key, in that order of precedence after the flag", async () => {
  await withDir(async (dir) => {
    const [k1, k2, k3] = [generatePrivateKey(), generatePrivateKey(), generatePrivateKey()];
    await Deno.writeTextFile(`${dir}/pay.key`, k1, { mode: 0o600 });
    await Deno.writeTextFile(`${dir}/other.key`, k2, { mode: 0o600 });
    const address = (k: `0x${string}`) => privateKeyToAccount(k).address;

    const file = await resolvePayAccount(sources(dir, { keyFile: `${dir}/other.key`, envKey: k3 }));
    assert.deepEqual([file.source, file.account.address], ["file", address(k2)]);
    const env = await resolvePayAccount(sources(dir, { envKey: k3 }));
    assert.deepEqual([env.source, env.account.address], ["env", address(k3)]);

    const warnings: string[] = [];
    const onWarning = (msg: string) => warnings.push(msg);
    const raw = await resolvePayAccount(sources(dir, { key: k3, onWarning }));
    assert.deepEqual([raw.source, raw.account.address], ["flag", address(k3)]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /visible in the process list/);
    assert.match(warnings[0]!, /--pay-key-file FILE or MESH_PAY_KEY/);
    assert.ok(!warnings[0]!.includes(k3.slice(2)), "the warning does not repeat the key");
    // dev:N is public: no warning.
    const dev = await resolvePayAccount(sources(dir, { key: "dev:3", onWarning }));
    assert.equal(dev.account.address, payAccount("dev:3").address);
    assert.equal(warnings.length, 1);

    await assert.rejects(
      resolvePayAccount(sources(dir, { key: "dev:3", keyFile: `${dir}/other.key` })),
      /either --pay-key or --pay-key-file/,
    );
    await assert.rejects(
      resolvePayAccount(sources(dir, { keyFile: `${dir}/missing.key` })),
      /Pay key file ".*missing.key" not found/,
    );
    await Deno.writeTextFile(`${dir}/bad.key`, "0x1234", { mode: 0o600 });
    await assert.rejects(
      resolvePayAccount(sources(dir, { keyFile: `${dir}/bad.key` })),
      (e: unknown) => e instanceof PayKeyError && /0x private key of 32 bytes/.test(e.message),
    );
  });
});

Deno.test("off anvil, a node without a key is told where to put one", async () => {
  await withDir(async (dir) => {
    await assert.rejects(
      resolvePayAccount(sources(dir, { chainId: 8453 })),
      (e: unknown) =>
        e instanceof PayKeyError && e.message.includes(`${dir}/pay.key`) &&
        e.message.includes("--pay-key-file FILE or MESH_PAY_KEY"),
    );
  });
});
