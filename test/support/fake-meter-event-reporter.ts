// An in-memory MeterEventReporter for unit tests of code above the seam (never used by the app). It dedupes
// identifiers like Stripe, counts what it took, and answers scripted outcomes for chosen identifiers.
import type { MeterEventReporter, MeterEventToReport, ReportOptions, ReportOutcome, ReportOutcomeKind } from '../../app/billing/processors/types';

export interface ScriptedOutcome {
  outcome: Exclude<ReportOutcomeKind, 'not_attempted'>;
  code?: string;
  message?: string;
  httpStatus?: number;
  /** For `ambiguous`: whether the processor applied the event before the answer was lost. */
  applied?: boolean;
}

export class FakeMeterEventReporter implements MeterEventReporter {
  readonly processor = 'stripe' as const;
  readonly api = 'fake';
  readonly preferredBatchSize: number;
  /** identifier -> how many times it was counted (must never exceed 1). */
  readonly counts = new Map<string, number>();
  readonly calls: MeterEventToReport[][] = [];
  private readonly scripts = new Map<string, ScriptedOutcome[]>();

  constructor(options: { batchSize?: number } = {}) {
    this.preferredBatchSize = options.batchSize ?? 100;
  }

  /** The next answers for an identifier, in order; afterwards it is reported normally. */
  script(identifier: string, ...outcomes: ScriptedOutcome[]): this {
    this.scripts.set(identifier, [...(this.scripts.get(identifier) ?? []), ...outcomes]);
    return this;
  }

  async reportMeterEvents(events: readonly MeterEventToReport[], _options?: ReportOptions): Promise<ReportOutcome[]> {
    this.calls.push([...events]);
    return events.map((event) => {
      const startedAt = new Date();
      const scripted = this.scripts.get(event.identifier)?.shift();
      const base = { eventId: event.id, startedAt, durationMs: 0, response: null };
      if (scripted && scripted.outcome !== 'reported') {
        if (scripted.outcome === 'ambiguous' && scripted.applied) this.take(event.identifier);
        return {
          ...base,
          outcome: scripted.outcome,
          httpStatus: scripted.httpStatus ?? null,
          code: scripted.code ?? scripted.outcome,
          message: scripted.message ?? `scripted ${scripted.outcome}`,
        };
      }
      if (this.counts.has(event.identifier)) {
        return { ...base, outcome: 'duplicate', httpStatus: 400, code: 'duplicate_identifier', message: `An event already exists with identifier ${event.identifier}.` };
      }
      this.take(event.identifier);
      return { ...base, outcome: 'reported', httpStatus: 200, code: null, message: null };
    });
  }

  async close(): Promise<void> {}

  private take(identifier: string) {
    this.counts.set(identifier, (this.counts.get(identifier) ?? 0) + 1);
  }
}
