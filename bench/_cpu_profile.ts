/**
 * V8 CPU profiles: their shape, one fold of a profile into time by function (both profiling scripts), and
 * a summary for a terminal, self and inclusive time by function, top N (`_profile_mesh.ts`;
 * `_profile_serve.ts` also charges samples to stages).
 */

/** A node of V8's `Profiler.stop` profile. */
export interface ProfileNode {
  id: number;
  children?: number[];
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** V8's `Profiler.stop` result. */
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A profile folded by function: `name path:line`, paths relative to the project or the npm cache. */
export interface ProfileFold {
  /** Time with the function on top of the stack, ms. */
  self: Map<string, number>;
  /** Time with the function anywhere on the stack (counted once per sample), ms. */
  inclusive: Map<string, number>;
  /** Every sample: its stack, leaf first, and its time, ms. */
  stacks: { chain: string[]; ms: number }[];
  /** Time of all samples, and of those not idle, ms. */
  sampledMs: number;
  busyMs: number;
}

/** A function's key: its name and where it is, without the machine's own prefixes (project, npm cache,
 * a worktree). */
function keyOf(x: ProfileNode): string {
  const url = x.callFrame.url.replace(/.*node_modules\/\.deno\//, "")
    .replace(`file://${Deno.cwd()}/`, "").replace(/.*\/wt\/[^/]+\//, "");
  return `${x.callFrame.functionName || "(anon)"} ${url}:${x.callFrame.lineNumber + 1}`;
}

/**
 * Folds `profile` by function. Each sample weighs its time delta, or `sampleMs` when given: on a loaded
 * machine a delta also holds the time the process was not scheduled, which would be charged to whatever
 * function it was preempted in, so a fixed sampling interval is the fairer weight there.
 */
export function foldProfile(profile: CpuProfile, sampleMs?: number): ProfileFold {
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const parent = new Map<number, number>();
  for (const x of profile.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const keys = new Map<number, string>();
  const key = (id: number) => {
    let k = keys.get(id);
    if (k === undefined) keys.set(id, k = keyOf(byId.get(id)!));
    return k;
  };
  const fold: ProfileFold = {
    self: new Map(),
    inclusive: new Map(),
    stacks: [],
    sampledMs: 0,
    busyMs: 0,
  };
  profile.samples.forEach((id, i) => {
    const ms = sampleMs ?? (profile.timeDeltas[i] ?? 0) / 1000;
    const chain: string[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      chain.push(key(at));
    }
    fold.stacks.push({ chain, ms });
    fold.sampledMs += ms;
    if (!chain[0]!.startsWith("(idle)")) fold.busyMs += ms;
    fold.self.set(chain[0]!, (fold.self.get(chain[0]!) ?? 0) + ms);
    for (const k of new Set(chain)) fold.inclusive.set(k, (fold.inclusive.get(k) ?? 0) + ms);
  });
  return fold;
}

/** Lines of the top `n` functions by inclusive time, then by self time, each in ms and share. */
export function summarize(profile: CpuProfile, n = 25, indent = "  "): string[] {
  const { self, inclusive, sampledMs: total } = foldProfile(profile);
  const line = ([k, ms]: [string, number]) =>
    `${indent}  ${ms.toFixed(0).padStart(6)} ms ${
      (ms / total * 100).toFixed(1).padStart(5)
    }%  ${k}`;
  return [
    `${indent}CPU profile, inclusive time, top ${n}:`,
    ...[...inclusive]
      .filter(([k]) => !/^\(root\)|^\(anon\) :|^run :|processTicks|__process/.test(k))
      .sort((a, b) => b[1] - a[1]).slice(0, n).map(line),
    `${indent}CPU profile, self time (of ${total.toFixed(0)} ms sampled):`,
    ...[...self].sort((a, b) => b[1] - a[1]).slice(0, n).map(line),
  ];
}
