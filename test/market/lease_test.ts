import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import fc from "fast-check";
import { cidOf } from "../../src/content/cid.ts";
import { blake3 } from "../../src/kernels/mod.ts";
import {
  chunkMonthPrice,
  decodeLease,
  type Lease,
  LeaseError,
  type LeaseTerms,
  parseDuration,
  parseLease,
  signAsClient,
  signAsHolder,
  verifyClientHalf,
  verifyLease,
} from "../../src/market/lease.ts";
import { LeaseBook } from "../../src/market/lease_book.ts";

const clientKey = await generateKeyPair("Ed25519");
const holderKey = await generateKeyPair("Ed25519");
const client = peerIdFromPrivateKey(clientKey).toString();
const holder = peerIdFromPrivateKey(holderKey).toString();
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const chunkA = cidOf(new Uint8Array([1, 2, 3])).toString();
const chunkB = cidOf(new Uint8Array([4, 5])).toString();

function terms(over: Partial<LeaseTerms> = {}): LeaseTerms {
  return {
    holder,
    client,
    root: chunkA,
    chunks: [[chunkA, 3], [chunkB, 2]],
    start: 1_700_000_000_000,
    end: 1_700_000_000_000 + 30 * 86_400_000,
    pricePerChunkMonth: "0",
    auditEveryMs: 3_600_000,
    commit: hex(blake3(new Uint8Array(32))),
    nonce: "00112233445566778899aabbccddeeff",
    ...over,
  };
}

const code = (c: string) => (e: unknown) => e instanceof LeaseError && e.code === c;

async function signed(over: Partial<LeaseTerms> = {}): Promise<Lease> {
  return await signAsHolder(holderKey, await signAsClient(clientKey, terms(over)));
}

Deno.test("a lease signed by both verifies, through its encoding too", async () => {
  const lease = await signed();
  assert.match(lease.id, /^[0-9a-f]{32}$/);
  const back = parseLease(new TextEncoder().encode(JSON.stringify(lease)));
  assert.deepEqual(await verifyLease(back), lease);
  // Two leases of the same terms but another nonce are two leases.
  assert.notEqual((await signed({ nonce: "ff".repeat(16) })).id, lease.id);
});

Deno.test("a forged or misplaced signature is refused with lease_signature", async () => {
  const lease = await signed();
  // The holder's half is missing.
  const half = await signAsClient(clientKey, terms());
  await verifyClientHalf(half);
  await assert.rejects(verifyLease(half), code("lease_malformed"));
  decodeLease(half, { proposal: true });
  // Signed by someone else in the client's place.
  const mallory = await generateKeyPair("Ed25519");
  const forged = await signAsClient(mallory, terms());
  await assert.rejects(verifyClientHalf(forged), code("lease_signature"));
  // The holder's signature moved onto other terms (a longer end): the id no longer matches either.
  const longer = { ...lease, end: lease.end + 1 };
  assert.throws(() => decodeLease(longer), code("lease_malformed"));
  // ... and with the id recomputed, the signatures do not cover the new terms.
  const other = await signAsClient(clientKey, terms({ end: lease.end + 1 }));
  await assert.rejects(
    verifyLease({ ...other, holderSig: lease.holderSig }),
    code("lease_signature"),
  );
  // The client's signature given as the holder's.
  await assert.rejects(
    verifyLease({ ...lease, holderSig: lease.clientSig }),
    code("lease_signature"),
  );
});

Deno.test("the decoder refuses each malformed field with its reason", async () => {
  const lease = await signed();
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ extra: 1 }, /unknown field/],
    [{ v: 2 }, /v must be 1/],
    [{ holder: client }, /differ/],
    [{ holder: "not a peer" }, /holder/],
    [{ root: "bafy" }, /root/],
    [{ chunks: [] }, /chunks must list/],
    [{ chunks: [[chunkA, 3], [chunkA, 3]] }, /twice/],
    [{ chunks: [[chunkA, -1]] }, /length/],
    [{ chunks: [[chunkA, 2 ** 21]] }, /length/],
    [{ chunks: [["zzz", 1]] }, /not a CID/],
    [{ start: -1 }, /start/],
    [{ end: lease.start }, /end/],
    [{ end: lease.start + 401 * 86_400_000 }, /400 days/],
    [{ pricePerChunkMonth: "01" }, /pricePerChunkMonth/],
    [{ pricePerChunkMonth: 5 }, /pricePerChunkMonth/],
    [{ auditEveryMs: 0 }, /auditEveryMs/],
    [{ commit: "ab" }, /commit/],
    [{ nonce: "AB".repeat(16) }, /nonce/],
    [{ clientSig: "not base64!" }, /clientSig/],
    [{ id: "00".repeat(16) }, /id is not/],
  ];
  for (const [patch, why] of cases) {
    assert.throws(
      () => decodeLease({ ...lease, ...patch }),
      (e) => code("lease_malformed")(e) && why.test((e as Error).message),
      JSON.stringify(patch),
    );
  }
  for (const input of [null, [], "lease", 1]) {
    assert.throws(() => decodeLease(input), code("lease_malformed"));
  }
  assert.throws(() => parseLease(new Uint8Array([0xff, 0xfe])), code("lease_malformed"));
  assert.throws(() => parseLease(new Uint8Array(600 * 1024)), /at most/);
});

Deno.test("fuzz: the lease decoder throws only lease_malformed, and keeps nothing it does not know", async () => {
  const lease = await signed();
  const fields = Object.keys(lease);
  // Random JSON of any shape.
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      try {
        decodeLease(v);
        return false; // nothing random is a lease (its id would have to match)
      } catch (e) {
        return code("lease_malformed")(e);
      }
    }),
    { numRuns: 500 },
  );
  // A valid lease with one field replaced by a random value or removed.
  fc.assert(
    fc.property(
      fc.constantFrom(...fields),
      fc.option(fc.jsonValue(), { nil: undefined }),
      (field, value) => {
        const mutated: Record<string, unknown> = { ...lease };
        if (value === undefined) delete mutated[field];
        else mutated[field] = value;
        try {
          const out = decodeLease(mutated);
          // Accepted only when the value is the original one.
          assert.deepEqual(out, lease);
          return true;
        } catch (e) {
          return code("lease_malformed")(e);
        }
      },
    ),
    { numRuns: 500 },
  );
  // Random bytes.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
      try {
        parseLease(bytes);
        return false;
      } catch (e) {
        return code("lease_malformed")(e);
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("durations and chunk-month prices", () => {
  assert.equal(parseDuration("30d"), 30 * 86_400_000);
  assert.equal(parseDuration("90s"), 90_000);
  assert.equal(parseDuration("500ms"), 500);
  for (const bad of ["", "30", "0d", "-1d", "1y", "401d", "1.5d"]) {
    assert.throws(() => parseDuration(bad), RangeError, bad);
  }
  // 256 KiB at 4 GiB-month-wei: 1/4096 of it, rounded up.
  assert.equal(chunkMonthPrice("4096", 256 * 1024), 1n);
  assert.equal(chunkMonthPrice("4097", 256 * 1024), 2n);
  assert.equal(chunkMonthPrice("0", 256 * 1024), 0n);
});

Deno.test("the lease book keeps leases by role, counts live bytes, and finds what ended", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let book = LeaseBook.open(dir);
    const lease = await signed();
    book.add(lease, "holder");
    book.add(lease, "holder"); // the same lease twice is one
    book.add(lease, "client", "ab".repeat(32));
    book.close();
    book = LeaseBook.open(dir); // survives a restart
    assert.equal(book.list("holder").length, 1);
    assert.equal(book.get(lease.id, "client")?.secret, "ab".repeat(32));
    assert.equal(book.get(lease.id, "holder")?.secret, undefined);
    assert.equal(book.heldBytes(lease.start), 5);
    assert.equal(book.heldBytes(lease.start, client), 5);
    assert.equal(book.heldBytes(lease.start, holder), 0);
    assert.equal(book.heldBytes(lease.end), 0);
    // A second live lease of chunk A (longer): A is leased elsewhere, counted once.
    const longer = await signed({ end: lease.end + 1000, chunks: [[chunkA, 3]] });
    book.add(longer, "holder");
    assert.equal(book.heldBytes(lease.start), 5);
    assert.equal(book.leasedElsewhere(chunkA, lease.end, lease.id), true);
    assert.equal(book.leasedElsewhere(chunkB, lease.end, lease.id), false);
    assert.deepEqual(book.ended(lease.end).map((e) => e.lease.id), [lease.id]);
    book.collected(lease.id, lease.end);
    assert.deepEqual(book.ended(lease.end), []);
    book.audited(lease.id, 3, 1, 42);
    const e = book.get(lease.id, "client")!;
    assert.deepEqual([e.passed, e.failed, e.lastAudit, e.lastPassed], [3, 1, 42, false]);
    book.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
