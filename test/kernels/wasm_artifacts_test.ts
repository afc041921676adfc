/**
 * The kernels ship built (src/kernels/_wasm/*.wasm, committed) so that serving needs no compiler. These tests
 * keep them honest: the record matches assembly/, and the compiler rebuilds every kernel byte for byte.
 */
import assert from "node:assert/strict";
import {
  compileKernel,
  inputHash,
  KERNELS,
  readManifest,
  upToDate,
  WASM_DIR,
} from "../../assembly/build.ts";

Deno.test("committed kernels match assembly/ (else run deno task build)", async () => {
  const manifest = await readManifest();
  assert.ok(manifest, "src/kernels/_wasm/kernels.json is missing: run deno task build");
  assert.equal(
    manifest.inputHash,
    await inputHash(),
    'src/kernels/_wasm/ is stale: run "deno task build" and commit the .wasm files',
  );
  assert.deepEqual(Object.keys(manifest.kernels).sort(), KERNELS.map(([n]) => n).sort());
  assert.ok(await upToDate(manifest.inputHash), "a committed .wasm differs from kernels.json");
});

Deno.test("asc reproduces the committed kernels byte for byte", async () => {
  for (const [name] of KERNELS) {
    const { wasm } = await compileKernel(name);
    const committed = await Deno.readFile(new URL(`${name}.wasm`, WASM_DIR));
    assert.ok(
      wasm.length === committed.length && wasm.every((b, i) => b === committed[i]),
      `${name}.wasm differs from what assembly/ builds: run "deno task build"`,
    );
  }
});

Deno.test("a changed source makes the record stale", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // inputHash() reads assembly/ next to build.ts: hash a copy with one kernel edited.
    await Deno.mkdir(`${dir}/assembly`);
    await Deno.mkdir(`${dir}/src/kernels/_wasm`, { recursive: true });
    for await (const e of Deno.readDir(new URL("../../assembly/", import.meta.url))) {
      if (e.isFile) {
        await Deno.copyFile(
          new URL(`../../assembly/${e.name}`, import.meta.url),
          `${dir}/assembly/${e.name}`,
        );
      }
    }
    await Deno.copyFile(new URL("../../deno.json", import.meta.url), `${dir}/deno.json`);
    const copy = await import(`file://${dir}/assembly/build.ts`);
    assert.equal(await copy.inputHash(), await inputHash());
    await Deno.writeTextFile(`${dir}/assembly/xor.ts`, "\n// edited\n", { append: true });
    assert.notEqual(await copy.inputHash(), await inputHash());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
