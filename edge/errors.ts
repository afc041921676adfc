/**
 * The one place where domain errors become HTTP statuses: `src/` raises `MeshError`s with stable codes and
 * knows nothing of HTTP.
 */
import { MeshError } from "../src/errors.ts";

const STATUS: Record<string, number> = {
  bad_request: 400,
  empty_upload: 400,
  invalid_cid: 400,
  upload_failed: 400,
  unauthorized: 401,
  payment_required: 402,
  quote_refused: 402,
  price_above_cap: 402,
  spending_cap: 402,
  peer_banned: 403,
  pay_rate_limited: 429,
  forbidden: 403,
  not_found: 404,
  not_acceptable: 406,
  contract_revert: 409,
  too_large: 413,
  range_not_satisfiable: 416,
  invalid_manifest: 502,
  manifest_mismatch: 502,
  chunk_mismatch: 502,
  unrecoverable: 502,
  mesh_budget: 502,
  message_too_large: 502,
  peer_protocol: 502,
  peer_unreachable: 502,
  pay_protocol: 502,
  node_stopping: 503,
  chain_config: 503,
  pay_key: 503,
  pay_busy: 503,
  desk_locked: 503,
  delivery_refused: 503,
  peer_timeout: 504,
  evidence_malformed: 400,
  evidence_signature: 422,
  evidence_not_fraud: 422,
  offer_malformed: 400,
  offer_signature: 422,
  offer_expired: 422,
  attestation_malformed: 400,
  attestation_signature: 422,
  attestation_stale: 422,
  rate_limited: 429,
  escrow_invalid: 400,
  deal_not_found: 404,
  deal_exists: 409,
  deal_forbidden: 403,
  deal_state: 409,
  deal_too_early: 409,
  deal_too_late: 409,
  escrow_nothing: 409,
  escrow_revert: 409,
  reputation_protocol: 502,
  store_failed: 500,
  store_full: 507,
  quota_exceeded: 507,
};

/** The HTTP status that answers `err`: by its code; a refused voucher is 402; anything else is 500. */
export function httpStatus(err: MeshError): number {
  return STATUS[err.code] ?? (err.code.startsWith("voucher_") ? 402 : 500);
}
