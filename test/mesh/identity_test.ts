import assert from "node:assert/strict";
import { KeyFileError } from "../../src/mesh/errors.ts";
import { KEY_FILE, loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import { createMeshNode } from "../../src/mesh/node.ts";
import { SANITIZE, startNode, stopNodes } from "./_helpers.ts";

Deno.test({
  ...SANITIZE,
  name: "createMeshNode() keeps its peer ID across restarts from the same dataDir",
  fn: async () => {
    const dataDir = await Deno.makeTempDir();
    try {
      const first = await startNode({ dataDir: `${dataDir}/node` });
      const firstAddr = first.multiaddrs()[0]!;
      await stopNodes(first);
      const again = await createMeshNode({ dataDir: `${dataDir}/node`, start: false, listen: [] });
      const other = await createMeshNode({ dataDir: `${dataDir}/other`, start: false, listen: [] });
      assert.match(first.peerId, /^12D3KooW/); // Ed25519
      assert.equal(again.peerId, first.peerId);
      assert.ok(firstAddr.endsWith(`/p2p/${first.peerId}`));
      assert.notEqual(other.peerId, first.peerId);
      // The key the node signs with (offers, statements) is the one of the file, behind its peer ID.
      assert.ok(again.privateKey.equals(await loadOrCreatePrivateKey(`${dataDir}/node`)));
      const info = await Deno.stat(`${dataDir}/node/${KEY_FILE}`);
      assert.equal(info.mode! & 0o777, 0o600);
      assert.equal((await Deno.stat(`${dataDir}/node`)).mode! & 0o777, 0o700);
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "loadOrCreatePrivateKey() refuses a key file others can read, or one that is not a key",
  fn: async () => {
    const dataDir = await Deno.makeTempDir();
    const path = `${dataDir}/${KEY_FILE}`;
    try {
      const key = await loadOrCreatePrivateKey(dataDir);
      await Deno.chmod(path, 0o644);
      await assert.rejects(
        loadOrCreatePrivateKey(dataDir),
        (e) =>
          e instanceof KeyFileError && e.code === "invalid_key_file" && /chmod 600/.test(e.message),
      );
      await Deno.chmod(path, 0o600);
      assert.ok((await loadOrCreatePrivateKey(dataDir)).equals(key));
      await Deno.writeFile(path, new TextEncoder().encode("not a key"));
      await assert.rejects(
        loadOrCreatePrivateKey(dataDir),
        /does not hold a protobuf-encoded private key/,
      );
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
