/**
 * Compiles `contracts/*.sol` with solc-js (Standard JSON) into `src/pay/artifacts.json` (ABI + bytecode per
 * deployable contract) and `src/pay/abi.ts` (the same ABIs `as const`, so viem infers argument and event types).
 *
 * Both outputs are committed: tests and the devnet never need solc. They carry a hash of the compiler version,
 * sources and settings; the compile is skipped when the hash is unchanged (solc-js is slow to load and run), and
 * `test/pay/artifacts_test.ts` fails when a source changed without a recompile.
 *
 * Usage: `deno run -A contracts/compile.ts [--force] [--check]`. `--check` only compares hashes (exit 1 if stale).
 *
 * @module
 */

/** The solc-js release that `deno.json` pins; the `pragma solidity` of every source names the same version. */
export const SOLC_VERSION = "0.8.37";
/** Target EVM. Anvil 1.7 supports it (and prague); public L2s do too. */
export const EVM_VERSION = "cancun";
/** Optimizer runs: tuned for calls (redeem, verifyReceipt) over deployment size. */
export const OPTIMIZER_RUNS = 10_000;

const contractsDir = new URL("./", import.meta.url);
const artifactsUrl = new URL("../src/pay/artifacts.json", import.meta.url);
const abiUrl = new URL("../src/pay/abi.ts", import.meta.url);

/** Standard JSON input for solc. */
export interface SolcInput {
  language: "Solidity";
  sources: Record<string, { content: string }>;
  settings: Record<string, unknown>;
}

/** One deployable contract in `artifacts.json`. */
export interface Artifact {
  abi: unknown[];
  bytecode: `0x${string}`;
}

/** The shape of `src/pay/artifacts.json`. */
export interface Artifacts {
  solcVersion: string;
  inputHash: string;
  contracts: Record<string, Artifact>;
}

/** Reads every `.sol` file of `contracts/`, keyed by file name, in a stable order. */
export async function readSources(
  dir: URL = contractsDir,
): Promise<Record<string, { content: string }>> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".sol")) names.push(entry.name);
  }
  names.sort();
  const sources: Record<string, { content: string }> = {};
  for (const name of names) {
    sources[name] = { content: await Deno.readTextFile(new URL(name, dir)) };
  }
  return sources;
}

/** The Standard JSON input for `sources` with the pinned settings. */
export function buildInput(sources: Record<string, { content: string }>): SolcInput {
  return {
    language: "Solidity",
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { enabled: true, runs: OPTIMIZER_RUNS },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
}

/** SHA-256 (hex) of the compiler version and the whole input: any change to a source or setting changes it. */
export async function inputHash(input: SolcInput): Promise<string> {
  const bytes = new TextEncoder().encode(SOLC_VERSION + "\n" + JSON.stringify(input));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface SolcError {
  severity: "error" | "warning" | "info";
  formattedMessage?: string;
  message: string;
}

interface SolcOutput {
  errors?: SolcError[];
  contracts?: Record<
    string,
    Record<string, { abi: unknown[]; evm: { bytecode: { object: string } } }>
  >;
}

/**
 * Runs solc on `input`. Throws on any error-severity entry; warnings go to stderr. Contracts with an empty
 * ABI (internal libraries such as `Receipts`) are left out.
 */
export async function compile(input: SolcInput, hash: string): Promise<Artifacts> {
  // Loaded lazily: importing solc-js compiles an 8 MB emscripten module, which --check must not pay for.
  const { default: solc } = await import("solc");
  const version: string = solc.version();
  if (!version.startsWith(SOLC_VERSION + "+")) {
    throw new Error(`solc "${version}" is not the pinned "${SOLC_VERSION}"`);
  }
  const output: SolcOutput = JSON.parse(
    solc.compile(JSON.stringify(input), {
      import: (path: string) => ({ error: `import "${path}" is outside contracts/` }),
    }),
  );
  const errors = output.errors ?? [];
  for (const e of errors) {
    if (e.severity !== "error") console.warn(e.formattedMessage ?? e.message);
  }
  const fatal = errors.filter((e) => e.severity === "error");
  if (fatal.length > 0) {
    throw new Error(
      `solc reported ${fatal.length} error(s):\n` +
        fatal.map((e) => e.formattedMessage ?? e.message).join("\n"),
    );
  }
  const contracts: Record<string, Artifact> = {};
  for (const file of Object.keys(output.contracts ?? {}).sort()) {
    for (const [name, c] of Object.entries(output.contracts![file]!)) {
      if (c.abi.length === 0) continue;
      contracts[name] = { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}` };
    }
  }
  return { solcVersion: version, inputHash: hash, contracts };
}

/** `ChannelHub` -> `channelHubAbi`. */
export function abiExportName(contract: string): string {
  return contract[0]!.toLowerCase() + contract.slice(1) + "Abi";
}

/** The text of `src/pay/abi.ts` for `artifacts` (before `deno fmt`). */
export function renderAbiModule(artifacts: Artifacts): string {
  const lines = [
    "// Generated by contracts/compile.ts from contracts/*.sol: do not edit, run `deno task contracts`.",
    "",
    "/** Hash of the solc version, sources and settings these ABIs were compiled from. */",
    `export const inputHash = ${JSON.stringify(artifacts.inputHash)};`,
  ];
  for (const [name, { abi }] of Object.entries(artifacts.contracts)) {
    lines.push("", `/** ABI of \`contracts/${name}.sol\`. */`);
    lines.push(`export const ${abiExportName(name)} = ${JSON.stringify(abi)} as const;`);
  }
  return lines.join("\n") + "\n";
}

/** The hash recorded in the committed `artifacts.json`, or undefined when it is missing. */
export async function committedHash(): Promise<string | undefined> {
  try {
    return (JSON.parse(await Deno.readTextFile(artifactsUrl)) as Artifacts).inputHash;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function main(args: string[]): Promise<number> {
  const input = buildInput(await readSources());
  const hash = await inputHash(input);
  const upToDate = (await committedHash()) === hash;
  if (args.includes("--check")) {
    if (upToDate) return 0;
    console.error('src/pay/artifacts.json is stale: run "deno task contracts"');
    return 1;
  }
  if (upToDate && !args.includes("--force")) {
    console.log("contracts: up to date");
    return 0;
  }
  const started = performance.now();
  const artifacts = await compile(input, hash);
  await Deno.writeTextFile(artifactsUrl, JSON.stringify(artifacts, null, 2) + "\n");
  await Deno.writeTextFile(abiUrl, renderAbiModule(artifacts));
  // Keep the generated files as `deno fmt --check` wants them.
  const fmt = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", "src/pay/artifacts.json", "src/pay/abi.ts"],
    cwd: new URL("../", import.meta.url),
  }).output();
  if (!fmt.success) throw new Error(`deno fmt failed: ${new TextDecoder().decode(fmt.stderr)}`);
  const names = Object.keys(artifacts.contracts).join(", ");
  console.log(`contracts: compiled ${names} in ${Math.round(performance.now() - started)} ms`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
