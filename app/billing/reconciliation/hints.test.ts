// Every difference kind the reconciler can produce has a hint: a sentence of what it means, one of what to do, and
// a link to a desk page. The kinds come from the lists the comparisons draw from (model.ts) and from the kinds
// written in stripe.ts and braintree.ts, so a kind added to either without a hint fails here.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DRIFT_HINTS, driftHint } from './hints';
import { BRAINTREE_DRIFT_KINDS, STRIPE_DRIFT_KINDS, type DriftKind } from './model';

const listed: DriftKind[] = [...STRIPE_DRIFT_KINDS, ...BRAINTREE_DRIFT_KINDS];
// The kind literals the comparisons assign (`kind = 'x'` and the `const kind: DriftKind = ... ;` expression), not
// the ones they compare with (`=== 'last'`).
const produced = ['stripe.ts', 'braintree.ts'].flatMap((file) => {
  const src = readFileSync(new URL(file, import.meta.url), 'utf8');
  const expressions = [...src.matchAll(/kind(?:: DriftKind)? =([^;]*);/g)].map((m) => m[1]!);
  return expressions.flatMap((e) => [...e.matchAll(/(?<![=!]== )'([a-z_]+)'/g)].map((m) => m[1]!));
});

const subject = {
  customerId: '00000000-0000-4000-8000-000000000001',
  customerExternalId: 'acme',
  eventName: 'api_call',
  windowId: '00000000-0000-4000-8000-000000000002',
  periodStart: '2026-12-05T00:00:00.000Z',
};

describe('reconciliation hints', () => {
  it('exist for exactly the kinds the reconciler knows, and for every kind its comparisons write', () => {
    expect(Object.keys(DRIFT_HINTS).sort()).toEqual([...listed].sort());
    expect(new Set(produced)).toEqual(new Set(listed));
    for (const kind of produced) expect(DRIFT_HINTS, kind).toHaveProperty(kind);
  });

  it.each(listed)('%s: says what it means and what to do, and links to a desk page', (kind) => {
    const hint = driftHint(kind, subject);
    expect(hint.meaning.length).toBeGreaterThan(40);
    expect(hint.todo.length).toBeGreaterThan(30);
    expect(hint.action.label).not.toBe('');
    expect(hint.action.href).toMatch(/^\/(events\?|definitions$|windows\/)/);
  });

  it('links Stripe kinds to the day’s events of the customer and meter; missing usage to the failed ones', () => {
    const href = new URL(driftHint('missing_at_processor', subject).action.href, 'http://desk');
    expect(href.pathname).toBe('/events');
    expect(Object.fromEntries(href.searchParams)).toEqual({
      status: 'failed',
      customer: 'acme',
      eventName: 'api_call',
      time: 'occurred',
      from: '2026-12-05T00:00',
      to: '2026-12-06T00:00',
    });
    expect(driftHint('no_processor_meter', subject).action.href).toBe('/definitions');
    expect(driftHint('sale_missing', subject).action.href).toBe(`/windows/${subject.windowId}`);
  });

  it('sends an unknown customer to the customer search before anything filtered by it', () => {
    for (const kind of listed) expect(driftHint(kind, { ...subject, customerExternalId: null }).action).toEqual({ label: 'Find the customer', href: '/customers' });
  });
});
