import assert from "node:assert/strict";
import { runCli } from "../_util.ts";
import { pattern } from "../_util.ts";
import { spawnNode } from "../../src/cluster.ts";

Deno.test("serve, put and get round-trip a file through real processes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-cli-" });
  const server = await spawnNode(["--data", `${dir}/data`]);
  try {
    const file = `${dir}/photo.png`;
    const bytes = pattern(0, 700_000, 7);
    await Deno.writeFile(file, bytes);
    const put = await runCli(["put", file, "--gateway", server.url, "--k", "4", "--m", "2"]);
    assert.equal(put.code, 0, put.stderr);
    const [cid, url] = put.stdout.trim().split("\n");
    assert.equal(url, `${server.url}/mesh/${cid}`);

    const head = await fetch(url!, { method: "HEAD" });
    assert.equal(head.headers.get("content-type"), "image/png");
    assert.equal(head.headers.get("content-disposition"), 'inline; filename="photo.png"');

    const out = `${dir}/copy.png`;
    const get = await runCli(["get", cid!, "-o", out], { env: { MESH_GATEWAY: server.url } });
    assert.equal(get.code, 0, get.stderr);
    assert.deepEqual(await Deno.readFile(out), bytes);

    const toStdout = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "src/cli.ts", "get", cid!, "--gateway", server.url],
      stdout: "piped",
    }).output();
    assert.deepEqual(toStdout.stdout, bytes);

    const missing = await runCli([
      "get",
      "bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4",
      "-o",
      `${dir}/x`,
      "--gateway",
      server.url,
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No content found .* \(HTTP 404\)/);
    assert.throws(
      () => Deno.statSync(`${dir}/x`),
      Deno.errors.NotFound,
      "a failed get leaves no file",
    );

    const bad = await runCli(["get", "not-a-cid", "--gateway", server.url]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Invalid CID "not-a-cid"/);
  } finally {
    assert.equal(await server.stop("SIGTERM"), 0, "graceful shutdown exits 0");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the CLI explains usage errors with exit code 2 and unreachable gateways with 1", async () => {
  const cases: [string[], number, RegExp][] = [
    [[], 2, /Commands:/],
    [["frobnicate"], 2, /Unknown command "frobnicate"/],
    [["put"], 2, /exactly one FILE/],
    [["put", "/no/such/file"], 2, /Cannot read "\/no\/such\/file"/],
    [["get"], 2, /exactly one CID/],
    [["serve", "--port", "99999"], 2, /Port "99999"/],
    [["serve", "--max-store", "lots"], 2, /--max-store "lots" is not a size/],
    [["serve", "--bogus"], 2, /bogus/],
    [["serve", "--pay-http"], 2, /--pay-http needs --chain, a --price-served above 0/],
    [
      ["serve", "--relay", "--relay-reservations", "0"],
      2,
      /--relay-reservations "0" must be a positive whole number/,
    ],
    [["serve", "--relay", "--relay-circuit-data", "lots"], 2, /--relay-circuit-data "lots"/],
    [["serve", "--relay-circuit-time", "1000"], 2, /The --relay-\* limits need --relay/],
    [
      ["serve", "--relay-max-spend", "1.5"],
      2,
      /--relay-max-spend "1.5" must be a whole number of wei/,
    ],
    [
      [
        "serve",
        "--bootstrap",
        "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWPQabaGHX2HmoBHrr5op3vS78ZM9GbH5G24xuoMKvJXkv",
      ],
      2,
      /public mode never dials: pass --local/,
    ],
    [["get", "bafkqaaa", "--gateway", "http://127.0.0.1:9"], 1, /Cannot reach the gateway/],
  ];
  for (const [args, code, message] of cases) {
    const run = await runCli(args);
    assert.equal(run.code, code, `${args.join(" ")}: ${run.stderr}`);
    assert.match(run.stdout + run.stderr, message, args.join(" "));
  }
  for (const command of ["serve", "put", "get"]) {
    const help = await runCli([command, "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: deno task/);
  }
});

Deno.test("serve reads MESH_* settings from the environment and flags win over them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-env-" });
  const child = new Deno.Command(Deno.execPath(), {
    // --no-mesh: this test is about settings, and must not depend on the default mesh ports being free.
    args: ["run", "-A", "src/cli.ts", "serve", "--port", "0", "--max-upload", "1KiB", "--no-mesh"],
    env: { MESH_DATA_DIR: `${dir}/d`, MESH_MAX_UPLOAD: "1GiB", MESH_HOST: "127.0.0.1" },
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!/data: .*\n/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`serve exited before it was ready:\n${out}`);
    out += value;
  }
  const url = /gateway: (\S+)\/\n/.exec(out)![1];
  assert.match(out, new RegExp(`data: +${dir}/d`));
  const res = await fetch(`${url}/mesh`, { method: "POST", body: new Uint8Array(2048) });
  assert.equal(res.status, 413);
  await res.body?.cancel();
  child.kill("SIGINT");
  assert.equal((await child.status).code, 0);
  await reader.cancel();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve --chain turns payments on against a real devnet, and refuses a chain it cannot reach", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-chain-" });
  const { startDevnet } = await import("../../src/pay/devnet.ts");
  const devnet = await startDevnet({ port: 0, out: `${dir}/chain.json` });
  try {
    const server = await spawnNode([
      "--data",
      `${dir}/d`,
      "--chain",
      devnet.config.rpc,
      "--chain-file",
      `${dir}/chain.json`,
    ]);
    try {
      const ready = await (await fetch(`${server.url}/readyz`)).json();
      assert.equal(ready.payments.mode, "paid");
      assert.equal(ready.payments.chainId, devnet.config.chainId);
      assert.equal(ready.payments.contracts.channelHub, devnet.config.contracts.channelHub);
    } finally {
      await server.stop();
    }
    const volunteer = await spawnNode(["--data", `${dir}/v`]);
    assert.equal(
      (await (await fetch(`${volunteer.url}/readyz`)).json()).payments.mode,
      "volunteer",
    );
    await volunteer.stop();

    const unreachable = await runCli([
      "serve",
      "--port",
      "0",
      "--data",
      `${dir}/u`,
      "--chain",
      "http://127.0.0.1:9",
      "--chain-file",
      `${dir}/chain.json`,
    ]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /RPC "http:\/\/127.0.0.1:9" is unreachable/);
    const noFile = await runCli([
      "serve",
      "--port",
      "0",
      "--data",
      `${dir}/u`,
      "--chain",
      devnet.config.rpc,
      "--chain-file",
      `${dir}/none.json`,
    ]);
    assert.equal(noFile.code, 1);
    assert.match(noFile.stderr, /could not be read: run "deno task devnet"/);
  } finally {
    await devnet.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("repair rebuilds lost chunks of a stopped node, and exits 1 when a stripe is beyond repair", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-repair-cli-" });
  try {
    const { MeshgateNode } = await import("../../src/node.ts");
    const node = await MeshgateNode.create({ dataDir: dir, parityWorkers: 0 });
    const { manifest } = await node.put(ReadableStream.from([pattern(0, 5 * 4096, 3)]), {
      chunkSize: 4096,
      k: 3,
      m: 2,
    });
    await node.stop();
    const path = (c: { toString(): string }) => `${dir}/chunks/${`${c}`.slice(-2)}/${c}`;
    const [d0, , , p0] = manifest.stripes[0]!;
    await Deno.remove(path(d0!));
    await Deno.writeFile(path(p0!), new Uint8Array(4096));

    const fixed = await runCli(["repair", "--data", dir, "--json"]);
    assert.equal(fixed.code, 0, fixed.stderr);
    const report = JSON.parse(fixed.stdout);
    assert.equal(report.repaired, 2);
    assert.deepEqual(report.unrecoverable, []);
    assert.deepEqual(await Deno.readFile(path(d0!)), pattern(0, 4096, 3));

    for (const c of manifest.stripes[1]!.slice(0, 3)) await Deno.remove(path(c));
    const broken = await runCli(["repair", "--data", dir]);
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, /unrecoverable: stripe 1 of /);
    const wrong = await runCli(["repair", "--data", `${dir}/nope`]);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /not a Meshgate data directory/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve explains a mesh port that is taken", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-port-" });
  const first = await spawnNode(["--data", `${dir}/a`]);
  try {
    const taken = first.multiaddrs.find((a) => !a.includes("/ws"))!.split("/p2p/")[0]!;
    const second = await runCli(["serve", "--port", "0", "--data", `${dir}/b`, "--listen", taken]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /Cannot listen on \/ip4\/127\.0\.0\.1\/tcp\/\d+: in use/);
  } finally {
    await first.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("put and get find a serve --port 0 through its gateway.json, and get takes the URLs put prints", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-find-" });
  const data = `${dir}/data`;
  const server = await spawnNode(["--data", data]);
  try {
    const written = JSON.parse(await Deno.readTextFile(`${data}/gateway.json`));
    assert.equal(written.url, server.url);

    const file = `${dir}/notes.txt`;
    const bytes = new TextEncoder().encode("found without --gateway\n");
    await Deno.writeFile(file, bytes);
    // No --gateway, no MESH_GATEWAY: the data directory names the running node.
    const put = await runCli(["put", file, "--data", data]);
    assert.equal(put.code, 0, put.stderr);
    const [cid, url] = put.stdout.trim().split("\n");
    assert.equal(url, `${server.url}/mesh/${cid}`);
    const viaEnv = await runCli(["put", file], { env: { MESH_DATA_DIR: data } });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);

    // get takes the printed URL, the /ipfs/ URL, paths, ipfs:// and a bare CID alike.
    const forms = [
      url!,
      `${server.url}/ipfs/${cid}`,
      `/ipfs/${cid}`,
      `/mesh/${cid}`,
      `ipfs://${cid}`,
      cid!,
    ];
    for (const [i, form] of forms.entries()) {
      const out = `${dir}/copy${i}.txt`;
      const get = await runCli(["get", form, "-o", out, "--data", data]);
      assert.equal(get.code, 0, `${form}: ${get.stderr}`);
      assert.deepEqual(await Deno.readFile(out), bytes, form);
    }
    const nonsense = await runCli(["get", `${server.url}/api/files`]);
    assert.equal(nonsense.code, 2);
    assert.match(nonsense.stderr, /names no content: give a CID/);

    // A second serve on the same port says which port and what to do.
    const port = new URL(server.url).port;
    const busy = await runCli(["serve", "--no-mesh", "--port", port, "--data", `${dir}/second`]);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, new RegExp(`Port ${port} on 127.0.0.1 is in use .*--port 0`));

    // An explicit gateway wins over the data directory's file.
    const dead = "http://127.0.0.1:9";
    const flagWins = await runCli(["get", cid!, "--data", data, "--gateway", dead]);
    assert.equal(flagWins.code, 1);
    assert.match(flagWins.stderr, /Cannot reach the gateway at http:\/\/127.0.0.1:9.*--gateway/);
    const envWins = await runCli(["get", cid!, "--data", data], { env: { MESH_GATEWAY: dead } });
    assert.equal(envWins.code, 1);
    assert.match(envWins.stderr, /Cannot reach the gateway at http:\/\/127.0.0.1:9.*MESH_GATEWAY/);

    // curl's --data-binary sends application/x-www-form-urlencoded; the name's extension decides.
    const curl = await new Deno.Command("curl", {
      args: ["-sS", "--data-binary", `@${file}`, `${server.url}/mesh?name=notes.txt`],
      stdout: "piped",
    }).output().catch(() => undefined);
    if (curl) {
      assert.equal(curl.code, 0);
      const answer = JSON.parse(new TextDecoder().decode(curl.stdout));
      assert.equal(answer.type, "text/plain; charset=utf-8");
    }
  } finally {
    assert.equal(await server.stop("SIGTERM"), 0);
  }
  try {
    await assert.rejects(
      Deno.stat(`${data}/gateway.json`),
      Deno.errors.NotFound,
      "removed at stop",
    );
    // A file left by a node that died names a gateway that does not answer: the error says so.
    await Deno.writeTextFile(`${data}/gateway.json`, '{"url":"http://127.0.0.1:9","pid":1}');
    const stale = await runCli(["get", "bafkqaaa", "--data", data]);
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /gateway\.json names it, but that node seems to have stopped/);
    // A --data no node runs from is a mistake: said so, not sent to whatever runs on 8080.
    const typo = await runCli(["put", `${dir}/notes.txt`, "--data", `${dir}/nodata`]);
    assert.equal(typo.code, 1);
    assert.match(typo.stderr, /No node is running with --data .*nodata .*--gateway URL/);
    const notUrl = await runCli(["put", `${dir}/notes.txt`, "--gateway", "notaurl"]);
    assert.equal(notUrl.code, 1);
    assert.match(notUrl.stderr, /--gateway "notaurl" is not a gateway URL/);
    // No file, no flag: the default port, and a hint at the flags (only when nothing else has 8080).
    const free = await Deno.connect({ port: 8080 }).then((c) => (c.close(), false), () => true);
    if (free) {
      const none = await runCli(["get", "bafkqaaa"], { cwd: dir });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /Is "deno task serve" running\? .*--gateway URL/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("put refuses a directory as a usage error, and limits print in GiB", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-dir-" });
  try {
    const put = await runCli(["put", dir, "--gateway", "http://127.0.0.1:9"]);
    assert.equal(put.code, 2, put.stderr);
    assert.match(put.stderr, /is a directory: put uploads one file/);
    assert.doesNotMatch(put.stderr, /Cannot reach the gateway/);
    const help = await runCli(["serve", "--help"]);
    assert.match(help.stdout, /largest accepted upload +\[1 GiB\]/);
    assert.match(help.stdout, /store size cap +\[10 GiB\]/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
