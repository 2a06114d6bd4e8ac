// The definitions page's reads and form handling. The domain (app/billing/definitions.ts) validates, writes and
// audits; this file turns the form's per-plan price fields (decimal amounts in the currency's major unit) into the
// domain's input, and the domain's field errors back into the form's fields.
import type pg from 'pg';
import { z } from 'zod';
import { listMeters, listMissingDefinitions, listPlans, type DefinitionInput } from '../billing/definitions';
import type { FieldError } from '../billing/errors';
import { currencyExponent } from '../billing/windows/invoice-math';
import { canonicalUnitAmount, UNIT_PRICE_PLACES } from '../billing/windows/unit-price';

export const CURRENCIES = ['usd', 'eur', 'gbp'] as const;

export async function loadDefinitionsPage(pool: pg.Pool) {
  const [meters, inbox, plans] = await Promise.all([listMeters(pool), listMissingDefinitions(pool), listPlans(pool)]);
  return { meters, inbox, plans };
}

/** Form field names of a plan's price and its unit count. */
export const priceField = (planId: string) => `price:${planId}`;
export const perUnitsField = (planId: string) => `perUnits:${planId}`;

export type FormValues = Record<string, string>;
export type FormErrors = Record<string, string[]>;

/**
 * A unit price typed in the currency's major unit as the domain's minor-unit decimal (ADR 030): `0.05` USD → `'5'`,
 * `0.00015` USD → `'0.015'`. Null when the text is not a plain decimal with at most the currency's decimals plus 12.
 */
export function parseMajorUnitPrice(text: string, currency: string): string | null {
  const exponent = currencyExponent(currency);
  const match = /^(\d{1,15})(?:\.(\d+))?$/.exec(text.trim());
  if (!match) return null;
  const [, whole, frac = ''] = match;
  if (frac.length > exponent + UNIT_PRICE_PLACES) return null;
  const digits = frac.padEnd(exponent, '0');
  const rest = digits.slice(exponent);
  return canonicalUnitAmount(`${whole}${digits.slice(0, exponent)}${rest ? `.${rest}` : ''}`);
}

export type DefinitionFormResult =
  | { ok: true; input: DefinitionInput; planOrder: string[] }
  | { ok: false; errors: FormErrors };

/** The add-definition form as the domain's input: a blank price means "no price on this plan". */
export function definitionFromForm(form: FormValues, planIds: readonly string[]): DefinitionFormResult {
  const errors: FormErrors = {};
  const currency = CURRENCIES.includes(form.currency as (typeof CURRENCIES)[number]) ? form.currency! : 'usd';
  const rounding = form.rounding === 'down' ? 'down' : 'up';
  const prices: NonNullable<DefinitionInput['prices']> = [];
  const planOrder: string[] = [];
  for (const planId of planIds) {
    const amountText = (form[priceField(planId)] ?? '').trim();
    const perText = (form[perUnitsField(planId)] ?? '').trim() || '1';
    if (!amountText) continue;
    const amount = parseMajorUnitPrice(amountText, currency);
    if (amount === null) {
      errors[priceField(planId)] = [`Enter an amount like 0.05 or 0.00015 (at most ${currencyExponent(currency) + UNIT_PRICE_PLACES} decimals)`];
      continue;
    }
    if (!/^\d{1,15}$/.test(perText) || BigInt(perText) < 1n) {
      errors[perUnitsField(planId)] = ['Enter a whole number of units, at least 1'];
      continue;
    }
    prices.push({ planId, unitAmountDecimal: amount, perUnits: BigInt(perText), rounding, currency });
    planOrder.push(planId);
  }
  if (Object.keys(errors).length > 0) return { ok: false, errors };
  return {
    ok: true,
    planOrder,
    input: {
      eventName: form.eventName ?? '',
      displayName: form.displayName ?? '',
      aggregation: (form.aggregation ?? '') as DefinitionInput['aggregation'],
      prices,
      reason: form.reason?.trim() || undefined,
    },
  };
}

/** The domain's field paths (`prices.0.unitAmountDecimal`) as the form's field names. */
export function formErrorsFrom(fieldErrors: readonly FieldError[], planOrder: readonly string[]): FormErrors {
  const errors: FormErrors = {};
  for (const e of fieldErrors) {
    const price = /^prices\.(\d+)\.(\w+)$/.exec(e.field);
    const planId = price ? planOrder[Number(price[1])] : undefined;
    const field = planId ? (price![2] === 'perUnits' ? perUnitsField(planId) : priceField(planId)) : e.field.split('.')[0]!;
    (errors[field] ??= []).push(e.message);
  }
  return errors;
}

export const ReplaySchema = z.object({
  intent: z.literal('replay'),
  eventName: z.string().trim().min(1, 'Choose an event name').max(100),
});

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

/** The toast after add + replay: what was billed, and what was deliberately left alone. */
export function replaySummary(r: { reauthored: unknown[]; skipped: unknown[]; chargedWindows: number }): string {
  const parts = [`${plural(r.reauthored.length, 'window')} re-authored`];
  if (r.skipped.length) parts.push(`${plural(r.skipped.length, 'window')} skipped (charged meanwhile)`);
  if (r.chargedWindows) parts.push(`${plural(r.chargedWindows, 'charged window')} left as ${r.chargedWindows === 1 ? 'it was' : 'they were'}`);
  return `${parts.join('; ')}.`;
}
