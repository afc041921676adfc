/** The API token through the command line: `serve --api-token`, `put` with MESH_API_TOKEN or the node's
 * api.token, and the default. */
import assert from "node:assert/strict";
import { apiTokenFor } from "../../src/cli.ts";
import { spawnNode } from "../../src/cluster.ts";
import { runCli } from "../_util.ts";

Deno.test("serve --api-token makes writes need the token; put sends it from MESH_API_TOKEN", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-token-cli-" });
  const token = "cli-test-token-0123456789abcdef";
  const server = await spawnNode(["--data", `${dir}/data`, "--api-token", token, "--no-mesh"]);
  try {
    const file = `${dir}/notes.txt`;
    await Deno.writeTextFile(file, "operator only\n");
    const refused = await runCli(["put", file, "--gateway", server.url]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /API token.*\(HTTP 401\)/);
    const put = await runCli(["put", file, "--gateway", server.url], {
      env: { MESH_API_TOKEN: token },
    });
    assert.equal(put.code, 0, put.stderr);
    const [cid] = put.stdout.trim().split("\n");
    assert.equal(await (await fetch(`${server.url}/mesh/${cid}`)).text(), "operator only\n");
    // The upload answer's durability is said on stderr: a lone node is the file's only holder.
    assert.match(put.stderr, /lost if its one holder is lost · 1 holder/);

    // put --data finds the node through its gateway.json and takes the token kept beside it, but never
    // sends that token to a gateway named by --gateway (another host, perhaps).
    await Deno.writeTextFile(`${dir}/data/api.token`, `${token}\n`, { mode: 0o600 });
    const byData = await runCli(["put", file, "--data", `${dir}/data`]);
    assert.equal(byData.code, 0, byData.stderr);
    const byUrl = await runCli(["put", file, "--gateway", server.url, "--data", `${dir}/data`]);
    assert.equal(byUrl.code, 1);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("beyond loopback a token is made on first start and shown once; loopback needs none", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-token-host-" });
  try {
    for (const host of ["127.0.0.1", "::1", "localhost", "127.0.0.5"]) {
      assert.deepEqual(await apiTokenFor(host, `${dir}/lo`, undefined), {}, host);
    }
    await assert.rejects(Deno.stat(`${dir}/lo`));
    const first = await apiTokenFor("0.0.0.0", `${dir}/data`, undefined);
    assert.ok(first.token && first.note?.startsWith(first.token), "the new token is shown");
    assert.equal(await Deno.readTextFile(`${dir}/data/api.token`), `${first.token}\n`);
    assert.equal((await Deno.stat(`${dir}/data/api.token`)).mode! & 0o777, 0o600);
    const again = await apiTokenFor("192.168.1.10", `${dir}/data`, undefined);
    assert.equal(again.token, first.token);
    assert.ok(!again.note!.includes(first.token!), "shown only once");
    const given = await apiTokenFor("0.0.0.0", `${dir}/data`, "given-token-0123456789");
    assert.equal(given.token, "given-token-0123456789");
    await assert.rejects(apiTokenFor("::", dir, "short"), /at least 16/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
