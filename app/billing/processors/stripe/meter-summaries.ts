// What Stripe counted, for reconciliation: meter event summaries (`GET /v1/billing/meters/:id/event_summaries`)
// for one customer and meter, grouped by UTC day, through the real SDK, against Stripe itself or the simulator.
// Stripe aggregates meter events asynchronously, so live summaries are eventually consistent: the reconciler
// leaves recently reported buckets for a later run (ADR 011). Calls are paced well under Stripe's limits so a
// reconciliation never takes the rate that reporting needs.
import Stripe from 'stripe';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { RateLimiter, Semaphore } from '../limits';
import type { MeterAggregation, MeterDayTotal, MeterEventSource, MeterTotalsQuery, MeterTotalsResult } from '../types';

export interface StripeMeterSummariesConfig {
  /** A plain API client (the process's `stripe.client`: real Stripe or the simulator). */
  client: Stripe;
  /** Summary pages per second from this process. Default 20: a fifth of Stripe's live-mode limit for ordinary API calls (100/s). */
  ratePerSecond?: number;
  /** Calls in flight at once. Default 4. */
  maxInFlight?: number;
  /** How long the event name -> meter map is reused before meters are listed again. Default 60 s. */
  meterCacheMs?: number;
  now?: () => number;
}

interface MeterAggregationInfo {
  id: string;
  aggregation: MeterAggregation | null;
  active: boolean;
  updated: number;
}

const tracer = trace.getTracer('meterdesk.stripe');
const DAY_SECONDS = 86_400;
const AGGREGATIONS: readonly MeterAggregation[] = ['sum', 'count', 'last'];

export class StripeMeterEventSummaries implements MeterEventSource {
  readonly processor = 'stripe' as const;
  private readonly client: Stripe;
  private readonly limiter: RateLimiter;
  private readonly inFlight: Semaphore;
  private readonly meterCacheMs: number;
  private readonly now: () => number;
  private meterMap: { at: number; meters: Promise<Map<string, MeterAggregationInfo>> } | null = null;

  constructor(config: StripeMeterSummariesConfig) {
    this.client = config.client;
    this.limiter = new RateLimiter(config.ratePerSecond ?? 20, 2);
    this.inFlight = new Semaphore(config.maxInFlight ?? 4);
    this.meterCacheMs = config.meterCacheMs ?? 60_000;
    this.now = config.now ?? Date.now;
  }

  async dailyTotals(query: MeterTotalsQuery): Promise<MeterTotalsResult> {
    return tracer.startActiveSpan('StripeMeterEventSummaries.dailyTotals', async (span): Promise<MeterTotalsResult> => {
      try {
        const result = await this.totals(query);
        if (result.outcome === 'error') span.setStatus({ code: SpanStatusCode.ERROR, message: result.code });
        else span.setAttribute('meterdesk.summary_days', result.days.length);
        return result;
      } finally {
        span.end();
      }
    });
  }

  private async totals(query: MeterTotalsQuery): Promise<MeterTotalsResult> {
    const from = Math.floor(query.from.getTime() / 1000);
    const to = Math.floor(query.to.getTime() / 1000);
    if (from % DAY_SECONDS !== 0 || to % DAY_SECONDS !== 0 || to <= from) {
      throw new Error(`dailyTotals needs whole UTC days, got ${query.from.toISOString()} .. ${query.to.toISOString()}`);
    }
    let meter: MeterAggregationInfo | undefined;
    try {
      meter = (await this.meters()).get(query.eventName);
    } catch (error) {
      return asError(error);
    }
    if (!meter) return { outcome: 'found', meterId: null, aggregation: null, days: [] };
    const days: MeterDayTotal[] = [];
    try {
      await this.inFlight.run(async () => {
        let startingAfter: string | undefined;
        // Pages by hand (not the SDK's auto-pagination) so every page waits for its turn at the limiter.
        for (;;) {
          await this.limiter.take(1);
          const page = await this.client.billing.meters.listEventSummaries(meter.id, {
            customer: query.processorCustomerId,
            start_time: from,
            end_time: to,
            value_grouping_window: 'day',
            limit: 100,
            ...(startingAfter ? { starting_after: startingAfter } : {}),
          });
          for (const s of page.data) days.push({ periodStart: new Date(s.start_time * 1000), value: Number(s.aggregated_value) });
          if (!page.has_more || page.data.length === 0) break;
          startingAfter = page.data[page.data.length - 1]!.id;
        }
      });
    } catch (error) {
      // A customer Stripe does not know has counted nothing; the ledger side then decides whether that is drift.
      if (error instanceof Stripe.errors.StripeInvalidRequestError && error.code === 'resource_missing' && error.param === 'customer') {
        return { outcome: 'found', meterId: meter.id, aggregation: meter.aggregation, days: [] };
      }
      return asError(error);
    }
    return { outcome: 'found', meterId: meter.id, aggregation: meter.aggregation, days };
  }

  /** Event name -> the meter that counts it: the active one, else the most recently updated (a deactivated meter keeps its summaries). */
  private meters(): Promise<Map<string, MeterAggregationInfo>> {
    const now = this.now();
    if (this.meterMap && now - this.meterMap.at < this.meterCacheMs) return this.meterMap.meters;
    const meters = (async () => {
      const map = new Map<string, MeterAggregationInfo>();
      await this.limiter.take(1);
      for await (const m of this.client.billing.meters.list({ limit: 100 })) {
        const formula: string | undefined = m.default_aggregation?.formula;
        const info: MeterAggregationInfo = {
          id: m.id,
          aggregation: AGGREGATIONS.find((a) => a === formula) ?? null,
          active: m.status === 'active',
          updated: m.updated ?? m.created ?? 0,
        };
        const seen = map.get(m.event_name);
        if (!seen || (info.active && !seen.active) || (info.active === seen.active && info.updated > seen.updated)) map.set(m.event_name, info);
      }
      return map;
    })();
    this.meterMap = { at: now, meters };
    // A failed listing is not cached: the next call tries again.
    meters.catch(() => {
      if (this.meterMap?.meters === meters) this.meterMap = null;
    });
    return meters;
  }
}

function asError(error: unknown): Extract<MeterTotalsResult, { outcome: 'error' }> {
  if (error instanceof Stripe.errors.StripeError) {
    return { outcome: 'error', code: error.code ?? error.type, message: error.message };
  }
  return { outcome: 'error', code: 'unexpected_error', message: error instanceof Error ? error.message : String(error) };
}
