// The one table of state words (app/billing/states.ts) against the database's own enums: every state a row can hold
// has a label, a tone and a meaning, and nothing in the table is a state the database cannot hold.
import { describe, expect, it } from 'vitest';
import { renderToStaticMarkup } from 'react-dom/server';
import { createElement } from 'react';
import { STATES, stateWords, TONES, type StateKind } from '../app/billing/states';
import { StateBadge } from '../app/components/state-badge';
import { useTestDatabaseClient } from './support/database';

const ENUMS: Record<StateKind, string> = {
  event: 'meter_event_status',
  window: 'window_state',
  charge: 'charge_status',
  subscription: 'subscription_status',
};

const db = useTestDatabaseClient();

describe('state words', () => {
  for (const [kind, enumName] of Object.entries(ENUMS) as Array<[StateKind, string]>) {
    it(`cover exactly the values of ${enumName}`, async () => {
      const { rows } = await db().query<{ v: string }>(`SELECT unnest(enum_range(NULL::${enumName}))::text AS v`);
      expect(rows.length).toBeGreaterThan(0);
      expect(Object.keys(STATES[kind]).sort()).toEqual(rows.map((r) => r.v).sort());
    });
  }

  it('give every state a label that is words (not snake_case), a known tone and a sentence', () => {
    for (const table of Object.values(STATES)) {
      for (const [state, words] of Object.entries(table)) {
        expect(words.label, state).toMatch(/^[A-Z][a-z ,]+$/);
        expect(TONES).toContain(words.tone);
        expect(words.meaning, state).toMatch(/^[A-Z].*\.$/);
      }
    }
  });

  it('read a state unknown to this version as itself, needing attention', () => {
    expect(stateWords('window', 'frozen')).toMatchObject({ label: 'frozen', tone: 'attention' });
  });

  it('render as a badge with words, an icon and the tone in words, never colour alone', () => {
    const html = renderToStaticMarkup(createElement(StateBadge, { kind: 'window', state: 'awaiting_payment_method' }));
    expect(html).toContain('badge-tone-attention');
    expect(html).toContain('Awaiting payment method');
    expect(html).toContain('(needs attention)');
    expect(html).toMatch(/aria-hidden="true" class="badge-icon">▲/);
    expect(html).toContain('title="The customer has no default payment method; settle again once they add one."');
  });
});

describe('window phrases', () => {
  it('every window state can be said inside a sentence', () => {
    for (const [state, words] of Object.entries(STATES.window)) expect(words.phrase, state).toMatch(/^[a-z][a-z ,]+$/);
  });
});
