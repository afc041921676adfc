/**
 * Where a kernel's `.wasm` bytes come from: `_wasm/<name>.wasm` beside this file. The browser bundle
 * (`web/build.ts`) swaps this module for one that carries the bytes inside the bundle, so the same
 * kernel modules run there with no extra request.
 *
 * @module
 */

const wasmDir = new URL("./_wasm/", import.meta.url);

// deno-lint-ignore no-explicit-any
const deno = (globalThis as any).Deno;

function missing(url: URL, cause: unknown): Error {
  // The .wasm files are committed: a missing one means a partial checkout or a failed build.
  return new Error(`kernel "${url.pathname}" is missing: run "deno task build"`, { cause });
}

/** The bytes of kernel `name`, read synchronously (kernels load on their first call). */
export function kernelBytes(name: string): Uint8Array {
  const url = new URL(`${name}.wasm`, wasmDir);
  if (url.protocol === "file:" && deno) {
    try {
      return deno.readFileSync(url);
    } catch (e) {
      if (e instanceof deno.errors.NotFound) throw missing(url, e);
      throw e;
    }
  }
  throw new Error(
    `kernel "${name}" cannot be read synchronously from ${url}: call "await prepareKernels()" first, or use the meshgate.js bundle`,
  );
}

/** The bytes of kernel `name`, read or fetched. */
export async function kernelBytesAsync(name: string): Promise<Uint8Array> {
  const url = new URL(`${name}.wasm`, wasmDir);
  if (url.protocol === "file:" && deno) {
    try {
      return await deno.readFile(url);
    } catch (e) {
      if (e instanceof deno.errors.NotFound) throw missing(url, e);
      throw e;
    }
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`kernel "${url}" could not be loaded: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}
