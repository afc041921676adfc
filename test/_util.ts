/** Test helpers: deterministic content, temp dirs, and a real `serve` process on a free loopback port. */
import { upload } from "../src/cli.ts";

/** Byte `i` of the pattern is a hash of `i`: any range can be regenerated without keeping the file. */
export function pattern(offset: number, length: number, seed = 1): Uint8Array<ArrayBuffer> {
  const firstWord = Math.floor(offset / 4);
  const words = new Uint32Array(Math.ceil((offset + length) / 4) - firstWord + 1);
  for (let j = 0; j < words.length; j++) {
    let w = Math.imul((firstWord + j) ^ seed, 0x9e3779b1);
    w ^= w >>> 15;
    w = Math.imul(w, 0x85ebca77);
    words[j] = w ^ (w >>> 13);
  }
  const skip = offset - firstWord * 4;
  return new Uint8Array(words.buffer, skip, length).slice();
}

/** A stream of `size` pattern bytes in `piece`-sized writes; never holds the whole file. */
export function patternStream(size: number, seed = 1, piece = 1 << 20): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= size) return controller.close();
      const n = Math.min(piece, size - offset);
      controller.enqueue(pattern(offset, n, seed));
      offset += n;
    },
  });
}

/** Consumes a stream, checking it equals pattern bytes from `offset`. Returns the byte count. */
export async function expectPattern(
  stream: ReadableStream<Uint8Array>,
  offset: number,
  seed = 1,
): Promise<number> {
  let pos = offset;
  for await (const piece of stream) {
    const want = pattern(pos, piece.length, seed);
    for (let i = 0; i < piece.length; i++) {
      if (piece[i] !== want[i]) {
        throw new Error(`byte ${pos + i} differs: ${piece[i]} != ${want[i]}`);
      }
    }
    pos += piece.length;
  }
  return pos - offset;
}

/** A seeded generator of numbers in [0, 1) (mulberry32), so a failing case can be replayed from its seed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** `n` bytes from a {@link seeded} generator. */
export function seededBytes(rand: () => number, n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 256) | 0;
  return out;
}

export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

export async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const CLI = new URL("../src/cli.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** Runs `deno run -A src/cli.ts <args>` to completion. */
export async function runCli(
  args: string[],
  options: { stdin?: Uint8Array; env?: Record<string, string>; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    // Elsewhere than the repository, the config is not found from the working directory.
    args: ["run", "-A", ...(options.cwd ? ["--config", CONFIG] : []), CLI, ...args],
    cwd: options.cwd,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  }).spawn();
  if (options.stdin) {
    const w = child.stdin.getWriter();
    await w.write(options.stdin);
    await w.close();
  }
  const { code, stdout, stderr } = await child.output();
  const dec = new TextDecoder();
  return { code, stdout: dec.decode(stdout), stderr: dec.decode(stderr) };
}

/** POSTs a stream with a Content-Length, the way `deno task put` does (node:http; see `upload`). */
export function postStream(
  url: string,
  body: ReadableStream<Uint8Array>,
  size: number,
): Promise<Response> {
  return upload(new URL(url), body, { "Content-Length": String(size) });
}
