// The retry actions of the events, event detail and customer pages: which permission each needs, and the call
// into the ledger's retry. Support ("retry:meter-event:own") retries one customer's events at a time: one event,
// a selection within one customer, or that customer's failed events; anything spanning customers, any filter
// without a customer, and every forced retry need "retry:meter-event:any".
import { data, type RouterContextProvider } from 'react-router';
import { z } from 'zod';
import { customersOfEvents, parseEventFilters, resolveCustomerId, type EventFilters } from '../billing/ledger/event-list';
import { previewRetry, retryFailedEvents, RetryRefusedError, type CustomerCheck, type RetryFilter, type RetryResult } from '../billing/ledger/retry';
import { ValidationError } from '../billing/errors';
import { getDesk, getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { actorOf, requireUserWithPermission, userHasPermission, type SessionUser } from '../utils/permissions.server';
import { onceForSubmission } from '../utils/submissions.server';

type Context = Readonly<RouterContextProvider>;

const uuid = z.uuid('Not an event id');
const force = z
  .union([z.literal('on'), z.literal('true'), z.literal('1')])
  .optional()
  .transform((v) => v !== undefined);
const reason = z.string().trim().max(500, 'Keep the reason under 500 characters').optional();
const anyway = force;

export const RetryActionSchema = z.discriminatedUnion('intent', [
  z.object({ intent: z.literal('retry-one'), id: uuid, force, reason, anyway }),
  z.object({ intent: z.literal('retry-selection'), ids: z.array(uuid).min(1, 'Select at least one event').max(1000), force, reason, anyway }),
  z.object({ intent: z.literal('retry-filter'), force, reason, anyway }),
  z.object({ intent: z.literal('retry-customer'), customerId: z.uuid('Unknown customer'), force, reason, anyway }),
]);

export interface RetryActionError {
  intent: string;
  message: string;
}

/** The retry filter the events page's filters describe (only failed Stripe events are ever retried). */
export async function retryFilterFor(pool: Parameters<typeof resolveCustomerId>[0], filters: EventFilters): Promise<RetryFilter | null> {
  const filter: RetryFilter = {};
  if (filters.customer) {
    const id = await resolveCustomerId(pool, filters.customer);
    if (!id) return null;
    filter.customerId = id;
  }
  if (filters.eventName) filter.eventName = filters.eventName;
  if (filters.errorCode) filter.errorCode = filters.errorCode;
  if (filters.cause) filter.cause = filters.cause;
  if (filters.from) filter.from = filters.from;
  if (filters.to) filter.to = filters.to;
  if ((filters.from || filters.to) && filters.time === 'occurred') filter.timeBasis = 'occurred';
  return filter;
}

/** Filters a retry-all cannot honour: they would retry more (or other) events than the list shows. */
export function retryAllBlocker(filters: EventFilters): string | null {
  if (filters.status && filters.status !== 'failed') return 'Only failed events are retried: set the status filter to failed.';
  if (filters.processor === 'braintree') return 'Braintree events are billed in windows, not retried one by one.';
  if (filters.q) return 'Clear the identifier search to retry by filter, or retry the event itself.';
  return null;
}

export async function previewFilterRetry(pool: Parameters<typeof previewRetry>[0], filters: EventFilters, customerCheck?: CustomerCheck) {
  const filter = await retryFilterFor(pool, filters);
  if (!filter) return { matching: 0, retryable: 0, needsForce: 0, byCause: [] };
  return previewRetry(pool, filter, customerCheck);
}

/**
 * Runs one retry intent for an already-signed-in user holding at least retry:meter-event:own, and ends in a
 * redirect with a toast; a refused or invalid retry returns a 400 with the message for the page to show.
 */
export async function handleRetryAction(args: {
  request: Request;
  context: Context;
  user: SessionUser;
  formData: FormData;
  filters: EventFilters;
  /** Where to go after a retry; a function receives the retry's audit id (the events page shows its progress). */
  redirectTo: string | ((auditId: string | undefined) => string);
}) {
  const { request, context, user, formData, filters, redirectTo } = args;
  const { pool } = getServices(context);
  const intent = String(formData.get('intent') ?? '');
  const fail = (message: string) => data({ intent, message } satisfies RetryActionError, { status: 400 });

  const parsed = RetryActionSchema.safeParse({
    intent,
    id: formData.get('id') ?? undefined,
    ids: formData.getAll('ids').map(String),
    customerId: formData.get('customerId') ?? undefined,
    force: formData.get('force') ?? undefined,
    reason: formData.get('reason') ?? undefined,
    anyway: formData.get('anyway') ?? undefined,
  });
  if (!parsed.success) return fail(parsed.error.issues.map((i) => i.message).join('; '));
  const input = parsed.data;
  if (input.force) {
    await requireUserWithPermission(request, context, 'retry:meter-event:any');
    if (!input.reason) return fail('A forced retry needs a reason: say why Stripe did not count the first attempt.');
  }

  let result: RetryResult;
  try {
    const common = { actor: actorOf(user), force: input.force, reason: input.reason, anyway: input.anyway, customerCheck: getDesk(context).customerCheck };
    switch (input.intent) {
      case 'retry-one':
        result = await retryFailedEvents(pool, { ...common, selection: { ids: [input.id] } });
        break;
      case 'retry-selection': {
        const customers = await customersOfEvents(pool, input.ids);
        // Support's scope is one customer: a mixed selection is refused with a sentence, not a 403 page.
        if (customers.length > 1 && !userHasPermission(user, 'retry:meter-event:any')) {
          return fail(`Select events of one customer at a time: these belong to ${customers.length} customers.`);
        }
        result = await retryFailedEvents(pool, { ...common, selection: { ids: input.ids }, customerId: customers.length === 1 ? customers[0] : undefined });
        break;
      }
      case 'retry-filter': {
        const blocker = retryAllBlocker(filters);
        if (blocker) return fail(blocker);
        const filter = await retryFilterFor(pool, filters);
        if (!filter) return fail(`No customer "${filters.customer}".`);
        if (!filter.customerId) await requireUserWithPermission(request, context, 'retry:meter-event:any');
        result = await retryFailedEvents(pool, { ...common, selection: { filter }, customerId: filter.customerId });
        break;
      }
      case 'retry-customer':
        result = await retryFailedEvents(pool, { ...common, selection: { filter: { customerId: input.customerId } }, customerId: input.customerId });
        break;
    }
  } catch (error) {
    if (error instanceof RetryRefusedError || error instanceof ValidationError) return fail(error.message);
    throw error;
  }

  if (result.moved === 0) return fail('No failed events matched: nothing was retried.');
  const refused = Object.entries(result.refusedCounts)
    .filter(([why]) => why !== 'cause_unchanged')
    .map(([why, n]) => `${n} ${why.replace('_', ' ')}`)
    .join(', ');
  const skipped = result.skipped.map((s) => s.sentence).join(' ');
  return redirectWithToast(typeof redirectTo === 'string' ? redirectTo : redirectTo(result.auditId), context, {
    title: result.moved === 1 ? 'Event queued for reporting again' : `${result.moved} events queued for reporting again`,
    description: [result.forced ? 'Forced past the 23 h guard.' : '', refused ? `Not retried: ${refused}.` : '', skipped].filter(Boolean).join(' ') || undefined,
  });
}

/** What the user may retry, for a page that offers retries. */
export function retryPermissionsOf(user: SessionUser) {
  return {
    canRetryOwn: userHasPermission(user, 'retry:meter-event:own'),
    canRetryAny: userHasPermission(user, 'retry:meter-event:any'),
  };
}

/**
 * The action of a page that retries only its own subject (one event, or one customer's failed events): the page
 * fixes the intent and the subject whatever the form says, and a double click or a resent form runs it once
 * (app/utils/submissions.server.ts).
 */
export function retryOwnSubject(
  request: Request,
  context: Context,
  subject: { intent: 'retry-one'; id: string } | { intent: 'retry-customer'; customerId: string },
  redirectTo: string,
) {
  return onceForSubmission(request, context, async () => {
    const user = await requireUserWithPermission(request, context, 'retry:meter-event:own');
    const formData = await request.formData();
    for (const [name, value] of Object.entries(subject)) formData.set(name, value);
    return handleRetryAction({ request, context, user, formData, filters: parseEventFilters(new URLSearchParams()), redirectTo });
  });
}
