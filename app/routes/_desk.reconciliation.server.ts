// The reconciliation page's form and display helpers. Reads are ReconciliationPresenter and the run is queued by
// requestReconciliation (app/billing/reconciliation.ts), which audits.
import { z } from 'zod';
import { DRIFT_KIND_LABELS, driftHint, type StoredFinding } from '../billing/reconciliation';
import { formatMoney } from '../utils/money';

export const RunSchema = z.object({
  intent: z.literal('run', 'Choose an action'),
  reason: z.string().trim().max(500, 'Keep the reason under 500 characters').optional(),
});

/** A finding's values as the page shows them: usage as a number, Braintree amounts as money. */
export function findingView(f: StoredFinding) {
  const amount = (value: string) => (f.currency ? formatMoney(value, f.currency) : Number(value).toLocaleString('en-US', { maximumFractionDigits: 6 }));
  const signed = f.difference.startsWith('-') ? `−${amount(f.difference.slice(1))}` : `+${amount(f.difference)}`;
  return {
    ...f,
    kindLabel: DRIFT_KIND_LABELS[f.kind],
    hint: driftHint(f.kind, f),
    ledgerText: amount(f.ledgerValue),
    processorText: amount(f.processorValue),
    differenceText: signed,
  };
}
