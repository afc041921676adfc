/** What Linux's /proc says of a process: the CPU time and resident memory that benchmarks and the simulation report. */

/**
 * CPU time process `pid` (default: this one) has used, user and system, all threads, in ms. Throws where
 * there is no /proc (not Linux).
 */
export function cpuMs(pid: number | "self" = "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command (which may hold spaces, so split after its closing parenthesis): utime and
  // stime are the 14th and 15th, in clock ticks (100 a second on Linux).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Resident memory of process `pid` (default: this one), in bytes. */
export function rssBytes(pid: number | "self" = "self"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}
