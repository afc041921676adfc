/**
 * V8 CPU profiles: their shape (both profiling scripts), and a summary for a terminal, self and inclusive
 * time by function, top N (`_profile_mesh.ts`; `_profile_serve.ts` charges samples to stages its own way).
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

const keyOf = (x: ProfileNode) =>
  `${x.callFrame.functionName || "(anon)"} ${
    x.callFrame.url.replace(/.*node_modules\/\.deno\//, "").replace(`file://${Deno.cwd()}/`, "")
  }:${x.callFrame.lineNumber + 1}`;

/** Lines of the top `n` functions by inclusive time, then by self time, each in ms and share. */
export function summarize(profile: CpuProfile, n = 25, indent = "  "): string[] {
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const self = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const k = keyOf(byId.get(id)!);
    self.set(k, (self.get(k) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  // Inclusive time by function: each sample counts once for every distinct function on its stack.
  const parent = new Map<number, number>();
  for (const x of profile.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const inclusive = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const k = keyOf(byId.get(at)!);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
    }
  });
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
