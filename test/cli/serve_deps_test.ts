/**
 * A first `serve` installs only what it runs: Deno ("npm-lazy-caching") downloads the npm packages of the
 * module graph, so tooling packages must stay out of the graph of src/cli.ts.
 */
import assert from "node:assert/strict";

/** Packages that only builds, tests, benches or paid mode use (with their big dependencies). */
const NOT_FOR_SERVING = [
  "assemblyscript", // kernel compiler; the .wasm files are committed
  "binaryen",
  "solc", // contract compiler; artifacts are committed
  "@foundry-rs/anvil-linux-amd64", // local chain
  "playwright-core", // browser tests
  "hash-wasm", // bench and test oracles
  "@digitaldefiance/reed-solomon-erasure.wasm",
  "viem", // chain client: loaded only with --chain (src/pay/load.ts)
];

interface Info {
  roots: string[];
  modules: {
    specifier: string;
    dependencies?: { code?: { specifier: string } }[];
  }[];
  npmPackages: Record<string, { name: string; dependencies: string[] }>;
}

/** The npm packages (name@version) that running `entry` loads: code imports only, not `import type`. */
async function runtimePackages(entry: string): Promise<Set<string>> {
  const out = await new Deno.Command(Deno.execPath(), {
    // In auto mode npm imports stay npm: specifiers (manual mode shows node_modules paths).
    args: ["info", "--node-modules-dir=auto", "--json", entry],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info: Info = JSON.parse(new TextDecoder().decode(out.stdout));
  const modules = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const packages = new Set<string>();
  const visitPackage = (id: string) => {
    if (packages.has(id)) return;
    packages.add(id);
    for (const dep of info.npmPackages[id]?.dependencies ?? []) visitPackage(dep);
  };
  const visit = (specifier: string) => {
    if (seen.has(specifier)) return;
    seen.add(specifier);
    const npm = /^npm:\/?((?:@[^/@]+\/)?[^/@]+@[^/]+)/.exec(specifier);
    if (npm) {
      const id = Object.keys(info.npmPackages).find((k) =>
        k === npm[1] || k.startsWith(`${npm[1]}_`)
      );
      return visitPackage(id ?? npm[1]!);
    }
    for (const dep of modules.get(specifier)?.dependencies ?? []) {
      if (dep.code) visit(dep.code.specifier);
    }
  };
  for (const root of info.roots) visit(root);
  return packages;
}

Deno.test("src/cli.ts loads no build, test, chain or browser package", async () => {
  const packages = await runtimePackages("src/cli.ts");
  const names = new Set([...packages].map((id) => id.replace(/^(@?[^@]+)@.*$/, "$1")));
  assert.ok(names.has("libp2p") && names.has("hono"), `graph walk found ${[...names].join(", ")}`);
  const found = NOT_FOR_SERVING.filter((p) => names.has(p));
  assert.deepEqual(found, [], `serving would install ${found.join(", ")}`);
});

Deno.test("deno task serve installs only its graph: node_modules is manual, the CLI tasks opt into auto", async () => {
  // `deno task` installs every package of the lockfile before running a task unless node_modules is manual
  // (cli/tools/task.rs: cache_packages(PackageCaching::All)). So the config says manual, and the tasks a user
  // runs first install lazily (npm-lazy-caching), only what their module graph imports.
  const config = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  assert.equal(config.nodeModulesDir, "manual");
  assert.ok(config.unstable.includes("npm-lazy-caching"));
  for (const task of ["serve", "put", "get", "cluster", "repair", "devnet"]) {
    const { command, dependencies = [] } = config.tasks[task];
    assert.match(command, /^deno run --node-modules-dir=auto /, task);
    assert.deepEqual(dependencies, [], `${task} must not depend on build or deps`);
  }
});
