// `POST /webhooks/braintree` as a plain Node handler. Braintree posts a form (bt_signature, bt_payload); the SDK's
// `webhookNotification.parse` verifies it; the notification is stored once and processed by a job. Install it
// before the Stripe webhook handler, which answers 404 for every other path under /webhooks/.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type pg from 'pg';
import {
  recordBraintreeWebhookRejected,
  storeBraintreeWebhook,
  verifyBraintreeWebhook,
  type WebhookParser,
} from '../billing/processors/braintree/webhooks';
import { MAX_BODY_BYTES, readBody } from './body';
import { sendJson, sendProblem } from './problem';
import { errorFields, logger } from '../log';

const log = logger('webhooks');

type NodeHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

export const BRAINTREE_WEBHOOK_PATH = '/webhooks/braintree';

export interface BraintreeWebhookHandlerDeps {
  pool: pg.Pool;
  /** Verifies with the merchant's keys: a `BraintreeProcessor` (its `parseWebhook` is the SDK's parser). */
  parser: WebhookParser;
}

export function createBraintreeWebhookHandler(deps: BraintreeWebhookHandlerDeps): NodeHandler {
  return async (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    if ((q === -1 ? url : url.slice(0, q)) !== BRAINTREE_WEBHOOK_PATH) return false;
    const challenge = req.method === 'GET' ? new URLSearchParams(q === -1 ? '' : url.slice(q + 1)).get('bt_challenge') : null;
    if (challenge !== null && deps.parser.verifyChallenge) {
      req.resume();
      try {
        const answer = deps.parser.verifyChallenge(challenge);
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(answer), 'cache-control': 'no-store' });
        res.end(answer);
      } catch (error) {
        sendProblem(res, { status: 400, type: 'webhook-rejected', title: 'Webhook rejected', detail: `bt_challenge: ${(error as Error).message}` });
      }
      return true;
    }
    if (req.method !== 'POST') {
      req.resume();
      sendProblem(res, { status: 405, type: 'method-not-allowed', title: 'Method not allowed', detail: 'webhooks are POSTed', headers: { allow: 'POST' } });
      return true;
    }
    try {
      const body = await readBody(req, MAX_BODY_BYTES);
      if (body === null) {
        await reject(deps.pool, res, { reason: 'payload_too_large', message: `the body must be at most ${MAX_BODY_BYTES} bytes`, remoteAddress: req.socket.remoteAddress }, 413);
        return true;
      }
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      let form: URLSearchParams;
      if (type === 'application/json') {
        // Some relays forward the pair as JSON; the signature check is the same.
        try {
          const json = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
          form = new URLSearchParams({ bt_signature: String(json.bt_signature ?? ''), bt_payload: String(json.bt_payload ?? '') });
        } catch {
          form = new URLSearchParams();
        }
      } else {
        form = new URLSearchParams(body.toString('utf8'));
      }
      const verified = await verifyBraintreeWebhook(deps.parser, form.get('bt_signature'), form.get('bt_payload'));
      if (!verified.ok) {
        await reject(deps.pool, res, { reason: verified.reason, message: verified.message, bodyBytes: body.length, remoteAddress: req.socket.remoteAddress });
        return true;
      }
      const stored = await storeBraintreeWebhook(deps.pool, verified.notification);
      sendJson(res, 200, { received: true, duplicate: stored.duplicate });
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return true;
      }
      log.error({ ...errorFields(error), path: BRAINTREE_WEBHOOK_PATH }, 'webhook could not be stored');
      // A 5xx makes Braintree deliver again; nothing was stored.
      sendProblem(res, { status: 503, type: 'unavailable', title: 'Service unavailable', detail: 'the notification could not be stored; it will be accepted on redelivery' });
    }
    return true;
  };
}

async function reject(pool: pg.Pool, res: ServerResponse, rejection: { reason: string; message: string; bodyBytes?: number; remoteAddress?: string | undefined }, status = 400) {
  try {
    await recordBraintreeWebhookRejected(pool, { ...rejection, remoteAddress: rejection.remoteAddress ?? null });
  } catch (error) {
    log.error(errorFields(error), 'could not record webhook_rejected');
  }
  sendProblem(res, {
    status,
    type: status === 413 ? 'payload-too-large' : 'webhook-rejected',
    title: status === 413 ? 'Payload too large' : 'Webhook rejected',
    detail: `${rejection.reason}: ${rejection.message}`,
    headers: status === 413 ? { connection: 'close' } : undefined,
  });
}
