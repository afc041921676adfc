/**
 * What paid delivery did, for operators: `GET /api/pay` (JSON, wei as decimal strings) and the `mesh_pay_*`
 * series of `/metrics`. Both read the node's {@link PaidDelivery} at request time; in volunteer mode the API
 * answers `{ mode: "volunteer" }` and every series is 0.
 *
 * @module
 */
import type { Hono } from "hono";
import type { MeshgateNode } from "../src/node.ts";
import type { PaySummary } from "../src/pay/mod.ts";
import type { Registry } from "./metrics.ts";

/** A series read from the node at scrape time; `counter` ones only grow (their names end in `_total`). */
class ReadSeries {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge",
    readonly read: () => number | [string, number][],
  ) {}
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    const value = this.read();
    if (typeof value === "number") lines.push(`${this.name} ${value}`);
    else for (const [labels, v] of value) lines.push(`${this.name}${labels} ${v}`);
    return lines.join("\n");
  }
}

function summary(node: MeshgateNode): PaySummary | undefined {
  return node.delivery?.summary();
}

/** Adds the `mesh_pay_*` series to `metrics`. */
export function addPayMetrics(metrics: Registry, node: MeshgateNode): void {
  const series = (
    name: string,
    help: string,
    pick: (s: PaySummary) => bigint | number,
  ) =>
    metrics.add(
      new ReadSeries(name, help, name.endsWith("_total") ? "counter" : "gauge", () => {
        const s = summary(node);
        return s ? Number(pick(s)) : 0;
      }),
    );
  series(
    "mesh_pay_vouchers_received_total",
    "Vouchers accepted from peers this node served",
    (s) => s.vouchersReceived,
  );
  series(
    "mesh_pay_vouchers_sent_total",
    "Vouchers signed for operators this node fetched from",
    (s) => s.vouchersSent,
  );
  series(
    "mesh_pay_earned_wei_total",
    "Wei accepted in vouchers from peers this node served",
    (s) => s.earnedWei,
  );
  series(
    "mesh_pay_redeemed_wei_total",
    "Wei the ChannelHub paid this node for its vouchers",
    (s) => s.redeemedWei,
  );
  series(
    "mesh_pay_spent_wei_total",
    "Wei promised in vouchers to operators this node fetched from",
    (s) => s.spentWei,
  );
  series("mesh_pay_redeems_total", "Vouchers redeemed on-chain", (s) => s.redeems);
  series("mesh_pay_redeem_gas_total", "Gas used by this node's redeems", (s) => s.redeemGas);
  series(
    "mesh_pay_redeem_gas_wei_total",
    "Wei this node paid for the gas of its redeems",
    (s) => s.redeemGasWei,
  );
  series("mesh_pay_price_wei", "Wei per byte this node charges", (s) => s.price);
  metrics.add(
    new ReadSeries("mesh_pay_channels", "Payment channels by direction", "gauge", () => {
      const channels = summary(node)?.channels ?? [];
      const count = (d: string) =>
        channels.filter((c) => c.direction === d && c.channel !== undefined).length;
      return [['{direction="in"}', count("in")], ['{direction="out"}', count("out")]];
    }),
  );
}

/** `GET /api/pay`: this node's earnings, spending and channels. */
export function addPayRoutes(app: Hono, node: MeshgateNode): void {
  app.get("/api/pay", (c) => {
    const s = summary(node);
    if (s === undefined) return c.json({ mode: "volunteer" });
    return c.json({
      mode: "paid",
      chainId: node.chain?.chainId,
      ...(JSON.parse(JSON.stringify(s, (_k, v) => typeof v === "bigint" ? v.toString() : v))),
    });
  });
}
