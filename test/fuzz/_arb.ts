/** Shared arbitraries and the check every decoder property makes: only the documented errors escape. */
import fc from "fast-check";
import assert from "node:assert/strict";

/** Runs per property: enough to find shallow crashes in a second or two, the suite stays fast. */
export const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 2000);

/** Calls `fn`; an error that is not one of `allowed` fails the property with the input that caused it. */
export function onlyThrows<T>(
  fn: () => T,
  ...allowed: (new (...a: never[]) => Error)[]
): T | undefined {
  try {
    return fn();
  } catch (e) {
    if (allowed.some((cls) => e instanceof cls)) return undefined;
    throw e;
  }
}

/** Async {@link onlyThrows}. */
export async function onlyRejects<T>(
  fn: () => Promise<T>,
  ...allowed: (new (...a: never[]) => Error)[]
): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    if (allowed.some((cls) => e instanceof cls)) return undefined;
    throw e;
  }
}

/** Bytes that are often almost valid: random, or a valid sample with a few bytes flipped or cut. */
export function mutated(valid: Uint8Array[]): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 512 }),
    fc.tuple(
      fc.constantFrom(...valid),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      fc.nat(),
    ).map(([base, flips, cut]) => {
      const out = base.slice(0, base.length - (cut % 3 === 0 ? cut % (base.length + 1) : 0));
      for (const [at, v] of flips) if (out.length) out[at % out.length] = v;
      return out;
    }),
  );
}

/** JSON values of any shape, plus the awkward ones JSON.parse can yield (deep, huge numbers, __proto__). */
export const jsonish: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(null, 1e308, -0, "", [], {}, { __proto__: null }, "x".repeat(1000)),
);

export { assert, fc };
