// What the Stripe webhook modules share: the stored row, the definitive-failure error, small helpers.

export interface StoredWebhook {
  id: string;
  processor_event_id: string;
  type: string;
  payload: Record<string, unknown>;
  processed_at: Date | null;
}

/** A definitive reason the event cannot be applied; retrying the job would not change it. */
export class NotApplicable extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'NotApplicable';
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function firstLine(message: string): string {
  return (message.split('\n')[0] ?? '').trim().slice(0, 300);
}
