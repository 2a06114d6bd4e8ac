// The HTTP API and `/metrics` as a plain Node handler (/healthz and /readyz: app/server/health.ts): the ingest hot path skips the Fetch conversion
// of the desk's framework. Routes stay thin; the rules live in app/billing.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type pg from 'pg';
import type { PrismaClient } from '../db/clients';
import type { ApiKeyVerifier } from '../billing/access/api-keys';
import { BillingError } from '../billing/errors';
import { createCustomer, upsertSubscription } from '../billing/customers';
import type { GroupCommitter } from '../billing/ledger/group-commit';
import type { IngestResult, Ledger } from '../billing/ledger/ledger';
import { MAX_BATCH_SIZE } from '../billing/ledger/event-input';
import { readJson } from './body';
import { ProblemError, sendJson, sendProblem } from './problem';
import { errorFields, logger } from '../log';

const log = logger('api');
import { getEvent } from '../billing/ledger/queries';

export interface ApiServices {
  pool: pg.Pool;
  prisma: PrismaClient;
  ledger: Ledger;
  committer: GroupCommitter;
  apiKeys: ApiKeyVerifier;
  /** Prometheus text exposition, or null when metrics are off. */
  metrics?: (req: IncomingMessage, res: ServerResponse) => void;
}

type NodeHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

const EVENT_PATH = /^\/api\/v1\/events\/([^/]+)$/;

export function createApiHandler(services: ApiServices): NodeHandler {
  return async (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path === '/metrics' && services.metrics) {
      services.metrics(req, res);
      return true;
    }
    if (!path.startsWith('/api/')) return false;
    try {
      await authenticate(services, req);
      if (path === '/api/v1/events') {
        if (req.method === 'POST') await postEvents(services, req, res);
        else if (req.method === 'GET') await getEventByIdentifier(services, new URLSearchParams(url.slice(q + 1 || url.length)), res);
        else throw methodNotAllowed('GET, POST');
      } else if (EVENT_PATH.test(path)) {
        if (req.method !== 'GET') throw methodNotAllowed('GET');
        await getEventById(services, EVENT_PATH.exec(path)![1]!, res);
      } else if (path === '/api/v1/customers') {
        if (req.method !== 'POST') throw methodNotAllowed('POST');
        const { customer, created } = await createCustomer(services.prisma, await readJson(req));
        sendJson(res, created ? 201 : 200, {
          id: customer.id,
          external_id: customer.externalId,
          name: customer.name,
          email: customer.email,
          processor: customer.processor,
          processor_customer_id: customer.processorCustomerId,
          created,
        });
      } else if (path === '/api/v1/subscriptions') {
        if (req.method !== 'POST') throw methodNotAllowed('POST');
        const r = await upsertSubscription(services.prisma, await readJson(req));
        sendJson(res, r.created ? 201 : 200, {
          id: r.subscription.id,
          customer: r.customer.externalId,
          plan: r.plan.code,
          processor: r.subscription.processor,
          processor_subscription_id: r.subscription.processorSubscriptionId,
          status: r.subscription.status,
          current_period_start: r.subscription.currentPeriodStart.toISOString(),
          current_period_end: r.subscription.currentPeriodEnd.toISOString(),
          created: r.created,
          updated: r.updated,
        });
      } else {
        throw new ProblemError({ status: 404, type: 'not-found', title: 'Not found', detail: `no API route ${path}` });
      }
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
      } else if (error instanceof ProblemError) {
        sendProblem(res, error.problem);
      } else if (error instanceof BillingError) {
        sendProblem(res, billingProblem(error));
      } else {
        log.error({ ...errorFields(error), method: req.method, path }, 'API request failed');
        sendProblem(res, { status: 503, type: 'unavailable', title: 'Service unavailable', detail: 'the request could not be completed; nothing was changed, retry with the same identifier' });
      }
    }
    return true;
  };
}

function billingProblem(error: BillingError) {
  const errors = 'errors' in error ? (error as { errors: import('../billing/errors').FieldError[] }).errors : undefined;
  switch (error.kind) {
    case 'validation':
      return { status: 422, type: 'validation-error', title: 'Invalid request', detail: error.message, errors };
    case 'conflict':
      return { status: 409, type: 'conflict', title: 'Conflict', detail: error.message, errors };
    case 'not_found':
      return { status: 404, type: 'not-found', title: 'Not found', detail: error.message };
    default:
      return { status: 409, type: 'invalid-state', title: 'Not allowed in this state', detail: error.message };
  }
}

function methodNotAllowed(allow: string) {
  return new ProblemError({ status: 405, type: 'method-not-allowed', title: 'Method not allowed', headers: { allow } });
}

async function authenticate(services: ApiServices, req: IncomingMessage) {
  const header = req.headers.authorization ?? '';
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  const key = match ? await services.apiKeys.verify(match[1]!) : null;
  if (!key) {
    req.resume();
    throw new ProblemError({
      status: 401,
      type: 'unauthorized',
      title: 'Unauthorized',
      detail: match ? 'the API key is not valid' : 'send an API key as Authorization: Bearer <key>',
      headers: { 'www-authenticate': 'Bearer realm="meterdesk"' },
    });
  }
}

function eventBody(r: Exclude<IngestResult, { result: 'rejected' }>) {
  const e = r.event;
  const body = { id: e.id, identifier: e.identifier, status: e.status, duplicate: r.duplicate };
  // A duplicate that said something else: the first stays (as at Stripe), and the answer says what was ignored.
  if (r.result === 'duplicate' && r.differs) return { ...body, differs: r.differs, kept: { value: e.value, event_name: e.eventName } };
  return body;
}

async function postEvents(services: ApiServices, req: IncomingMessage, res: ServerResponse) {
  const body = await readJson(req);
  if (body !== null && typeof body === 'object' && !Array.isArray(body) && 'events' in body) {
    const events = (body as { events: unknown }).events;
    const extra = Object.keys(body).filter((k) => k !== 'events');
    if (!Array.isArray(events) || events.length === 0 || events.length > MAX_BATCH_SIZE || extra.length > 0) {
      throw new ProblemError({
        status: 422,
        type: 'validation-error',
        title: 'Invalid request',
        detail: 'a batch is {"events": [...]} with 1 to 1000 events',
        errors: [
          extra.length > 0
            ? { field: extra.join(','), code: 'unrecognized_keys', message: `unknown field(s): ${extra.join(', ')}` }
            : { field: 'events', code: 'invalid', message: `must be an array of 1 to ${MAX_BATCH_SIZE} events` },
        ],
      });
    }
    const results = await services.ledger.ingest(events);
    sendJson(res, 200, { results: results.map(batchItem), ...counts(results) });
    return;
  }
  const result = await services.committer.submit(body);
  if (result.result === 'rejected') {
    throw new ProblemError({ status: 422, type: 'validation-error', title: 'Invalid event', detail: result.errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors: result.errors });
  }
  sendJson(res, result.duplicate ? 200 : 202, eventBody(result));
}

function batchItem(r: IngestResult, index: number) {
  if (r.result === 'rejected') return { index, result: 'rejected', errors: r.errors };
  return { index, result: r.result, ...eventBody(r) };
}

function counts(results: IngestResult[]) {
  let accepted = 0, duplicates = 0, rejected = 0;
  for (const r of results) {
    if (r.result === 'accepted') accepted++;
    else if (r.result === 'duplicate') duplicates++;
    else rejected++;
  }
  return { accepted, duplicates, rejected };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function getEventById(services: ApiServices, rawId: string, res: ServerResponse) {
  // A malformed escape (`%`, `%zz`) is an id that names no event, not a server error.
  let id: string | null;
  try {
    id = decodeURIComponent(rawId);
  } catch {
    id = null;
  }
  const event = id !== null && UUID.test(id) ? await getEvent(services.pool, { id }) : null;
  if (!event) {
    throw new ProblemError({ status: 404, type: 'not-found', title: 'Not found', detail: id !== null && UUID.test(id) ? `no event with id ${id}` : 'no event has this id (event ids are UUIDs)' });
  }
  sendJson(res, 200, event);
}

async function getEventByIdentifier(services: ApiServices, params: URLSearchParams, res: ServerResponse) {
  const identifier = params.get('identifier');
  if (!identifier) {
    throw new ProblemError({ status: 422, type: 'validation-error', title: 'Invalid request', detail: 'pass ?identifier=', errors: [{ field: 'identifier', code: 'required', message: 'is required' }] });
  }
  const event = identifier.length <= 100 ? await getEvent(services.pool, { identifier }) : null;
  if (!event) throw new ProblemError({ status: 404, type: 'not-found', title: 'Not found', detail: 'no event with this identifier' });
  sendJson(res, 200, event);
}
