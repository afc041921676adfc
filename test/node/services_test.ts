import assert from "node:assert/strict";
import { ServiceList } from "../../src/service.ts";
import { MeshgateNode } from "../../src/node.ts";

Deno.test("services start in order and stop in reverse", async () => {
  const log: string[] = [];
  const list = new ServiceList();
  for (const name of ["a", "b", "c"]) {
    list.add(name, {
      start: () => void log.push(`start ${name}`),
      stop: () => void log.push(`stop ${name}`),
    });
  }
  await list.start();
  await list.start(); // idempotent
  await list.stop();
  await list.stop();
  assert.deepEqual(log, ["start a", "start b", "start c", "stop c", "stop b", "stop a"]);
  assert.throws(() => list.add("a", {}), /already/);
});

Deno.test("a failed start stops what had started, in reverse, and rethrows", async () => {
  const log: string[] = [];
  const list = new ServiceList();
  list.add("a", { start: () => void log.push("start a"), stop: () => void log.push("stop a") });
  list.add("b", { start: () => void log.push("start b"), stop: () => void log.push("stop b") });
  list.add("bad", {
    start: () => Promise.reject(new Error("port taken")),
    stop: () => void log.push("stop bad"),
  });
  list.add("never", { start: () => void log.push("start never") });
  await assert.rejects(list.start(), /port taken/);
  assert.deepEqual(log, ["start a", "start b", "stop b", "stop a"]);
});

Deno.test("a node takes extra services from its config and stops them before its store", async () => {
  const dataDir = await Deno.makeTempDir();
  const log: string[] = [];
  try {
    const node = await MeshgateNode.create({
      dataDir,
      parityWorkers: 0,
      services: [{
        name: "watcher",
        create: ({ store, services }) => ({
          start: () => void log.push(`start with ${services.names().join(",")}`),
          // The store is still open when a later service stops.
          stop: async () =>
            void log.push(`stop, store has ${await store.has(node.store.pins()[0]!)}`),
        }),
      }],
    });
    const { cid } = await node.put(ReadableStream.from([new Uint8Array([1, 2, 3])]));
    assert.ok(node.store.pins().some((p) => p.equals(cid)));
    assert.equal(node.services.get("watcher") !== undefined, true);
    await node.stop();
    assert.deepEqual(log, ["start with store,watcher", "stop, store has true"]);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
