// The invariants of PRODUCT.md, checked after a chaos scenario against the ledger and the Stripe simulator's own
// records. Each returns readable violations (empty when it holds).
import type pg from 'pg';

/** What the API answered 2xx for: the event the host app believes Meterdesk has. */
export interface Accepted {
  identifier: string;
  value: number;
  customer: string;
}

export interface SimulatorRecords {
  /** Accepted meter events per identifier, as Stripe counted them. */
  counts: Record<string, number>;
  data: Array<{ identifier: string; value: number; status: string }>;
}

const MAX_LISTED = 10;

function report(name: string, offenders: string[]): string[] {
  if (offenders.length === 0) return [];
  return [`${name}: ${offenders.length} — ${offenders.slice(0, MAX_LISTED).join('; ')}${offenders.length > MAX_LISTED ? '; …' : ''}`];
}

export async function checkInvariants(pool: pg.Pool, accepted: Map<string, Accepted>, sim: SimulatorRecords): Promise<string[]> {
  const { rows } = await pool.query<{ identifier: string; value: string; status: string; last_error_code: string | null; attention_reason: string | null; n: number }>(
    `SELECT identifier, value::text, status::text, last_error_code, attention_reason, count(*) OVER (PARTITION BY identifier)::int AS n FROM meter_events`,
  );
  const ledger = new Map(rows.map((r) => [r.identifier, r]));
  const violations: string[] = [];

  // 1. An accepted event is never lost, is stored once with the value accepted, and ends in a state an operator can
  //    act on: reported, or failed with its reason (pending only when flagged for attention).
  violations.push(...report('accepted but not in the ledger', [...accepted.keys()].filter((id) => !ledger.has(id))));
  violations.push(...report('stored more than once', rows.filter((r) => r.n > 1).map((r) => r.identifier)));
  violations.push(
    ...report(
      'stored with another value than accepted',
      [...accepted.values()].filter((a) => ledger.has(a.identifier) && Number(ledger.get(a.identifier)!.value) !== a.value).map((a) => `${a.identifier} ${a.value}≠${ledger.get(a.identifier)!.value}`),
    ),
  );
  violations.push(
    ...report(
      'not in a terminal or actionable state',
      rows
        .filter((r) => !(r.status === 'reported' || (r.status === 'failed' && r.last_error_code) || (r.status === 'pending' && r.attention_reason)))
        .map((r) => `${r.identifier} ${r.status}`),
    ),
  );
  violations.push(...report('in the ledger but never accepted (a refused event was written)', rows.filter((r) => !accepted.has(r.identifier)).map((r) => r.identifier)));

  // 2. Stripe counts each identifier's value at most once, and every reported event exactly once with its value.
  violations.push(...report('counted more than once by Stripe', Object.entries(sim.counts).filter(([, n]) => n > 1).map(([id, n]) => `${id}×${n}`)));
  const uncounted = rows.filter((r) => r.status === 'reported' && !sim.counts[r.identifier]).map((r) => r.identifier);
  const history = new Map<string, string>();
  if (uncounted.length > 0) {
    // The attempt timeline of each offender, so the line says what happened, not only that it did.
    const { rows: attempts } = await pool.query<{ identifier: string; steps: string }>(
      `SELECT m.identifier, string_agg(a.source || ':' || a.outcome || coalesce('(' || a.error_code || ')', ''), ' > ' ORDER BY a.started_at) AS steps
         FROM meter_events m JOIN event_attempts a ON a.meter_event_id = m.id WHERE m.identifier = ANY($1::text[]) GROUP BY m.identifier`,
      [uncounted],
    );
    for (const a of attempts) history.set(a.identifier, a.steps);
  }
  violations.push(
    ...report(
      'reported but not counted by Stripe',
      uncounted.map((id) => `${id} (${accepted.get(id)?.customer ?? '?'}; Stripe: ${sim.data.filter((e) => e.identifier === id).map((e) => e.status).join('+') || 'never received'}; ledger: ${history.get(id) ?? 'no attempts'})`),
    ),
  );
  violations.push(...report('counted by Stripe but unknown to the ledger', Object.keys(sim.counts).filter((id) => !ledger.has(id))));
  const simValues = new Map(sim.data.map((e) => [e.identifier, e.value]));
  violations.push(
    ...report(
      'Stripe counted another value than the ledger holds',
      rows.filter((r) => simValues.has(r.identifier) && simValues.get(r.identifier) !== Number(r.value)).map((r) => `${r.identifier} ${r.value}≠${simValues.get(r.identifier)}`),
    ),
  );
  return violations;
}
