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

export interface ServerProcess {
  url: string;
  /** The node's peer ID and mesh multiaddrs, as printed at start (empty with --no-mesh). */
  peerId?: string;
  multiaddrs: string[];
  pid: number;
  child: Deno.ChildProcess;
  /** Resident memory of the server process in bytes. */
  rss(): number;
  /** SIGTERM and wait; returns the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

const CLI = new URL("../src/cli.ts", import.meta.url).pathname;

/** Mesh listeners on free loopback ports, so servers in tests never collide on 4001/4002. */
export const LOOPBACK_MESH = [
  "--listen",
  "/ip4/127.0.0.1/tcp/0",
  "--listen",
  "/ip4/127.0.0.1/tcp/0/ws",
];

/** Runs `deno run -A src/cli.ts <args>` to completion. */
export async function runCli(
  args: string[],
  options: { stdin?: Uint8Array; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
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

/**
 * Starts `serve` on 127.0.0.1 with a free port and waits until it prints its gateway URL. `command`
 * replaces the whole deno command line, for other servers that print `gateway: <url>/` the same way.
 */
export async function startServer(args: string[] = [], command?: string[]): Promise<ServerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: command ?? ["run", "-A", CLI, "serve", "--port", "0", ...LOOPBACK_MESH, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let url: string | undefined;
  const timeout = setTimeout(() => child.kill("SIGKILL"), 30_000);
  while (!url) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`serve exited before listening; output: ${seen}`);
    seen += value;
    if (/^data: .*\n/m.test(seen) || command) url = /gateway: (http:\/\/\S+?)\/?\n/.exec(seen)?.[1];
  }
  clearTimeout(timeout);
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  const pid = child.pid;
  return {
    url,
    peerId: /^peer: +(\S+)$/m.exec(seen)?.[1],
    multiaddrs: [...seen.matchAll(/^mesh: +(\/\S+)$/gm)].map((m) => m[1]!),
    pid,
    child,
    rss() {
      const status = Deno.readTextFileSync(`/proc/${pid}/status`);
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
      return (await child.status).code;
    },
  };
}

/** POSTs a stream with a Content-Length, the way `deno task put` does (node:http; see `upload`). */
export function postStream(
  url: string,
  body: ReadableStream<Uint8Array>,
  size: number,
): Promise<Response> {
  return upload(new URL(url), body, { "Content-Length": String(size) });
}
