// Braintree: per window, what the ledger says was taken (paid, for how much) against the approved sales the gateway
// finds by the window's order id; a window settling or charged within the grace period is skipped.
import { APPROVED_SALE_STATUSES } from '../processors/braintree/processor';
import type { ChargeProcessor, FindSaleResult, FoundSale } from '../processors/types';
import { orderIdFor } from '../windows/settlement';
import { braintreeDriftKey, type Compared, type DriftKind, type OpenDrift, type RunContext } from './model';

export async function compareBraintree(ctx: RunContext, processor: Pick<ChargeProcessor, 'findByOrderId'>, open: OpenDrift[]): Promise<Compared> {
  const out: Compared = { checked: 0, skipped: 0, errors: 0, findings: [], comparedKeys: new Set(), firstError: null };
  // Windows that may have been charged recently, and those with open drift whatever their age.
  const { rows: candidates } = await ctx.client.query<{ id: string }>(
    `SELECT w.id FROM windows w LEFT JOIN charge_attempts a ON a.window_id = w.id
      WHERE w.state <> 'open' AND (w.period_end >= $1 OR w.paid_at >= $1 OR a.updated_at >= $1)
     UNION
     SELECT unnest($2::uuid[])`,
    [ctx.from, open.map((o) => o.windowId).filter((id): id is string => id !== null)],
  );
  if (candidates.length === 0) return out;
  const searches = new Map<string, FindSaleResult>();
  await Promise.all(candidates.map((w) => ctx.gate.run(async () => void searches.set(w.id, await processor.findByOrderId(orderIdFor(w.id))))));

  // Read after the searches: a sale the search saw was marked sent (settling, last_sent_at) before it left.
  const { rows } = await ctx.client.query<{
    id: string;
    customer_id: string;
    customer_label: string;
    period_start: Date;
    period_end: Date;
    state: string;
    currency: string;
    total_minor: string | null;
    charge_status: string | null;
    amount_minor: string | null;
    transaction_id: string | null;
    last_sent_at: Date | null;
  }>(
    `SELECT w.id, w.customer_id, COALESCE(c.name, c.external_id) AS customer_label, w.period_start, w.period_end,
            w.state::text AS state, w.currency, i.total_minor::text AS total_minor, a.status::text AS charge_status,
            a.amount_minor::text AS amount_minor, a.transaction_id, a.last_sent_at
       FROM windows w JOIN customers c ON c.id = w.customer_id
       LEFT JOIN invoices i ON i.window_id = w.id LEFT JOIN charge_attempts a ON a.window_id = w.id
      WHERE w.id = ANY($1::uuid[])`,
    [candidates.map((w) => w.id)],
  );
  for (const w of rows) {
    if (w.state === 'open' || w.state === 'settling' || (w.last_sent_at && w.last_sent_at >= ctx.graceSince)) {
      out.skipped += 1;
      continue;
    }
    const search = searches.get(w.id);
    if (!search || search.outcome === 'error') {
      out.errors += 1;
      out.firstError ??= search ? `Braintree ${search.code}: ${search.message}` : `Braintree: no answer for window ${w.id}`;
      continue;
    }
    out.checked += 1;
    const dedupeKey = braintreeDriftKey(w.id);
    out.comparedKeys.add(dedupeKey);
    const sales: FoundSale[] = search.outcome === 'found' ? search.sales : [];
    const approved = sales.filter((s) => APPROVED_SALE_STATUSES.has(s.status));
    const paid = w.state === 'paid';
    // What the ledger says was taken: the charge attempt's amount (the invoice total when there is no attempt).
    const ledgerAmount = paid ? BigInt(w.amount_minor ?? w.total_minor ?? '0') : 0n;
    const ledgerCount = paid && ledgerAmount > 0n ? 1 : 0;
    const processorAmount = approved.reduce((sum, s) => sum + s.amountMinor, 0n);
    const currencyOff = approved.some((s) => s.currency.toLowerCase() !== w.currency.trim().toLowerCase());
    let kind: DriftKind | null = null;
    if (approved.length > 1) kind = 'duplicate_sale';
    else if (approved.length === 1 && !paid) kind = 'unrecorded_sale';
    else if (approved.length === 0 && ledgerCount === 1) kind = 'sale_missing';
    else if (approved.length === 1 && (processorAmount !== ledgerAmount || currencyOff)) kind = 'amount_mismatch';
    if (!kind) continue;
    out.findings.push({
      processor: 'braintree',
      kind,
      customerId: w.customer_id,
      customerLabel: w.customer_label,
      eventName: null,
      windowId: w.id,
      periodStart: w.period_start,
      periodEnd: w.period_end,
      ledger: { value: ledgerAmount.toString(), count: ledgerCount },
      processorSide: { value: processorAmount.toString(), count: approved.length },
      difference: (processorAmount - ledgerAmount).toString(),
      currency: w.currency.trim(),
      detail: {
        order_id: orderIdFor(w.id),
        window_state: w.state,
        charge_status: w.charge_status,
        recorded_transaction_id: w.transaction_id,
        approved_sales: approved.map((s) => ({ id: s.transactionId, status: s.status, amount_minor: s.amountMinor.toString(), currency: s.currency })),
        other_sales: sales.length - approved.length,
      },
      dedupeKey,
    });
  }
  return out;
}
