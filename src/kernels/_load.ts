/** Loads one compiled kernel. Runs once per kernel at import time (top-level await), so calls stay synchronous. */

const wasmDir = new URL("./_wasm/", import.meta.url);

/** The exports every kernel shares: its linear memory. Each kernel adds its own functions. */
export interface KernelExports {
  memory: WebAssembly.Memory;
}

async function readBytes(url: URL): Promise<Uint8Array> {
  // deno-lint-ignore no-explicit-any
  const deno = (globalThis as any).Deno;
  if (url.protocol === "file:" && deno) {
    try {
      return await deno.readFile(url);
    } catch (e) {
      if (e instanceof deno.errors.NotFound) {
        // The .wasm files are committed: a missing one means a partial checkout or a failed build.
        throw new Error(`kernel "${url.pathname}" is missing: run "deno task build"`, {
          cause: e,
        });
      }
      throw e;
    }
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`kernel "${url}" could not be loaded: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** Instantiates `_wasm/<name>.wasm`. AssemblyScript's `abort` becomes a thrown Error with its message. */
export async function loadKernel<T extends KernelExports>(name: string): Promise<T> {
  const bytes = await readBytes(new URL(`${name}.wasm`, wasmDir));
  // Reads an AssemblyScript string; `instance` exists by the time any exported function can abort.
  const readString = (ptr: number): string => {
    if (!ptr) return "";
    const memory = instance.exports.memory as WebAssembly.Memory;
    const len = new Uint32Array(memory.buffer, ptr - 4, 1)[0]! >>> 1;
    return String.fromCharCode(...new Uint16Array(memory.buffer, ptr, len));
  };
  const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  const instance = await WebAssembly.instantiate(module, {
    env: {
      abort(msg: number, file: number, line: number, col: number) {
        throw new Error(`kernel ${name}: ${readString(msg)} (${readString(file)}:${line}:${col})`);
      },
    },
  });
  return instance.exports as unknown as T;
}

/** Grows `memory` so that it holds at least `bytes` bytes. */
export function ensureMemory(memory: WebAssembly.Memory, bytes: number): void {
  const have = memory.buffer.byteLength;
  if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
}
