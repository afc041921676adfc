/**
 * A small Prometheus registry (text format 0.0.4): counters, gauges and histograms with bounded labels.
 * Never label by CID or peer ID: label values must come from small fixed sets.
 */

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (!keys.length) return "";
  const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
  return `{${keys.map((k) => `${k}="${escape(labels[k]!)}"`).join(",")}}`;
}

interface Metric {
  render(): string;
}

export class Counter implements Metric {
  #values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {
    if (!name.endsWith("_total")) throw new Error(`Counter "${name}" must end in _total`);
  }
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (!this.#values.size) lines.push(`${this.name} 0`);
    for (const [key, value] of this.#values) lines.push(`${this.name}${key} ${value}`);
    return lines.join("\n");
  }
}

/** A gauge read at scrape time from a function, so it is never stale. */
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly read: () => number | [Labels, number][],
  ) {}
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    const value = this.read();
    const rows: [Labels, number][] = typeof value === "number" ? [[{}, value]] : value;
    for (const [labels, v] of rows) lines.push(`${this.name}${labelKey(labels)} ${v}`);
    return lines.join("\n");
  }
}

/**
 * A counter whose total is read at scrape time from a source that only grows (a count kept elsewhere since
 * start). Prometheus requires counter names to end in `_total`, so rate() and increase() work on them.
 */
export class SampledCounter implements Metric {
  constructor(readonly name: string, readonly help: string, readonly read: () => number) {
    if (!name.endsWith("_total")) throw new Error(`Counter "${name}" must end in _total`);
  }
  render(): string {
    return [
      `# HELP ${this.name} ${this.help}`,
      `# TYPE ${this.name} counter`,
      `${this.name} ${this.read()}`,
    ].join("\n");
  }
}

export class Histogram implements Metric {
  #series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {}
  observe(labels: Labels, value: number): void {
    const key = labelKey(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const { labels, counts, sum, count } of this.#series.values()) {
      this.buckets.forEach((le, i) => {
        lines.push(`${this.name}_bucket${labelKey({ ...labels, le: String(le) })} ${counts[i]}`);
      });
      lines.push(`${this.name}_bucket${labelKey({ ...labels, le: "+Inf" })} ${count}`);
      lines.push(`${this.name}_sum${labelKey(labels)} ${sum}`);
      lines.push(`${this.name}_count${labelKey(labels)} ${count}`);
    }
    return lines.join("\n");
  }
}

export class Registry {
  #metrics: Metric[] = [];
  add<T extends Metric>(metric: T): T {
    this.#metrics.push(metric);
    return metric;
  }
  render(): string {
    return this.#metrics.map((m) => m.render()).join("\n") + "\n";
  }
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
