/**
 * What paid delivery did, for operators: `GET /api/pay` (JSON, wei as decimal strings) and the `mesh_pay_*`
 * series of `/metrics`. Both read the node's {@link PaidDelivery} at request time; in volunteer mode the API
 * answers `{ mode: "volunteer" }` and every series is 0.
 *
 * @module
 */
import type { Hono } from "hono";
import type { MeshgateNode } from "../src/node.ts";
import type { PaySummary, RelayPaySummary } from "../src/pay/mod.ts";
import type { RelayStats } from "../src/mesh/relay.ts";
import { Gauge, type Registry, SampledCounter } from "./metrics.ts";

function summary(node: MeshgateNode): PaySummary | undefined {
  return node.delivery?.summary();
}

/** Adds the `mesh_pay_*` series to `metrics`. */
export function addPayMetrics(metrics: Registry, node: MeshgateNode): void {
  const series = (
    name: string,
    help: string,
    pick: (s: PaySummary) => bigint | number,
  ) => {
    const read = () => {
      const s = summary(node);
      return s ? Number(pick(s)) : 0;
    };
    metrics.add(
      name.endsWith("_total") ? new SampledCounter(name, help, read) : new Gauge(name, help, read),
    );
  };
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
    new Gauge("mesh_pay_channels", "Payment channels by direction", () => {
      const channels = summary(node)?.channels ?? [];
      const count = (d: string) =>
        channels.filter((c) => c.direction === d && c.channel !== undefined).length;
      return [[{ direction: "in" }, count("in")], [{ direction: "out" }, count("out")]];
    }),
  );
  addRelayMetrics(metrics, node);
}

/** The `mesh_pay_relay_*` series: a relay's circuits and what it was paid, a relayed node's payments. */
function addRelayMetrics(metrics: Registry, node: MeshgateNode): void {
  const relay = (
    name: string,
    help: string,
    pick: (s: RelayPaySummary, circuits: RelayStats | undefined) => bigint | number | undefined,
  ) => {
    const read = () => {
      const s = node.relaying?.summary();
      const circuits = node.mesh?.relayStats();
      return Number((s ? pick(s, circuits) : pick(EMPTY_RELAY, circuits)) ?? 0);
    };
    metrics.add(
      name.endsWith("_total") ? new SampledCounter(name, help, read) : new Gauge(name, help, read),
    );
  };
  relay(
    "mesh_pay_relay_carried_bytes_total",
    "Bytes this relay carried in circuits, both directions",
    (_, c) => c?.relayedBytes,
  );
  relay(
    "mesh_pay_relay_charged_bytes_total",
    "Bytes this relay charged the nodes it relays for",
    (s) => s.relayedBytes,
  );
  relay(
    "mesh_pay_relay_earned_wei_total",
    "Wei accepted in vouchers for relaying",
    (s) => s.acceptedWei,
  );
  relay(
    "mesh_pay_relay_vouchers_received_total",
    "Vouchers accepted for relaying",
    (s) => s.vouchers,
  );
  relay("mesh_pay_relay_redeemed_wei_total", "Wei redeemed for relaying", (s) => s.redeemedWei);
  relay("mesh_pay_relay_owed_wei", "Wei of relaying not paid for yet", (s) => s.owedWei);
  relay(
    "mesh_pay_relay_circuits_total",
    "Circuits this relay opened",
    (_, c) => c?.circuits,
  );
  relay(
    "mesh_pay_relay_unpaid_cuts_total",
    "Circuits this relay cut because their bytes were not paid for",
    (_, c) => c?.unpaidCuts,
  );
  relay("mesh_pay_relay_reservations", "Reservations this relay holds", (_, c) => c?.reservations);
  relay(
    "mesh_pay_relay_spent_wei_total",
    "Wei this node promised relays for carrying its circuits",
    (s) => s.spentWei,
  );
}

const EMPTY_RELAY: RelayPaySummary = {
  relayedBytes: 0n,
  vouchers: 0,
  acceptedWei: 0n,
  redeemedWei: 0n,
  owedWei: 0n,
  paidBytes: 0n,
  spentWei: 0n,
  unpaidBytes: 0n,
};

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
  }); // The channels this node pays through: counterparty, deposit, and what is locked until finalized.
  app.get("/api/channels", (c) => {
    const d = node.delivery;
    if (d === undefined) return c.json({ mode: "volunteer", channels: [] });
    return c.json({ mode: "paid", channels: jsonSafe(d.openChannels()) });
  });
}

/** Wei amounts as decimal strings: JSON has no bigint. */
function jsonSafe(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (_k, v) => typeof v === "bigint" ? v.toString() : v));
}
