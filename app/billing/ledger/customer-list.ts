// The desk's customer reads: search and the customer page (its subscriptions, newest events and failed count).
import type { Queryable } from '../db';
import { EVENT_COLUMNS, EVENT_PAGE_SIZE, FAILURE_SUMMARY_CAP, UUID, span, toEventRow, type EventDbRow, type EventRow } from './event-list';

export interface CustomerRow {
  id: string;
  externalId: string;
  name: string | null;
  email: string | null;
  processor: string;
  processorCustomerId: string;
}

export interface CustomerDetail extends CustomerRow {
  createdAt: string;
  defaultPaymentMethodToken: boolean;
  subscriptions: {
    id: string;
    processorSubscriptionId: string;
    plan: string;
    status: string;
    currentPeriodStart: string;
    currentPeriodEnd: string;
  }[];
  events: EventRow[];
  /** Failed events of this customer, counted up to FAILURE_SUMMARY_CAP. */
  failed: number;
  failedCapped: boolean;
}

const CUSTOMER_COLUMNS = `id, external_id, name, email, processor::text AS processor, processor_customer_id`;
type CustomerDbRow = {
  id: string;
  external_id: string;
  name: string | null;
  email: string | null;
  processor: string;
  processor_customer_id: string;
};
const toCustomerRow = (r: CustomerDbRow): CustomerRow => ({
  id: r.id,
  externalId: r.external_id,
  name: r.name,
  email: r.email,
  processor: r.processor,
  processorCustomerId: r.processor_customer_id,
});

/** `LIKE` pattern for "starts with `text`": its own % and _ (and the escape) taken literally. */
const startsWith = (text: string) => `${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export const CustomerSearchPresenter = {
  /**
   * Exact processor customer id, or a prefix (case-insensitive) of the external id, the name or the email; without a
   * query, the first 50 by external id. Exact external id matches sort first.
   */
  call(db: Queryable, query: string | undefined): Promise<CustomerRow[]> {
    return span('CustomerSearchPresenter.call', async () => {
      const q = query?.trim();
      if (!q) {
        const { rows } = await db.query<CustomerDbRow>(`SELECT ${CUSTOMER_COLUMNS} FROM customers ORDER BY external_id LIMIT 50`);
        return rows.map(toCustomerRow);
      }
      // Each branch is one index range (lower(external_id|name|email) text_pattern_ops, (processor, processor_customer_id)),
      // each bounded, so a short prefix never reads the whole table.
      const { rows } = await db.query<CustomerDbRow>(
        `SELECT ${CUSTOMER_COLUMNS} FROM (
           (SELECT * FROM customers WHERE lower(external_id) LIKE $2 ORDER BY lower(external_id) LIMIT 50)
           UNION
           (SELECT * FROM customers WHERE lower(name) LIKE $2 ORDER BY lower(name) LIMIT 50)
           UNION
           (SELECT * FROM customers WHERE lower(email) LIKE $2 ORDER BY lower(email) LIMIT 50)
           UNION
           SELECT * FROM customers WHERE processor = ANY(ARRAY['stripe','braintree']::processor[]) AND processor_customer_id = $1
         ) c ORDER BY (lower(external_id) = lower($1)) DESC, external_id LIMIT 50`,
        [q, startsWith(q.toLowerCase())],
      );
      return rows.map(toCustomerRow);
    });
  },
};

export const CustomerDetailPresenter = {
  call(db: Queryable, id: string): Promise<CustomerDetail | null> {
    return span('CustomerDetailPresenter.call', async () => {
      if (!UUID.test(id)) return null;
      const { rows } = await db.query<CustomerDbRow & { created_at: Date; default_payment_method_token: string | null }>(
        `SELECT ${CUSTOMER_COLUMNS}, created_at, default_payment_method_token FROM customers WHERE id = $1::uuid`,
        [id],
      );
      const c = rows[0];
      if (!c) return null;
      const [subscriptions, events, failed] = await Promise.all([
        db.query<{
          id: string;
          processor_subscription_id: string;
          plan: string;
          status: string;
          current_period_start: Date;
          current_period_end: Date;
        }>(
          `SELECT s.id, s.processor_subscription_id, p.name AS plan, s.status::text AS status, s.current_period_start, s.current_period_end
             FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.customer_id = $1::uuid ORDER BY s.created_at DESC LIMIT 50`,
          [id],
        ),
        db.query<EventDbRow>(
          `SELECT ${EVENT_COLUMNS} FROM meter_events e JOIN customers c ON c.id = e.customer_id
            WHERE e.customer_id = $1::uuid ORDER BY e.id DESC LIMIT ${EVENT_PAGE_SIZE}`,
          [id],
        ),
        db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM (
             SELECT 1 FROM meter_events WHERE customer_id = $1::uuid AND status = 'failed' LIMIT ${FAILURE_SUMMARY_CAP + 1}
           ) f`,
          [id],
        ),
      ]);
      const failedCount = failed.rows[0]?.n ?? 0;
      return {
        ...toCustomerRow(c),
        createdAt: c.created_at.toISOString(),
        defaultPaymentMethodToken: c.default_payment_method_token !== null,
        subscriptions: subscriptions.rows.map((s) => ({
          id: s.id,
          processorSubscriptionId: s.processor_subscription_id,
          plan: s.plan,
          status: s.status,
          currentPeriodStart: s.current_period_start.toISOString(),
          currentPeriodEnd: s.current_period_end.toISOString(),
        })),
        events: events.rows.map(toEventRow),
        failed: Math.min(failedCount, FAILURE_SUMMARY_CAP),
        failedCapped: failedCount > FAILURE_SUMMARY_CAP,
      };
    });
  },
};
