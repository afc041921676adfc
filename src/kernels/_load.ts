/**
 * Loads compiled kernels. Each kernel loads on its first call (a synchronous compile of a few KiB), so
 * importing one kernel, or the content helpers that use only BLAKE3, never reads or compiles the others;
 * calls stay synchronous. {@link prepareKernels} compiles ahead, off the caller's thread where the engine
 * can, for pages that would rather not compile on first use.
 */
import { kernelBytes, kernelBytesAsync } from "./_bytes.ts";

/** The exports every kernel shares: its linear memory. Each kernel adds its own functions. */
export interface KernelExports {
  memory: WebAssembly.Memory;
}

/** Compiled modules by kernel name: filled by the first use or by {@link prepareKernels}. */
const modules = new Map<string, WebAssembly.Module>();
/** Names of kernels instantiated so far (what a process has actually loaded). */
const instantiated = new Set<string>();

/** Instantiates a compiled kernel. AssemblyScript's `abort` becomes a thrown Error with its message. */
function instantiate<T extends KernelExports>(name: string, module: WebAssembly.Module): T {
  // Reads an AssemblyScript string; `instance` exists by the time any exported function can abort.
  const readString = (ptr: number): string => {
    if (!ptr) return "";
    const memory = instance.exports.memory as WebAssembly.Memory;
    const len = new Uint32Array(memory.buffer, ptr - 4, 1)[0]! >>> 1;
    return String.fromCharCode(...new Uint16Array(memory.buffer, ptr, len));
  };
  const instance = new WebAssembly.Instance(module, {
    env: {
      abort(msg: number, file: number, line: number, col: number) {
        throw new Error(`kernel ${name}: ${readString(msg)} (${readString(file)}:${line}:${col})`);
      },
    },
  });
  instantiated.add(name);
  return instance.exports as unknown as T;
}

/** A fresh instance of `_wasm/<name>.wasm`, compiled now if it was not prepared. */
export function loadKernelSync<T extends KernelExports>(name: string): T {
  let module = modules.get(name);
  if (!module) {
    module = new WebAssembly.Module(kernelBytes(name) as Uint8Array<ArrayBuffer>);
    modules.set(name, module);
  }
  return instantiate<T>(name, module);
}

/** A fresh instance of `_wasm/<name>.wasm`, compiled asynchronously. */
export async function loadKernel<T extends KernelExports>(name: string): Promise<T> {
  await prepareKernel(name);
  return instantiate<T>(name, modules.get(name)!);
}

async function prepareKernel(name: string): Promise<void> {
  if (modules.has(name)) return;
  const bytes = await kernelBytesAsync(name);
  modules.set(name, await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>));
}

/**
 * A getter for one shared instance of kernel `name`, made on the first call (then `init` runs once with
 * it, to read its fixed addresses).
 */
export function lazyKernel<K extends KernelExports, S>(
  name: string,
  init: (kernel: K) => S,
): () => S {
  let state: S | undefined;
  return () => state ??= init(loadKernelSync<K>(name));
}

/**
 * Compiles kernels ahead of their first call (all of them by default): asynchronously, so a page's main
 * thread does not compile. Calls work without it; this only moves the compile earlier.
 */
export async function prepareKernels(
  names: readonly string[] = ["blake3", "erasure", "erasure.relaxed", "xor", "receipts"],
): Promise<void> {
  await Promise.all(names.map(async (name) => {
    try {
      await prepareKernel(name);
    } catch (e) {
      // A build for an optional engine feature (erasure.relaxed) is skipped where the engine lacks it.
      if (!(name.includes(".") && e instanceof WebAssembly.CompileError)) throw e;
    }
  }));
}

/** Names of the kernels instantiated so far in this process, sorted. */
export function loadedKernels(): string[] {
  return [...instantiated].sort();
}

/** Grows `memory` so that it holds at least `bytes` bytes. */
export function ensureMemory(memory: WebAssembly.Memory, bytes: number): void {
  const have = memory.buffer.byteLength;
  if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
}
