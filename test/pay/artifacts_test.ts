import assert from "node:assert/strict";
import {
  abiExportName,
  type Artifacts,
  buildInput,
  compile,
  inputHash,
  readSources,
} from "../../contracts/compile.ts";
import * as abiModule from "../../src/pay/abi.ts";
import artifacts from "../../src/pay/artifacts.json" with { type: "json" };

const committed = artifacts as Artifacts;

Deno.test("committed artifacts match contracts/*.sol (else run deno task contracts)", async () => {
  const hash = await inputHash(buildInput(await readSources()));
  assert.equal(
    committed.inputHash,
    hash,
    'src/pay/artifacts.json is stale: run "deno task contracts"',
  );
  assert.equal(abiModule.inputHash, hash, 'src/pay/abi.ts is stale: run "deno task contracts"');
});

Deno.test("abi.ts exports the ABIs of artifacts.json", () => {
  const exported = abiModule as unknown as Record<string, unknown>;
  for (const [name, { abi }] of Object.entries(committed.contracts)) {
    assert.deepEqual(exported[abiExportName(name)], abi, name);
  }
  assert.deepEqual(Object.keys(committed.contracts).sort(), [
    "ChannelHub",
    "Escrow",
    "OperatorRegistry",
  ]);
});

Deno.test("solc reproduces the committed bytecode and ABIs", async () => {
  const input = buildInput(await readSources());
  const fresh = await compile(input, await inputHash(input));
  assert.deepEqual(fresh, committed);
});

Deno.test("compile() fails on a Solidity error", async () => {
  const input = buildInput({
    "Broken.sol": { content: "pragma solidity 0.8.37; contract B { uint x = ; }" },
  });
  await assert.rejects(compile(input, "x"), /solc reported 1 error/);
});
