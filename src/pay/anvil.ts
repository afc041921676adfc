/**
 * Finds and runs anvil, the local EVM chain used by the devnet and the tests.
 *
 * The binary ships in the npm package `@foundry-rs/anvil-linux-amd64` (Linux x64 only). The static JSON import
 * below puts that package in the module graph, so Deno (`"nodeModulesDir": "auto"`) installs it under
 * `node_modules/` on first use, also on a clean clone: no separate install step. `MESHGATE_ANVIL` overrides
 * the path (other platforms, a system-wide foundry).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import anvilPackage from "@foundry-rs/anvil-linux-amd64/package.json" with { type: "json" };
import { AnvilError } from "./errors.ts";

/** Path of the anvil binary: `$MESHGATE_ANVIL`, else the one in the npm package. */
export function anvilPath(): string {
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get("MESHGATE_ANVIL");
  } catch {
    // No --allow-env: use the package.
  }
  if (fromEnv) return fromEnv;
  const manifest = import.meta.resolve("@foundry-rs/anvil-linux-amd64/package.json");
  if (!manifest.startsWith("file:")) {
    throw new AnvilError(
      `Anvil package resolved to "${manifest}", not a file: use "nodeModulesDir": "auto" or set MESHGATE_ANVIL`,
    );
  }
  return fileURLToPath(new URL(anvilPackage.bin.anvil, manifest));
}

/** How to start anvil. */
export interface AnvilOptions {
  /** Interface to listen on. Default `"127.0.0.1"` (loopback only). */
  host?: string;
  /** Port; default 0, a free port chosen by the OS (read back from anvil's output). */
  port?: number;
  /** Chain id; default anvil's 31337. */
  chainId?: number;
  /** Seconds per block; default none: every transaction is mined at once. */
  blockTime?: number;
  /** Extra command-line arguments. */
  args?: string[];
  /** Milliseconds to wait for anvil to listen. Default 20 000. */
  startTimeout?: number;
}

/** A running anvil. Stop it in a `finally` (or `await using`). */
export interface Anvil extends AsyncDisposable {
  /** `http://host:port`. */
  rpc: string;
  host: string;
  port: number;
  chainId: number;
  pid: number;
  /** Resolves when the process has exited. */
  exited: Promise<Deno.CommandStatus>;
  /** Kills anvil (SIGTERM, then SIGKILL after 5 s) and waits for it. Safe to call twice. */
  stop(): Promise<void>;
}

const LISTENING = /Listening on ([^\s]+):(\d+)/;

/** Starts anvil and waits until it answers `eth_chainId`. */
export async function startAnvil(options: AnvilOptions = {}): Promise<Anvil> {
  const host = options.host ?? "127.0.0.1";
  const args = ["--host", host, "--port", String(options.port ?? 0)];
  if (options.chainId !== undefined) args.push("--chain-id", String(options.chainId));
  if (options.blockTime !== undefined) args.push("--block-time", String(options.blockTime));
  args.push(...(options.args ?? []));

  const path = anvilPath();
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(path, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
  } catch (e) {
    throw new AnvilError(`Anvil at "${path}" could not be started`, { cause: e });
  }

  // Both pipes are drained for the whole life of the process: a full pipe would block anvil. Only the last
  // lines are kept, for error messages.
  const tail: string[] = [];
  let onListening!: (port: number) => void;
  const listening = new Promise<number>((resolve) => (onListening = resolve));
  const pumps = Promise.all([
    pump(child.stdout, tail, (line) => {
      const m = LISTENING.exec(line);
      if (m) onListening(Number(m[2]));
    }),
    pump(child.stderr, tail, () => {}),
  ]);

  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      const killer = setTimeout(() => kill(child, "SIGKILL"), 5000);
      kill(child, "SIGTERM");
      await child.status;
      clearTimeout(killer);
      await pumps;
    })();

  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const port = await Promise.race([
      listening,
      child.status.then((s) => {
        throw new AnvilError(
          `Anvil exited with code ${s.code} before listening:\n${tail.join("\n")}`,
        );
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new AnvilError(`Anvil did not listen within ${options.startTimeout ?? 20000} ms`),
            ),
          options.startTimeout ?? 20000,
        );
      }),
    ]);
    const rpc = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
    const chainId = await rpcChainId(rpc);
    return {
      rpc,
      host,
      port,
      chainId,
      pid: child.pid,
      exited: child.status,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (e) {
    await stop();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

async function pump(
  stream: ReadableStream<Uint8Array<ArrayBuffer>>,
  tail: string[],
  onLine: (line: string) => void,
): Promise<void> {
  let rest = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + text).split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
      onLine(line);
      tail.push(line);
      if (tail.length > 40) tail.shift();
    }
  }
}

async function rpcChainId(rpc: string): Promise<number> {
  const res = await fetch(rpc, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
  });
  const body = await res.json();
  if (typeof body?.result !== "string") {
    throw new AnvilError(`Anvil at "${rpc}" answered eth_chainId with ${JSON.stringify(body)}`);
  }
  return Number(body.result);
}
