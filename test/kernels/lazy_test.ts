/**
 * Kernels load on first use: a process allowed to read only blake3.wasm can import the whole library and
 * make CIDs (before, every kernel was read at import and the import failed); each kernel instantiates
 * on its first call.
 */
import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url);

/** Runs `script` (imports relative to the repository) with read access to `allowRead` only. */
async function run(script: string, allowRead: string[]) {
  const file = new URL(`test/out/lazy-${crypto.randomUUID()}.ts`, root);
  await Deno.mkdir(new URL(".", file), { recursive: true });
  await Deno.writeTextFile(file, script.replaceAll('"./src/', '"../../src/'));
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      `--allow-read=${allowRead.map((p) => new URL(p, root).pathname).join(",")}`,
      "--allow-env",
      file.pathname,
    ],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
  }).output().finally(() => Deno.remove(file));
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout).trim(),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("the CID helpers load only the BLAKE3 kernel, with only its .wasm readable", async () => {
  const script = `
    import { cidOf } from "./src/content/cid.ts";
    import { loadedKernels } from "./src/kernels/mod.ts";
    const before = loadedKernels().join(",");
    const cid = cidOf(new TextEncoder().encode("hello")).toString();
    console.log(JSON.stringify({ before, cid, after: loadedKernels() }));
  `;
  const { code, stdout, stderr } = await run(script, [
    "src/kernels/_wasm/blake3.wasm",
    "node_modules",
  ]);
  assert.equal(code, 0, stderr);
  const got = JSON.parse(stdout);
  assert.equal(got.before, "");
  assert.match(got.cid, /^bafk/);
  assert.deepEqual(got.after, ["blake3"]);
});

Deno.test("the whole library imports without reading any kernel; each loads on its first call", async () => {
  const script = `
    import * as mesh from "./src/mod.ts";
    const seen = [mesh.loadedKernels().join(",")];
    mesh.rsEncode([new Uint8Array([1, 2]), new Uint8Array([3, 4]), new Uint8Array(2)], 2, 1);
    seen.push(mesh.loadedKernels().join(","));
    mesh.keccak256(new Uint8Array(0));
    seen.push(mesh.loadedKernels().join(","));
    console.log(JSON.stringify(seen));
  `;
  const { code, stdout, stderr } = await run(script, [
    "src/kernels/_wasm/erasure.wasm",
    "src/kernels/_wasm/erasure.relaxed.wasm",
    "src/kernels/_wasm/receipts.wasm",
    "node_modules",
  ]);
  assert.equal(code, 0, stderr);
  const [none, erasure, both] = JSON.parse(stdout);
  assert.equal(none, "");
  assert.match(erasure, /^erasure(\.relaxed)?$/);
  assert.equal(both, `${erasure},receipts`);
});

Deno.test("a kernel whose .wasm cannot be read fails on its first call with the cause", async () => {
  const script = `
    import { blake3 } from "./src/kernels/blake3.ts";
    try { blake3(new Uint8Array(1)); console.log("no error"); }
    catch (e) { console.log(String(e)); }
  `;
  const { code, stdout, stderr } = await run(script, ["README.md"]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /NotCapable|Requires read access/);
});
