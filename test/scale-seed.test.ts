// The scale seed and its growth steps (`npm run bench -- scale` and `-- desk`), small: what they write must be a
// ledger the product itself could have written, or the bench measures something else. The seed runs with triggers
// off where the role may (superuser here), so whatever triggers keep (the invoice totals rollup, each invoice's copy
// of its window's state, ADR 031 and 034) the seed must write itself, exactly.
import { describe, expect, it } from 'vitest';
import { seedBase } from '../app/seed/base';
import { seedScale } from '../app/seed/scale';
import { growScale } from '../app/seed/scale-growth';
import { useTestServices } from './support/services';

const t = useTestServices();
const q = async <T,>(sql: string) => (await t.services.pool.query(sql)).rows as T[];

describe('scale seed and growth', () => {
  it('seeds, then grows to the next size, leaving a ledger consistent with what its triggers would keep', async () => {
    await seedBase(t.services.prisma);
    const seeded = await seedScale(t.services.pool, { events: 3_000, windows: 300 });
    expect(seeded).toMatchObject({ status: 'seeded', events: 3_000, windows: 300 });
    const grown = await growScale(t.services.pool, { events: 9_000, windows: 900, chunk: 2_500 });
    expect(grown).toMatchObject({ addedEvents: 6_000, addedWindows: 600 });

    expect(await q(`SELECT count(*)::int AS n FROM meter_events`)).toEqual([{ n: 9_000 }]);
    // Every identifier is claimed for its event (ADR 032): the ledger's duplicate check would see each of them.
    expect(await q(`SELECT count(*)::int AS n FROM meter_events e JOIN meter_event_identifiers m ON m.identifier = e.identifier AND m.event_id = e.id`)).toEqual([{ n: 9_000 }]);
    // Each id's UUIDv7 time is its received_at, so each row sits in its month's partition.
    expect(await q(`SELECT count(*)::int AS n FROM meter_events WHERE meterdesk_uuidv7_time(id) <> received_at`)).toEqual([{ n: 0 }]);
    // Each invoice carries its window's state.
    expect(await q(`SELECT count(*)::int AS n FROM invoices i JOIN windows w ON w.id = i.window_id WHERE i.window_state <> w.state`)).toEqual([{ n: 0 }]);
    // The rollup holds exactly the invoices' sums, by currency, state, processor and month.
    const exact = await q(
      `SELECT i.currency, w.state::text, c.processor::text, date_trunc('month', w.period_end AT TIME ZONE 'UTC')::date::text AS month,
              count(*)::int AS invoices, sum(i.total_minor)::text AS total
         FROM invoices i JOIN windows w ON w.id = i.window_id JOIN customers c ON c.id = i.customer_id
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
    );
    const rollup = await q(
      `SELECT currency, state::text, processor::text, period_month::text AS month, invoices, total_minor::text AS total
         FROM invoice_totals ORDER BY 1, 2, 3, 4`,
    );
    expect(exact.length).toBeGreaterThan(3);
    expect(rollup).toEqual(exact);
  }, 300_000);
});
