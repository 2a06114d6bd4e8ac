// Search and adoption: after a sale whose answer was lost (or a settler that died mid-sale), the order id is
// searched at the processor and what is found there is taken as the sale's outcome; only "not found" allows a new sale.
import { APPROVED_SALE_STATUSES, isHardDecline } from '../../processors/braintree/processor';
import type { FindSaleResult, FoundSale } from '../../processors/types';
import type { Outcome } from './model';

/** What a search by order id says about the earlier sale(s), or null when there is none. */
export function searchOutcome(found: FindSaleResult): Outcome | null {
  if (found.outcome === 'error') return { outcome: 'search_error', code: `search_${found.code}`, message: found.message };
  if (found.outcome === 'not_found') return null;
  const approved = found.sales.find((s) => APPROVED_SALE_STATUSES.has(s.status));
  if (approved) return { outcome: 'succeeded', transactionId: approved.transactionId, status: approved.status, responseCode: approved.responseCode, response: { adopted: true } };
  const latest: FoundSale = found.sales[found.sales.length - 1]!;
  switch (latest.status) {
    case 'processor_declined': {
      const code = latest.responseCode ?? '';
      const hard = isHardDecline(code, latest.responseType);
      return { outcome: hard ? 'hard_declined' : 'soft_declined', transactionId: latest.transactionId, status: latest.status, responseCode: code, message: `found declined sale ${latest.transactionId}`, response: { adopted: true } };
    }
    case 'gateway_rejected':
      return { outcome: 'gateway_rejected', transactionId: latest.transactionId, reason: latest.gatewayRejectionReason ?? 'unknown', message: `found rejected sale ${latest.transactionId}`, response: { adopted: true } };
    case 'failed':
      return { outcome: 'error', code: 'transaction_failed', message: `found failed sale ${latest.transactionId}`, error: null };
    default:
      // voided, settlement_declined: someone acted on the sale at Braintree; a machine must not charge again.
      return { outcome: 'hard_declined', transactionId: latest.transactionId, status: latest.status, responseCode: latest.status, message: `found sale ${latest.transactionId} in status ${latest.status}`, response: { adopted: true } };
  }
}
