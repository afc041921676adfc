/** Killing a node mid-upload leaves a consistent store: no partial chunk visible, nothing pinned. */
import assert from "node:assert/strict";
import { ChunkStore } from "../../src/store/store.ts";
import { patternStream, postStream } from "../_util.ts";
import { spawnNode } from "../../src/cluster.ts";

Deno.test("SIGKILL during an upload leaves only whole, verified chunks and a store that reopens", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-crash-" });
  const server = await spawnNode(["--data", dir]);
  try {
    const size = 512 * 1024 * 1024;
    const upload = postStream(`${server.url}/mesh`, patternStream(size), size).catch((e) => e);
    // Wait until chunks are landing, then kill without warning.
    for (let i = 0; i < 400; i++) {
      const chunks = [...Deno.readDirSync(`${dir}/chunks`)].length;
      if (chunks > 30) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await server.stop("SIGKILL");
    assert.ok((await upload) instanceof Error, "the upload cannot have completed");

    const store = await ChunkStore.open(dir);
    assert.deepEqual(
      [...Deno.readDirSync(`${dir}/tmp`)],
      [],
      "unfinished writes are cleared at open",
    );
    let checked = 0;
    for await (const cid of store.cids()) {
      assert.ok(await store.get(cid), `chunk ${cid} is whole`);
      checked++;
    }
    assert.ok(checked > 0);
    assert.equal(store.stats().corrupt, 0);
    assert.equal(store.stats().chunks, checked);
    assert.deepEqual(store.pins(), [], "an unfinished upload pins nothing");

    const again = await spawnNode(["--data", dir]);
    try {
      const res = await fetch(`${again.url}/mesh`, { method: "POST", body: "after the crash" });
      assert.equal(res.status, 201);
      const { cid } = await res.json();
      assert.equal(await (await fetch(`${again.url}/mesh/${cid}`)).text(), "after the crash");
    } finally {
      await again.stop();
    }
  } finally {
    await server.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});
