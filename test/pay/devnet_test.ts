import assert from "node:assert/strict";
import { anvilPath } from "../../src/pay/anvil.ts";
import { loadChain, readChainConfig, writeChainConfig } from "../../src/pay/chain.ts";
import { startDevnet } from "../../src/pay/devnet.ts";
import { ChainConfigError } from "../../src/pay/errors.ts";

async function reachable(rpc: string): Promise<boolean> {
  try {
    const res = await fetch(rpc, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
    });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

Deno.test("anvilPath() finds the executable from the npm package", async () => {
  const path = anvilPath();
  assert.match(path, /@foundry-rs\/anvil-linux-amd64\/bin\/anvil$/);
  const info = await Deno.stat(path);
  assert.ok(info.isFile && (info.mode! & 0o111) !== 0, "executable");
});

Deno.test("startDevnet() deploys, writes the chain file, and stop() kills anvil", async () => {
  const dir = await Deno.makeTempDir();
  const out = `${dir}/chain.json`;
  const devnet = await startDevnet({ out });
  try {
    assert.match(devnet.config.rpc, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(await readChainConfig(out), devnet.config);
    assert.deepEqual(await loadChain({ file: out }), devnet.config);

    // A file that names another chain, or a contract that is not there, is refused.
    const wrong = `${dir}/wrong.json`;
    await writeChainConfig(wrong, { ...devnet.config, chainId: 1 });
    await assert.rejects(loadChain({ file: wrong }), ChainConfigError);
    const contracts = {
      ...devnet.config.contracts,
      escrow: "0x000000000000000000000000000000000000dEaD" as const,
    };
    await writeChainConfig(wrong, { ...devnet.config, contracts });
    await assert.rejects(loadChain({ file: wrong }), /No contract "escrow"/);
  } finally {
    await devnet.stop();
  }
  assert.equal(await reachable(devnet.config.rpc), false, "anvil is gone");
  await assert.rejects(Deno.stat(out), Deno.errors.NotFound);
  await assert.rejects(loadChain({ file: out }), ChainConfigError);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readChainConfig() refuses a malformed file", async () => {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(
      file,
      JSON.stringify({ chainId: 31337, rpc: "http://x", contracts: {} }),
    );
    await assert.rejects(readChainConfig(file), ChainConfigError);
    await Deno.writeTextFile(file, "{");
    await assert.rejects(readChainConfig(file), ChainConfigError);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("devnet.ts runs until SIGINT, then stops anvil and removes the chain file", async () => {
  const dir = await Deno.makeTempDir();
  const out = `${dir}/chain.json`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/pay/devnet.ts", "--port", "0", "--out", out],
    cwd: new URL("../../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  try {
    const deadline = Date.now() + 30_000;
    while (true) {
      try {
        const config = await loadChain({ file: out });
        assert.equal(config.chainId, 31337);
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const { rpc } = await readChainConfig(out);
    child.kill("SIGINT");
    const { code, stdout } = await output;
    assert.equal(code, 0, new TextDecoder().decode(stdout));
    assert.match(new TextDecoder().decode(stdout), /devnet: stopped \(SIGINT\)/);
    assert.equal(await reachable(rpc), false, "anvil is gone");
    await assert.rejects(Deno.stat(out), Deno.errors.NotFound);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await output;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task devnet, with the permissions deno.json gives it, writes --out outside .meshgate", async () => {
  const root = new URL("../../", import.meta.url);
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  const [deno, ...args] = (config.tasks.devnet.command as string).split(/\s+/);
  assert.equal(deno, "deno");
  const dir = await Deno.makeTempDir();
  const out = `${dir}/sub/chain.json`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [...args, "--port", "0", "--out", out],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  let exited = false;
  child.status.then(() => (exited = true));
  try {
    const deadline = Date.now() + 30_000;
    while (true) {
      try {
        assert.equal((await readChainConfig(out)).chainId, 31337);
        break;
      } catch (e) {
        if (exited) assert.fail(new TextDecoder().decode((await output).stderr));
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    child.kill("SIGINT");
    const { code, stderr } = await output;
    assert.equal(code, 0, new TextDecoder().decode(stderr));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await output;
    await Deno.remove(dir, { recursive: true });
  }

  // A chain file it cannot write is one line, not a stack trace.
  const denied = await new Deno.Command(Deno.execPath(), {
    args: [...args, "--port", "0", "--out", "/proc/meshgate/chain.json"],
    cwd: root,
    stdout: "null",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(denied.stderr).trim();
  assert.equal(denied.code, 1);
  assert.equal(text.split("\n").length, 1, text);
  assert.match(text, /^devnet: .*\/proc\/meshgate/);
});
