import { httpStatus } from "../../edge/errors.ts";
import assert from "node:assert/strict";
import { ChunkMismatchError, type CID, cidOf } from "../../src/content/cid.ts";
import { encodeUvarint, FrameReader, writeFrame } from "../../src/mesh/_framing.ts";
import {
  CHUNK_PROTOCOL,
  type ChunkSource,
  MAX_CHUNK_BYTES,
  type MisbehaviourReport,
} from "../../src/mesh/exchange.ts";
import {
  ExchangeProtocolError,
  MessageTooLargeError,
  PeerTimeoutError,
  PeerUnreachableError,
} from "../../src/mesh/errors.ts";
import { MemorySource, randomBytes, SANITIZE, startNode, stopNodes } from "./_helpers.ts";

function chunk(size: number): { cid: CID; bytes: Uint8Array } {
  const bytes = randomBytes(size);
  return { cid: cidOf(bytes), bytes };
}

async function fill(source: MemorySource, ...chunks: { cid: CID; bytes: Uint8Array }[]) {
  for (const c of chunks) await source.put(c.cid, c.bytes);
}

Deno.test({
  ...SANITIZE,
  name: "exchange get, has and put round-trip between two nodes",
  fn: async () => {
    const store = new MemorySource();
    const [x, y, big] = [chunk(1000), chunk(1), chunk(MAX_CHUNK_BYTES)];
    const missing = chunk(10);
    await fill(store, x, y, big);
    const server = await startNode({ store });
    const client = await startNode({ store: new MemorySource() });
    try {
      const target = server.multiaddrs()[0]!;
      assert.deepEqual(await client.fetchChunk(target, x.cid), x.bytes);
      assert.equal(await client.fetchChunk(server.peerId, missing.cid), null);
      assert.deepEqual(await client.fetchChunk(server.peerId, big.cid), big.bytes);

      const got = [];
      for await (const c of client.fetchChunks(server.peerId, [y.cid, missing.cid, x.cid])) {
        got.push(c);
      }
      assert.deepEqual(got.map((c) => c.cid.toString()), [y.cid, missing.cid, x.cid].map(String));
      assert.deepEqual(got.map((c) => c.bytes), [y.bytes, null, x.bytes]);

      assert.deepEqual(await client.hasChunks(server.peerId, [x.cid, missing.cid, big.cid]), [
        true,
        false,
        true,
      ]);

      const z = chunk(5000);
      const results = await client.storeChunks(server.peerId, [z, x]);
      assert.deepEqual(results, [{ cid: z.cid, accepted: true }, { cid: x.cid, accepted: true }]);
      assert.deepEqual(await store.get(z.cid), z.bytes);
      assert.equal(client.misbehaviour().size, 0);
      assert.equal(server.misbehaviour().size, 0);
    } finally {
      await stopNodes(client, server);
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "exchange splits requests over 512 CIDs into batches, answering in order",
  fn: async () => {
    const store = new MemorySource();
    const chunks = Array.from({ length: 600 }, () => chunk(16));
    await fill(store, ...chunks.filter((_, i) => i % 3 !== 0));
    const server = await startNode({ store });
    const client = await startNode();
    try {
      await client.connect(server.multiaddrs()[0]!);
      const got: (Uint8Array | null)[] = [];
      for await (const c of client.fetchChunks(server.peerId, chunks.map((c) => c.cid))) {
        got.push(c.bytes);
      }
      assert.deepEqual(got, chunks.map((c, i) => i % 3 === 0 ? null : c.bytes));
      const have = await client.hasChunks(server.peerId, chunks.map((c) => c.cid));
      assert.deepEqual(have, chunks.map((_, i) => i % 3 !== 0));
    } finally {
      await stopNodes(client, server);
    }
  },
});

/** A store that counts its reads. */
class CountingSource extends MemorySource {
  gets = 0;
  override get(cid: CID): Promise<Uint8Array | null> {
    this.gets++;
    return super.get(cid);
  }
}

/** A store that serves other bytes than asked for one CID: the peer lies. */
class LyingSource extends MemorySource {
  constructor(readonly liesAbout: CID) {
    super();
  }
  override async get(cid: CID): Promise<Uint8Array | null> {
    const bytes = await super.get(cid);
    if (bytes !== null && cid.equals(this.liesAbout)) {
      const bad = bytes.slice();
      bad[0]! ^= 1;
      return bad;
    }
    return bytes;
  }
}

Deno.test({
  ...SANITIZE,
  name: "exchange catches a peer serving corrupted bytes and stops asking it",
  fn: async () => {
    const [good, bad, after] = [chunk(2000), chunk(2000), chunk(2000)];
    const store = new LyingSource(bad.cid);
    await fill(store, good, bad, after);
    const reports: [string, MisbehaviourReport][] = [];
    const server = await startNode({ store });
    const client = await startNode({ onMisbehaviour: (peer, r) => reports.push([peer, r]) });
    try {
      await client.connect(server.multiaddrs()[0]!);
      const got: CID[] = [];
      await assert.rejects(
        async () => {
          for await (const c of client.fetchChunks(server.peerId, [good.cid, bad.cid, after.cid])) {
            got.push(c.cid);
          }
        },
        (e) =>
          e instanceof ChunkMismatchError && e.cid.equals(bad.cid) && e.code === "chunk_mismatch",
      );
      // The good chunk before it was delivered; nothing after it was taken from that peer.
      assert.deepEqual(got.map(String), [good.cid.toString()]);
      assert.equal(reports.length, 1);
      assert.equal(reports[0]![0], server.peerId);
      assert.equal(reports[0]![1].kind, "bad_bytes");
      assert.ok(reports[0]![1].kind === "bad_bytes" && reports[0]![1].cid.equals(bad.cid));
      assert.deepEqual([...client.misbehaviour().keys()], [server.peerId]);

      // fetchChunk throws the same typed error.
      await assert.rejects(client.fetchChunk(server.peerId, bad.cid), ChunkMismatchError);
      assert.equal(client.misbehaviour().get(server.peerId)!.length, 2);

      // The other way round: a client asking the server to keep bytes that do not match their CID.
      const [res] = await client.storeChunks(server.peerId, [{ cid: good.cid, bytes: bad.bytes }]);
      assert.deepEqual(res, { cid: good.cid, accepted: false, reason: "bad_bytes" });
      const seen = server.misbehaviour().get(client.peerId)!;
      assert.equal(seen.length, 1);
      assert.ok(seen[0]!.kind === "bad_bytes" && seen[0]!.cid.equals(good.cid));
    } finally {
      await stopNodes(client, server);
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "exchange rejects an oversize frame with a clear error and resets the stream",
  fn: async () => {
    const server = await startNode({ store: new MemorySource() });
    const rogue = await startNode();
    const client = await startNode();
    try {
      // A client sending a 2 MiB frame: the server answers why, resets, and records it.
      const stream = await client.libp2p.dialProtocol(
        server.libp2p.getMultiaddrs(),
        CHUNK_PROTOCOL,
      );
      const reader = new FrameReader(stream, { maxFrameLength: 1 << 16 });
      stream.send(encodeUvarint(2 * MAX_CHUNK_BYTES));
      stream.send(new Uint8Array(1000));
      const answer = await reader.read();
      assert.ok(answer !== null);
      assert.match(new TextDecoder().decode(answer.subarray()), /"error":"message_too_large"/);
      await assert.rejects(reader.read(), ExchangeProtocolError); // then the reset
      reader.release();
      const seen = server.misbehaviour().get(client.peerId)!;
      assert.ok(
        seen.length === 1 && seen[0]!.kind === "oversize" &&
          seen[0]!.length === 2 * MAX_CHUNK_BYTES,
      );

      // A server answering with a frame over the limit: the client throws without reading it.
      await rogue.libp2p.handle(CHUNK_PROTOCOL, (s) => {
        s.send(encodeUvarint(64 * 1024 * 1024));
      }, { force: true });
      const x = chunk(10);
      await assert.rejects(
        client.fetchChunk(rogue.multiaddrs()[0]!, x.cid),
        (e) =>
          e instanceof MessageTooLargeError && e.code === "message_too_large" &&
          /67108864 bytes/.test(e.message),
      );
      assert.equal(client.misbehaviour().get(rogue.peerId)![0]!.kind, "oversize");

      // And a chunk over 1 MiB is refused before anything is sent.
      const huge = randomBytes(MAX_CHUNK_BYTES + 1);
      await assert.rejects(
        client.storeChunks(server.peerId, [{ cid: cidOf(huge), bytes: huge }]),
        RangeError,
      );
    } finally {
      await stopNodes(client, rogue, server);
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "exchange forwards a full store's refusal, per chunk",
  fn: async () => {
    const full = await startNode({ store: new MemorySource(1) });
    const storeless = await startNode();
    const client = await startNode();
    try {
      const [a, b, c] = [chunk(100), chunk(100), chunk(100)];
      await client.connect(full.multiaddrs()[0]!);
      const results = await client.storeChunks(full.peerId, [a, b, c]);
      assert.deepEqual(results.map((r) => [r.accepted, r.reason]), [
        [true, undefined],
        [false, "store_full"],
        [false, "store_full"],
      ]);
      assert.equal(results[1]!.message, "The store is full");
      // Storing what it already holds is not refused.
      assert.equal((await client.storeChunks(full.peerId, [a]))[0]!.accepted, true);

      const [none] = await client.storeChunks(storeless.multiaddrs()[0]!, [a]);
      assert.deepEqual(none, { cid: a.cid, accepted: false, reason: "no_store" });
      assert.deepEqual(await client.storeChunks(full.peerId, []), []);
    } finally {
      await stopNodes(client, storeless, full);
    }
  },
});

/** A store whose reads wait until the test lets them go, counting how many run at once. */
class GatedSource implements ChunkSource {
  readonly inner = new MemorySource();
  gate = Promise.withResolvers<void>();
  active = 0;
  maxActive = 0;
  async get(cid: CID): Promise<Uint8Array | null> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await this.gate.promise;
      return await this.inner.get(cid);
    } finally {
      this.active--;
    }
  }
  has(cid: CID): Promise<boolean> {
    return this.inner.has(cid);
  }
  put(cid: CID, bytes: Uint8Array): Promise<void> {
    return this.inner.put(cid, bytes);
  }
}

Deno.test({
  ...SANITIZE,
  name: "exchange calls time out through AbortSignal and the idle timeout",
  fn: async () => {
    const store = new GatedSource();
    const x = chunk(100);
    await store.put(x.cid, x.bytes);
    const server = await startNode({ store });
    const client = await startNode({ exchange: { timeoutMs: 300 } });
    try {
      await client.connect(server.multiaddrs()[0]!);
      let t0 = performance.now();
      await assert.rejects(
        client.fetchChunk(server.peerId, x.cid, { signal: AbortSignal.timeout(150) }),
        (e) => e instanceof DOMException && e.name === "TimeoutError",
      );
      assert.ok(performance.now() - t0 < 1000);

      t0 = performance.now();
      await assert.rejects(
        client.fetchChunk(server.peerId, x.cid),
        (e) => e instanceof PeerTimeoutError && e.code === "peer_timeout" && httpStatus(e) === 504,
      );
      assert.ok(performance.now() - t0 < 1500);

      const aborted = new AbortController();
      aborted.abort(new Error("gave up"));
      await assert.rejects(
        client.hasChunks(server.peerId, [x.cid], { signal: aborted.signal }),
        /gave up/,
      );

      // The node still works once the store answers again.
      store.gate.resolve();
      assert.deepEqual(await client.fetchChunk(server.peerId, x.cid), x.bytes);
    } finally {
      store.gate.resolve();
      await stopNodes(client, server);
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "exchange holds requests over the per-peer limit until a slot frees, dropping none",
  fn: async () => {
    const store = new GatedSource();
    const chunks = [chunk(100), chunk(100), chunk(100)];
    for (const c of chunks) await store.put(c.cid, c.bytes);
    const server = await startNode({ store });
    const client = await startNode({ exchange: { maxInFlightPerPeer: 1 } });
    try {
      await client.connect(server.multiaddrs()[0]!);
      const pending = chunks.map((c) => client.fetchChunk(server.peerId, c.cid));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(store.active, 1); // one request reached the server; two wait on the client
      store.gate.resolve();
      assert.deepEqual(await Promise.all(pending), chunks.map((c) => c.bytes));
      assert.equal(store.maxActive, 1);

      // Leaving a fetchChunks loop early frees the slot (the stream is reset), so the next call runs.
      for await (const _ of client.fetchChunks(server.peerId, chunks.map((c) => c.cid))) break;
      assert.deepEqual(await client.fetchChunk(server.peerId, chunks[2]!.cid), chunks[2]!.bytes);
    } finally {
      store.gate.resolve();
      await stopNodes(client, server);
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "exchange streams 24 MiB to a stalled reader with back-pressure, not unbounded buffering",
  fn: async () => {
    const store = new CountingSource();
    const chunks = Array.from({ length: 24 }, () => chunk(MAX_CHUNK_BYTES));
    await fill(store, ...chunks);
    const server = await startNode({ store });
    const client = await startNode();
    try {
      await client.connect(server.multiaddrs()[0]!);
      let i = 0;
      let servedDuringStall = 0;
      for await (const c of client.fetchChunks(server.peerId, chunks.map((c) => c.cid))) {
        assert.ok(c.bytes !== null && c.cid.equals(chunks[i]!.cid));
        if (i++ === 0) {
          await new Promise((r) => setTimeout(r, 500));
          servedDuringStall = store.gets;
        }
      }
      assert.equal(i, 24);
      // The paused reader stops yamux granting window, so the server waits instead of sending it all.
      assert.ok(servedDuringStall < 20, `the server ran ${servedDuringStall} chunks ahead`);
    } finally {
      await stopNodes(client, server);
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "exchange answers a malformed request with an error frame",
  fn: async () => {
    const server = await startNode({ store: new MemorySource() });
    const client = await startNode();
    try {
      for (
        const request of [{ op: "get", cids: ["nope"] }, { op: "dance" }, { op: "get", cids: [] }]
      ) {
        const stream = await client.libp2p.dialProtocol(
          server.libp2p.getMultiaddrs(),
          CHUNK_PROTOCOL,
        );
        const reader = new FrameReader(stream, { maxFrameLength: 1 << 16 });
        await writeFrame(stream, request);
        await stream.close();
        const answer = await reader.read();
        assert.ok(answer !== null);
        assert.match(new TextDecoder().decode(answer.subarray()), /"error":"bad_request"/);
        assert.equal(await reader.read(), null);
        reader.release();
      }
    } finally {
      await stopNodes(client, server);
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "exchange reports a peer that cannot be dialled as unreachable",
  fn: async () => {
    const gone = await startNode();
    const client = await startNode();
    const addr = gone.multiaddrs()[0]!;
    await gone.stop();
    try {
      await assert.rejects(
        client.hasChunks(addr, [chunk(1).cid]),
        (e) =>
          e instanceof PeerUnreachableError && e.code === "peer_unreachable" &&
          httpStatus(e) === 502,
      );
    } finally {
      await stopNodes(client, gone);
    }
  },
});

/** A store whose reads (or writes) of one chunk wait until the store is asked for the next one: a server
 * that reads (or stores) one chunk at a time never asks for the next, and the request stalls. */
class WaitsForNext extends MemorySource {
  readonly asked: string[] = [];
  #next = Promise.withResolvers<void>();
  #touch(cid: CID): Promise<void> {
    this.asked.push(cid.toString());
    this.#next.resolve();
    this.#next = Promise.withResolvers<void>();
    const last = this.asked.length === this.total;
    return last ? Promise.resolve() : this.#next.promise;
  }
  constructor(readonly total: number, readonly on: "get" | "put") {
    super();
  }
  override async get(cid: CID) {
    if (this.on === "get") await this.#touch(cid);
    return super.get(cid);
  }
  override async put(cid: CID, bytes: Uint8Array) {
    if (this.on === "put") await this.#touch(cid);
    return super.put(cid, bytes);
  }
}

Deno.test({
  ...SANITIZE,
  name: "exchange get: the server reads the next chunk from its store while it sends one",
  fn: async () => {
    const chunks = Array.from({ length: 6 }, () => chunk(64 * 1024));
    const store = new WaitsForNext(chunks.length, "get");
    for (const c of chunks) store.chunks.set(c.cid.toString(), c.bytes);
    const server = await startNode({ store });
    const client = await startNode();
    try {
      const got = [];
      const signal = AbortSignal.timeout(10_000);
      for await (
        const c of client.fetchChunks(server.multiaddrs()[0]!, chunks.map((c) => c.cid), { signal })
      ) {
        got.push(c.bytes);
      }
      assert.deepEqual(got, chunks.map((c) => c.bytes), "every chunk, in order");
      assert.deepEqual(store.asked, chunks.map((c) => c.cid.toString()));
    } finally {
      await stopNodes(server, client);
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "exchange put: the server stores several chunks at once and answers in order",
  fn: async () => {
    const chunks = Array.from({ length: 8 }, () => chunk(64 * 1024));
    // Each write waits for the next: only a server with several writes under way gets through.
    const store = new WaitsForNext(chunks.length, "put");
    const server = await startNode({ store });
    const client = await startNode();
    try {
      const results = await client.storeChunks(server.multiaddrs()[0]!, chunks, {
        signal: AbortSignal.timeout(10_000),
      });
      assert.deepEqual(results.map((r) => r.cid.toString()), chunks.map((c) => c.cid.toString()));
      assert.ok(results.every((r) => r.accepted), JSON.stringify(results));
      assert.equal(store.chunks.size, chunks.length);
    } finally {
      await stopNodes(server, client);
    }
  },
});
