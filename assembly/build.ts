/**
 * Compiles each AssemblyScript kernel to `src/kernels/_wasm/<name>.wasm` (plus a `.wat` beside it to read).
 *
 * The `.wasm` files are committed with `kernels.json`, which records a hash of what built them (every
 * `assembly/*.ts`, each kernel's flags, the compiler's version) and of each output. So a clone serves
 * without the compiler: this script checks that record first and only loads AssemblyScript (and its ~100 MB
 * binaryen) when a source changed. `--force` rebuilds everything; `--check` compiles in memory and exits 1
 * if the committed kernels differ (test/kernels/wasm_artifacts_test.ts does the same).
 */

/** Output name, source file, extra compiler flags. */
export const KERNELS: [name: string, source: string, flags: string[]][] = [
  ["blake3", "blake3", []],
  ["erasure", "erasure", []],
  // Relaxed swizzle skips the out-of-range fix-up x64 needs (+40%); every index is 0–15, so results are
  // identical. The wrapper falls back to the portable build where relaxed SIMD is missing.
  ["erasure.relaxed", "erasure", ["--enable", "relaxed-simd"]],
  ["xor", "xor", []],
  ["receipts", "receipts", []],
];
/** Flags every kernel is built with. */
const COMMON_FLAGS = [
  "-O3",
  "--noAssert",
  "--runtime",
  "stub",
  "--enable",
  "simd",
  "--initialMemory",
  "2",
];
/** The compiler, pinned in deno.json; part of the recorded hash, so a bump rebuilds. */
export const ASC_SPECIFIER = "assemblyscript/asc";

const src = new URL("./", import.meta.url);
export const WASM_DIR = new URL("../src/kernels/_wasm/", import.meta.url);
const MANIFEST = new URL("kernels.json", WASM_DIR);

/** What `kernels.json` holds. */
export interface KernelManifest {
  /** SHA-256 of the sources, flags and compiler version that built the kernels. */
  inputHash: string;
  /** SHA-256 of each `<name>.wasm`. */
  kernels: Record<string, string>;
}

async function sha256(bytes: Uint8Array | string): Promise<string> {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The compiler's version as deno.json pins it (read without loading the compiler). */
async function ascVersion(): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  return String(config.imports?.[ASC_SPECIFIER] ?? "unpinned");
}

/** Hash of everything the kernels are built from. */
export async function inputHash(): Promise<string> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(src)) {
    if (entry.isFile && entry.name.endsWith(".ts") && entry.name !== "build.ts") {
      names.push(entry.name);
    }
  }
  const parts: string[] = [
    await ascVersion(),
    JSON.stringify(COMMON_FLAGS),
    JSON.stringify(KERNELS),
  ];
  for (const name of names.sort()) {
    parts.push(name, await sha256(await Deno.readFile(new URL(name, src))));
  }
  return sha256(parts.join("\n"));
}

/** Compiles one kernel in memory: its `.wasm` and `.wat`. Loads the compiler on first use. */
export async function compileKernel(
  name: string,
): Promise<{ wasm: Uint8Array; wat: string }> {
  const kernel = KERNELS.find(([n]) => n === name);
  if (!kernel) throw new Error(`unknown kernel "${name}"`);
  const [, source, flags] = kernel;
  // A computed specifier: Deno prefetches literal dynamic imports, and the compiler is only for rebuilds.
  const { default: asc } = (await import(ASC_SPECIFIER)) as typeof import("assemblyscript/asc");
  const outputs = new Map<string, Uint8Array | string>();
  const { error, stderr } = await asc.main([
    new URL(`${source}.ts`, src).pathname,
    "--outFile",
    `${name}.wasm`,
    "--textFile",
    `${name}.wat`,
    ...COMMON_FLAGS,
    ...flags,
  ], {
    writeFile: (file: string, contents: Uint8Array | string) => void outputs.set(file, contents),
  });
  if (error) throw new Error(`kernel "${name}" failed to compile:\n${stderr.toString()}`);
  const wasm = outputs.get(`${name}.wasm`);
  const wat = outputs.get(`${name}.wat`);
  if (!(wasm instanceof Uint8Array) || typeof wat !== "string") {
    throw new Error(`kernel "${name}": the compiler wrote no .wasm/.wat`);
  }
  return { wasm, wat };
}

/** The committed record, or undefined when there is none. */
export async function readManifest(): Promise<KernelManifest | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(MANIFEST));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** True when the record matches the sources and every `.wasm` on disk matches the record. */
export async function upToDate(hash: string): Promise<boolean> {
  const manifest = await readManifest();
  if (manifest?.inputHash !== hash) return false;
  for (const [name] of KERNELS) {
    try {
      if (
        manifest.kernels[name] !==
          await sha256(await Deno.readFile(new URL(`${name}.wasm`, WASM_DIR)))
      ) {
        return false;
      }
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw e;
    }
  }
  return true;
}

async function main(args: string[]): Promise<number> {
  const hash = await inputHash();
  if (args.includes("--check")) {
    const manifest = await readManifest();
    let stale = manifest?.inputHash !== hash;
    for (const [name] of KERNELS) {
      const { wasm } = await compileKernel(name);
      const committed = await Deno.readFile(new URL(`${name}.wasm`, WASM_DIR)).catch(() => null);
      if (!committed || (await sha256(committed)) !== (await sha256(wasm))) {
        console.error(`${name}.wasm differs from what assembly/ builds`);
        stale = true;
      }
    }
    if (stale) console.error('kernels are stale: run "deno task build"');
    return stale ? 1 : 0;
  }
  if (!args.includes("--force") && (await upToDate(hash))) return 0;
  await Deno.mkdir(WASM_DIR, { recursive: true });
  const kernels: Record<string, string> = {};
  let failed = false;
  for (const [name] of KERNELS) {
    const wasmFile = new URL(`${name}.wasm`, WASM_DIR);
    const started = performance.now();
    try {
      const { wasm, wat } = await compileKernel(name);
      await Deno.writeFile(wasmFile, wasm);
      await Deno.writeTextFile(new URL(`${name}.wat`, WASM_DIR), wat);
      kernels[name] = await sha256(wasm);
      const ms = (performance.now() - started).toFixed(0);
      console.error(`built ${name}.wasm (${wasm.length} bytes, ${ms} ms)`);
    } catch (e) {
      console.error((e as Error).message);
      failed = true;
      // A stale .wasm must not survive a failed build and pass for the new source.
      await Deno.remove(wasmFile).catch(() => {});
    }
  }
  if (failed) return 1;
  const manifest: KernelManifest = { inputHash: hash, kernels };
  await Deno.writeTextFile(MANIFEST, JSON.stringify(manifest, null, 2) + "\n");
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
