// Usage into the ledger for a test, in batches of 1,000, failing loudly on any refusal: the stored events' ids in order.
import type { Ledger } from '../../app/billing/ledger/ledger';

export async function ingestAll(ledger: Ledger, events: Parameters<Ledger['reportUsageBatch']>[0]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < events.length; i += 1000) {
    for (const r of await ledger.reportUsageBatch(events.slice(i, i + 1000))) {
      if (r.result === 'rejected') throw new Error(`ingest rejected: ${JSON.stringify(r.errors)}`);
      ids.push(r.event.id);
    }
  }
  return ids;
}
