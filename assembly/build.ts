/**
 * Compiles each AssemblyScript kernel to `src/kernels/_wasm/<name>.wasm` (plus a `.wat` beside it to read).
 * A kernel is rebuilt only when a source in `assembly/` is newer than its output, so `deno task test`
 * and `deno task serve` pay for the compiler once.
 */
import asc from "assemblyscript/asc";

/** Output name, source file, extra compiler flags. */
const KERNELS: [name: string, source: string, flags: string[]][] = [
  ["blake3", "blake3", []],
  ["erasure", "erasure", []],
  // Relaxed swizzle skips the out-of-range fix-up x64 needs (+40%); every index is 0–15, so results are
  // identical. The wrapper falls back to the portable build where relaxed SIMD is missing.
  ["erasure.relaxed", "erasure", ["--enable", "relaxed-simd"]],
  ["xor", "xor", []],
  ["receipts", "receipts", []],
];
const src = new URL("./", import.meta.url);
const out = new URL("../src/kernels/_wasm/", import.meta.url);

async function mtime(url: URL): Promise<number> {
  try {
    return (await Deno.stat(url)).mtime?.getTime() ?? 0;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
}

let newestSource = 0;
for await (const entry of Deno.readDir(src)) {
  if (entry.isFile && entry.name.endsWith(".ts") && entry.name !== "build.ts") {
    newestSource = Math.max(newestSource, await mtime(new URL(entry.name, src)));
  }
}

await Deno.mkdir(out, { recursive: true });
const force = Deno.args.includes("--force");
let failed = false;
for (const [name, source, flags] of KERNELS) {
  const input = new URL(`${source}.ts`, src);
  if (!(await mtime(input))) continue;
  const wasm = new URL(`${name}.wasm`, out);
  if (!force && (await mtime(wasm)) > newestSource) continue;
  const started = performance.now();
  const { error, stderr } = await asc.main([
    input.pathname,
    "--outFile",
    wasm.pathname,
    "--textFile",
    new URL(`${name}.wat`, out).pathname,
    "-O3",
    "--noAssert",
    "--runtime",
    "stub",
    "--enable",
    "simd",
    "--initialMemory",
    "2",
    ...flags,
  ]);
  if (error) {
    console.error(`kernel "${name}" failed to compile:\n${stderr.toString()}`);
    failed = true;
    // A stale .wasm must not survive a failed build and pass for the new source.
    await Deno.remove(wasm).catch(() => {});
    continue;
  }
  const ms = (performance.now() - started).toFixed(0);
  console.error(`built ${name}.wasm (${(await Deno.stat(wasm)).size} bytes, ${ms} ms)`);
}
if (failed) Deno.exit(1);
