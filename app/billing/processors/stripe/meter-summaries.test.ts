// Stripe's meter event summaries as reconciliation reads them: events reported through the real SDK (StripeProcessor)
// to the simulator, read back through the real SDK's `billing.meters.listEventSummaries` (the simulator's
// `GET /v1/billing/meters/:id/event_summaries`): per UTC day, with the meter's formula, paginated, validated.
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StripeMeterEventSummaries } from './meter-summaries';
import { StripeProcessor } from './processor';
import { SIMULATOR_SECRET_KEY, startStripeSimulator, type StripeSimulator } from '../../../../simulators/stripe/simulator';

const DAY = 86_400_000;
const today = new Date(Math.floor(Date.now() / DAY) * DAY);
const yesterday = new Date(today.getTime() - DAY);
const at = (day: Date, hours: number) => new Date(day.getTime() + hours * 3_600_000);

let sim: StripeSimulator;
let stripe: Stripe;
let processor: StripeProcessor;
let source: StripeMeterEventSummaries;

async function report(events: Array<{ identifier: string; eventName: string; customer: string; value: number; occurredAt: Date }>) {
  const outcomes = await processor.reportMeterEvents(
    events.map((e) => ({ id: e.identifier, identifier: e.identifier, eventName: e.eventName, processorCustomerId: e.customer, value: e.value, occurredAt: e.occurredAt })),
  );
  expect(outcomes.map((o) => o.outcome)).toEqual(events.map(() => 'reported'));
}

beforeAll(async () => {
  sim = await startStripeSimulator();
  sim.addCustomer('cus_sum');
  sim.addCustomer('cus_other');
  sim.addMeter('tokens');
  sim.addMeter('calls', { aggregation: 'count' });
  sim.addMeter('seats', { aggregation: 'last' });
  stripe = new Stripe(SIMULATOR_SECRET_KEY, { ...sim.clientConfig, maxNetworkRetries: 0 });
  processor = new StripeProcessor({ secretKey: SIMULATOR_SECRET_KEY, apiBase: sim.url, api: 'v1', timeoutMs: 2000 });
  source = new StripeMeterEventSummaries({ client: stripe, meterCacheMs: 0 });
  const hoursIntoToday = Math.max(0, Math.floor((Date.now() - today.getTime()) / 3_600_000) - 1);
  await report([
    { identifier: 's-1', eventName: 'tokens', customer: 'cus_sum', value: 100, occurredAt: at(yesterday, 1) },
    { identifier: 's-2', eventName: 'tokens', customer: 'cus_sum', value: 250, occurredAt: at(yesterday, 23) },
    { identifier: 's-3', eventName: 'tokens', customer: 'cus_sum', value: 7, occurredAt: at(today, hoursIntoToday) },
    { identifier: 's-4', eventName: 'tokens', customer: 'cus_other', value: 1000, occurredAt: at(yesterday, 2) },
    { identifier: 's-5', eventName: 'tokens', customer: 'cus_sum', value: 40, occurredAt: at(yesterday, 3) },
    { identifier: 'c-1', eventName: 'calls', customer: 'cus_sum', value: 9, occurredAt: at(yesterday, 1) },
    { identifier: 'c-2', eventName: 'calls', customer: 'cus_sum', value: 9, occurredAt: at(yesterday, 2) },
    { identifier: 'l-1', eventName: 'seats', customer: 'cus_sum', value: 5, occurredAt: at(yesterday, 1) },
    { identifier: 'l-2', eventName: 'seats', customer: 'cus_sum', value: 3, occurredAt: at(yesterday, 4) },
  ]);
  // A cancelled event no longer counts.
  await stripe.billing.meterEventAdjustments.create({ event_name: 'tokens', type: 'cancel', cancel: { identifier: 's-5' } });
});

afterAll(async () => {
  await processor?.close();
  await sim?.stop();
});

describe('StripeMeterEventSummaries', () => {
  it('totals a customer and meter per UTC day with the meter formula (sum, count, last), cancelled events excluded', async () => {
    const range = { from: yesterday, to: new Date(today.getTime() + DAY) };
    const tokens = await source.dailyTotals({ processorCustomerId: 'cus_sum', eventName: 'tokens', ...range });
    expect(tokens).toMatchObject({ outcome: 'found', aggregation: 'sum', meterId: expect.stringMatching(/^mtr_/) });
    const byDay = (r: typeof tokens) => (r.outcome === 'found' ? Object.fromEntries(r.days.map((d) => [d.periodStart.toISOString().slice(0, 10), d.value])) : null);
    expect(byDay(tokens)).toEqual({ [yesterday.toISOString().slice(0, 10)]: 350, [today.toISOString().slice(0, 10)]: 7 });
    expect(byDay(await source.dailyTotals({ processorCustomerId: 'cus_other', eventName: 'tokens', ...range }))).toEqual({ [yesterday.toISOString().slice(0, 10)]: 1000 });
    const calls = await source.dailyTotals({ processorCustomerId: 'cus_sum', eventName: 'calls', ...range });
    expect(calls).toMatchObject({ aggregation: 'count' });
    expect(byDay(calls)).toEqual({ [yesterday.toISOString().slice(0, 10)]: 2 });
    const seats = await source.dailyTotals({ processorCustomerId: 'cus_sum', eventName: 'seats', ...range });
    expect(seats).toMatchObject({ aggregation: 'last' });
    expect(byDay(seats)).toEqual({ [yesterday.toISOString().slice(0, 10)]: 3 });
  });

  it('says "no meter" for an event name Stripe has no meter for, and nothing counted for a customer Stripe does not know', async () => {
    const range = { from: yesterday, to: new Date(today.getTime() + DAY) };
    expect(await source.dailyTotals({ processorCustomerId: 'cus_sum', eventName: 'never_metered', ...range })).toEqual({ outcome: 'found', meterId: null, aggregation: null, days: [] });
    expect(await source.dailyTotals({ processorCustomerId: 'cus_unknown', eventName: 'tokens', ...range })).toMatchObject({ outcome: 'found', aggregation: 'sum', days: [] });
  });

  it('reports an unreachable Stripe as an error, not as zero usage', async () => {
    const down = new StripeMeterEventSummaries({ client: new Stripe(SIMULATOR_SECRET_KEY, { host: '127.0.0.1', port: 1, protocol: 'http', maxNetworkRetries: 0 }) });
    const r = await down.dailyTotals({ processorCustomerId: 'cus_sum', eventName: 'tokens', from: yesterday, to: today });
    expect(r.outcome).toBe('error');
  });
});

describe('the simulator endpoint through the SDK', () => {
  it('pages newest first with starting_after (the SDK auto-pagination)', async () => {
    const meter = (await stripe.billing.meters.list()).data.find((m) => m.event_name === 'tokens')!;
    const seen: Array<{ start: number; value: number }> = [];
    for await (const s of stripe.billing.meters.listEventSummaries(meter.id, {
      customer: 'cus_sum',
      start_time: Math.floor((yesterday.getTime() - DAY) / 1000),
      end_time: Math.floor((today.getTime() + DAY) / 1000),
      value_grouping_window: 'hour',
      limit: 1,
    })) {
      expect(s.object).toBe('billing.meter_event_summary');
      expect(s.end_time - s.start_time).toBe(3600);
      seen.push({ start: s.start_time, value: s.aggregated_value });
    }
    expect(seen.map((s) => s.start)).toEqual([...seen.map((s) => s.start)].sort((a, b) => b - a));
    expect(seen.reduce((sum, s) => sum + s.value, 0)).toBe(357);
    expect(seen).toHaveLength(3);
    // No grouping window: one summary over the whole range.
    const whole = await stripe.billing.meters.listEventSummaries(meter.id, { customer: 'cus_sum', start_time: Math.floor(yesterday.getTime() / 1000), end_time: Math.floor(today.getTime() / 1000) });
    expect(whole.data.map((s) => s.aggregated_value)).toEqual([350]);
  });

  it('refuses misaligned times, a reversed range, an unknown meter, with Stripe-shaped errors', async () => {
    const meter = (await stripe.billing.meters.list()).data.find((m) => m.event_name === 'tokens')!;
    const start = Math.floor(yesterday.getTime() / 1000);
    const bad = (p: Partial<Stripe.Billing.MeterListEventSummariesParams>, id = meter.id) =>
      stripe.billing.meters.listEventSummaries(id, { customer: 'cus_sum', start_time: start, end_time: start + 86_400, ...p }).catch((e: unknown) => e);
    expect(await bad({ start_time: start + 30 })).toMatchObject({ type: 'StripeInvalidRequestError', param: 'start_time' });
    expect(await bad({ start_time: start + 3600, value_grouping_window: 'day' })).toMatchObject({ type: 'StripeInvalidRequestError', param: 'start_time' });
    expect(await bad({ end_time: start })).toMatchObject({ type: 'StripeInvalidRequestError', param: 'end_time' });
    expect(await bad({}, 'mtr_missing')).toMatchObject({ type: 'StripeInvalidRequestError', statusCode: 404, code: 'resource_missing' });
    expect(await bad({ customer: 'cus_unknown' })).toMatchObject({ code: 'resource_missing', param: 'customer' });
  });
});
