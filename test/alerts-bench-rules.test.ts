// The rules `npm run bench -- alerts` creates (bench/alerts.ts alertRuleInputs): every one passes parseRule, every
// kind of RULE_PARAMS is covered, names are unique, parameters vary within each kind, and 1,000 of them ask a
// realistic number of distinct questions (100 to 200 measures shared by a pass), so the bench measures sharing
// rather than 1,000 copies of one rule or 1,000 unrelated ones. No database: the measures are counted against a
// client that answers nothing.
import { describe, expect, it } from 'vitest';
import { parseRule, RULE_PARAMS, type AlertRule, type RuleKind } from '../app/billing/alerts/rules';
import { SCALE_ERROR_CODES } from '../app/seed/scale';
import { alertRuleInputs, BRAINTREE_DECLINE_CODES, distinctMeasures, type RuleContext } from '../bench/_alert-rules';

const ctx: RuleContext = {
  errorCodes: SCALE_ERROR_CODES.map((c) => c[0]),
  saleCodes: BRAINTREE_DECLINE_CODES,
  customers: Array.from({ length: 12 }, (_, c) => ({ externalId: `scale-${String(c).padStart(5, '0')}`, processor: c % 2 ? 'braintree' : 'stripe' })),
  eventNames: ['ai_tokens', 'api_calls'],
};

function parsedRules(count: number): AlertRule[] {
  return alertRuleInputs(count, ctx).map((input, i) => {
    const parsed = parseRule(input);
    if (!parsed.ok) throw new Error(`${String(input.name)} refused: ${parsed.field} ${parsed.message} (${JSON.stringify(input.params)})`);
    return { id: `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`, enabled: true, ...parsed.value } as AlertRule;
  });
}

describe('bench/alerts.ts rules', () => {
  it('are valid rules over every kind, with unique names and varied parameters', () => {
    const inputs = alertRuleInputs(1000, ctx);
    const rules = parsedRules(1000);
    expect(rules).toHaveLength(1000);
    expect(new Set(inputs.map((r) => r.name)).size).toBe(1000);
    const kinds = Object.keys(RULE_PARAMS) as RuleKind[];
    expect(new Set(rules.map((r) => r.kind))).toEqual(new Set(kinds));
    for (const kind of kinds) {
      const ofKind = rules.filter((r) => r.kind === kind);
      expect(ofKind.length, kind).toBeGreaterThanOrEqual(Math.floor(1000 / kinds.length));
      expect(new Set(ofKind.map((r) => JSON.stringify(r.params))).size, kind).toBeGreaterThan(1);
    }
    // Deterministic: the same rules at every run, so runs compare.
    expect(alertRuleInputs(1000, ctx)).toEqual(inputs);
  });

  it('1,000 of them share 100 to 200 distinct measures', async () => {
    const distinct = await distinctMeasures(parsedRules(1000));
    expect(distinct).toBeGreaterThanOrEqual(100);
    expect(distinct).toBeLessThanOrEqual(200);
  });
});
