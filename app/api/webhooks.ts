// Processor webhooks as a plain Node handler: `POST /webhooks/stripe` (Braintree joins under /webhooks/ later).
// The raw body is kept byte for byte: the signature covers those exact bytes, so nothing parses it first.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type pg from 'pg';
import Stripe from 'stripe';
import {
  recordWebhookRejected,
  storeStripeWebhook,
  verifyStripeWebhook,
  STRIPE_WEBHOOK_TOLERANCE_SECONDS,
  type WebhookRejection,
} from '../billing/processors/stripe/webhooks';
import { MAX_BODY_BYTES, readBody } from './body';
import { sendJson, sendProblem } from './problem';
import { errorFields, logger } from '../log';

const log = logger('webhooks');

type NodeHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

export interface WebhookHandlerDeps {
  pool: pg.Pool;
  /** The endpoint's `whsec_...` signing secret. */
  stripeWebhookSecret: string;
  /** Only its signature helpers are used (no request is made); one is built when absent. */
  stripe?: Stripe;
  /** Seconds a signature stays valid; Stripe's default of 5 minutes unless a test needs otherwise. */
  toleranceSeconds?: number;
}

const PREFIX = '/webhooks/';

export function createWebhookHandler(deps: WebhookHandlerDeps): NodeHandler {
  if (deps.stripeWebhookSecret.trim() === '') throw new Error('createWebhookHandler: stripeWebhookSecret is empty');
  // The SDK wants a key to build a client; this one never leaves the process because no API call is made with it.
  const stripe = deps.stripe ?? new Stripe('sk_webhook_verification_only');
  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>> = {
    stripe: (req, res) => receiveStripe(deps, stripe, req, res),
  };

  return async (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (!path.startsWith(PREFIX)) return false;
    const route = routes[path.slice(PREFIX.length)];
    if (!route) {
      req.resume();
      sendProblem(res, { status: 404, type: 'not-found', title: 'Not found', detail: `no webhook endpoint ${path}` });
      return true;
    }
    if (req.method !== 'POST') {
      req.resume();
      sendProblem(res, { status: 405, type: 'method-not-allowed', title: 'Method not allowed', detail: 'webhooks are POSTed', headers: { allow: 'POST' } });
      return true;
    }
    try {
      await route(req, res);
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return true;
      }
      log.error({ ...errorFields(error), path }, 'webhook could not be stored');
      // A 5xx makes Stripe deliver again later; nothing was stored.
      sendProblem(res, { status: 503, type: 'unavailable', title: 'Service unavailable', detail: 'the event could not be stored; it will be accepted on redelivery' });
    }
    return true;
  };
}

async function receiveStripe(deps: WebhookHandlerDeps, stripe: Stripe, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req, MAX_BODY_BYTES);
  if (body === null) {
    await reject(deps.pool, res, { reason: 'payload_too_large', message: `the body must be at most ${MAX_BODY_BYTES} bytes`, remoteAddress: req.socket.remoteAddress }, 413, { connection: 'close' });
    return;
  }
  const header = req.headers['stripe-signature'];
  const verified = verifyStripeWebhook(stripe, body, Array.isArray(header) ? header.join(',') : header, deps.stripeWebhookSecret, {
    toleranceSeconds: deps.toleranceSeconds ?? STRIPE_WEBHOOK_TOLERANCE_SECONDS,
  });
  if (!verified.ok) {
    await reject(deps.pool, res, {
      reason: verified.reason,
      message: verified.message,
      signatureTimestamp: verified.signatureTimestamp,
      bodyBytes: body.length,
      remoteAddress: req.socket.remoteAddress,
    });
    return;
  }
  const stored = await storeStripeWebhook(deps.pool, verified.event);
  sendJson(res, 200, { received: true, duplicate: stored.duplicate });
}

async function reject(pool: pg.Pool, res: ServerResponse, rejection: WebhookRejection, status = 400, headers?: Record<string, string>) {
  try {
    await recordWebhookRejected(pool, rejection);
  } catch (error) {
    // The refusal stands even when telemetry cannot be written.
    log.error(errorFields(error), 'could not record webhook_rejected');
  }
  const title = status === 413 ? 'Payload too large' : 'Webhook rejected';
  sendProblem(res, { status, type: status === 413 ? 'payload-too-large' : 'webhook-rejected', title, detail: `${rejection.reason}: ${rejection.message}`, headers });
}
