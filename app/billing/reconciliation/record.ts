// Recording a run's findings: one open ledger_drift ops event per subject and period (its dedupe key), refreshed
// to this run's numbers, and the findings stored for the desk.
import { recordOpsEvents, type OpsEventInput } from '../ops-events';
import type { Finding, RunContext } from './model';

/** One open ledger_drift ops event per finding (new ones counted), its metadata refreshed to this run's numbers. */
export async function recordDrift(ctx: RunContext, runId: string, findings: Finding[]): Promise<{ created: number; ids: Map<string, string> }> {
  if (findings.length === 0) return { created: 0, ids: new Map() };
  const keys = findings.map((f) => f.dedupeKey);
  // A drift resolved earlier (by a run or by hand) that is back: the old event keeps its history under another key.
  await ctx.client.query(
    `UPDATE ops_events SET dedupe_key = dedupe_key || ':resolved:' || id::text WHERE dedupe_key = ANY($1::text[]) AND resolved_at IS NOT NULL`,
    [keys],
  );
  const events: OpsEventInput[] = findings.map((f) => ({
    type: 'ledger_drift',
    processor: f.processor,
    source: 'reconciliation',
    subjectType: f.windowId ? 'window' : 'customer',
    subjectId: f.windowId ?? f.customerId,
    dedupeKey: f.dedupeKey,
    metadata: driftMetadata(runId, f),
  }));
  const created = await recordOpsEvents(ctx.client, events);
  const { rows } = await ctx.client.query<{ id: string; dedupe_key: string }>(
    `UPDATE ops_events o SET metadata = v.metadata
       FROM unnest($1::text[], $2::jsonb[]) AS v(dedupe_key, metadata)
      WHERE o.dedupe_key = v.dedupe_key AND o.resolved_at IS NULL
     RETURNING o.id, o.dedupe_key`,
    [keys, events.map((e) => JSON.stringify(e.metadata))],
  );
  return { created, ids: new Map(rows.map((r) => [r.dedupe_key, r.id])) };
}

export async function insertFindings(ctx: RunContext, runId: string, findings: Finding[], ops: { ids: Map<string, string> }): Promise<void> {
  if (findings.length === 0) return;
  await ctx.client.query(
    `INSERT INTO reconciliation_findings (id, run_id, processor, kind, customer_id, event_name, window_id, period_start, period_end,
                                          ledger_value, ledger_count, processor_value, processor_count, difference, currency, ops_event_id, detail)
     SELECT gen_random_uuid(), $1, * FROM unnest($2::processor[], $3::text[], $4::uuid[], $5::text[], $6::uuid[], $7::timestamptz[], $8::timestamptz[],
                                                 $9::numeric[], $10::int[], $11::numeric[], $12::int[], $13::numeric[], $14::text[], $15::uuid[], $16::jsonb[])`,
    [
      runId,
      findings.map((f) => f.processor),
      findings.map((f) => f.kind),
      findings.map((f) => f.customerId),
      findings.map((f) => f.eventName),
      findings.map((f) => f.windowId),
      findings.map((f) => f.periodStart),
      findings.map((f) => f.periodEnd),
      findings.map((f) => f.ledger.value),
      findings.map((f) => f.ledger.count),
      findings.map((f) => f.processorSide.value),
      findings.map((f) => f.processorSide.count),
      findings.map((f) => f.difference),
      findings.map((f) => f.currency),
      findings.map((f) => ops.ids.get(f.dedupeKey) ?? null),
      findings.map((f) => JSON.stringify(f.detail)),
    ],
  );
}

function driftMetadata(runId: string, f: Finding): Record<string, unknown> {
  return {
    kind: f.kind,
    ledger: f.ledger,
    processor: f.processorSide,
    difference: f.difference,
    currency: f.currency,
    customer_id: f.customerId,
    event_name: f.eventName,
    window_id: f.windowId,
    period_start: f.periodStart.toISOString(),
    period_end: f.periodEnd.toISOString(),
    run_id: runId,
    ...f.detail,
  };
}
