// What the desk's loaders, actions and middleware receive as `context`: the process's services and the desk's
// request-independent settings, plus the caller's address. Wired by the web process:
//   startHttpServer({ ..., getLoadContext: createDeskLoadContext(services, { sessionSecret, secureCookies }) })
// Loaders read `context.get(servicesContext)` and `context.get(deskContext)`.
//
// With a read replica (services.readPool, DATABASE_READ_URL; docs/decisions/027-read-replica.md) a GET that does not
// carry the read-your-writes cookie gets services whose `pool` is the read pool: every loader reads from the replica
// without knowing it. Actions, and GETs right after one, get the primary. Whatever must see the primary whatever the
// method (the session lookup, which also slides the session's expiry) asks getPrimaryServices.
import { hkdfSync } from 'node:crypto';
import { createContext, RouterContextProvider, type RouterContext } from 'react-router';
import { freshCookie, readsOwnWrites } from '../utils/read-your-writes.server';
import type { CustomerCheck } from '../billing/ledger/retry';
import type { Services } from './services';

export interface DeskOptions {
  /** Keys the encrypted flash cookie (toasts, one-time secrets). At least 32 characters. */
  sessionSecret: string;
  /** Cookies get `Secure` (and the `__Host-` prefix); set when the desk is served over HTTPS. */
  secureCookies?: boolean;
  /** Shows the "simulated processors" banner (no real Stripe/Braintree keys configured). */
  simulatedProcessors?: boolean;
  /** Asks Stripe which customers it knows (a retry of `unknown_customer` failures re-sends only those). */
  customerCheck?: CustomerCheck;
  /** SMTP_URL is set: email alert channels may be created (the worker, given the same environment, sends them). */
  emailAlerts?: boolean;
}

export interface DeskContext {
  secureCookies: boolean;
  simulatedProcessors: boolean;
  /** AES-256-GCM key for the flash cookie, derived from the session secret. */
  flashKey: Buffer;
  /** The peer's address (login throttling, session records); null when unknown. */
  clientAddress: string | null;
  customerCheck?: CustomerCheck;
  emailAlerts: boolean;
}

// The server build bundles app code, so this module exists twice in a web process: once as loaded by the CLI
// (which calls createDeskLoadContext) and once inside build/server/index.js (whose loaders call context.get).
// Context keys are compared by identity, so both copies must share one key object: keep it on globalThis.
function sharedContext<T>(name: string): RouterContext<T> {
  const slot = Symbol.for(`meterdesk.routerContext.${name}`);
  const store = globalThis as unknown as Record<symbol, RouterContext<T> | undefined>;
  return (store[slot] ??= createContext<T>());
}

export const servicesContext = sharedContext<Services>('services');
export const deskContext = sharedContext<DeskContext>('desk');
export const primaryServicesContext = sharedContext<Services>('primaryServices');

type ContextReader = { get<T>(context: RouterContext<T>): T };

/** The services, with an error that says what to wire when the web process forgot the desk's load context. */
export function getServices(context: ContextReader): Services {
  return read(context, servicesContext);
}

/** The services on the primary, on every request: for reads that may write, or must see this request's writes. */
export function getPrimaryServices(context: ContextReader): Services {
  return read(context, primaryServicesContext);
}

export function getDesk(context: ContextReader): DeskContext {
  return read(context, deskContext);
}

function read<T>(context: ContextReader, key: RouterContext<T>): T {
  try {
    return context.get(key);
  } catch {
    throw new Error(
      'The desk load context is missing: start the web server with getLoadContext: createDeskLoadContext(services, options) (app/server/desk-context.ts).',
    );
  }
}

/**
 * Root middleware: a desk request that may have written (not GET or HEAD) answers with the read-your-writes cookie
 * when the desk reads from a replica, so the pages after it read from the primary for a few seconds.
 */
export async function readYourWritesMiddleware(
  { request, context }: { request: Request; context: ContextReader },
  next: () => Promise<Response>,
): Promise<Response> {
  const response = await next();
  if (request.method === 'GET' || request.method === 'HEAD' || !getPrimaryServices(context).readPool) return response;
  response.headers.append('set-cookie', freshCookie(getDesk(context).secureCookies));
  return response;
}

export type DeskLoadContext = (request: Request, client: { address: string }) => RouterContextProvider;

export function createDeskLoadContext(services: Services, options: DeskOptions): DeskLoadContext {
  if (options.sessionSecret.length < 32) {
    throw new Error('The desk needs a session secret of at least 32 characters (SESSION_SECRET).');
  }
  const flashKey = Buffer.from(hkdfSync('sha256', options.sessionSecret, 'meterdesk', 'flash-cookie-v1', 32));
  const secureCookies = options.secureCookies ?? false;
  const simulatedProcessors = options.simulatedProcessors ?? false;
  // Prisma, the ledger and the API key verifier stay on the primary: only `pool` is what desk loaders read through.
  const readServices: Services | null = services.readPool ? { ...services, pool: services.readPool } : null;
  return (request, client) => {
    const context = new RouterContextProvider();
    const reading = request.method === 'GET' || request.method === 'HEAD';
    context.set(servicesContext, readServices && reading && !readsOwnWrites(request, secureCookies) ? readServices : services);
    context.set(primaryServicesContext, services);
    context.set(deskContext, {
      secureCookies,
      simulatedProcessors,
      flashKey,
      clientAddress: normalizeAddress(client.address),
      emailAlerts: options.emailAlerts ?? false,
      ...(options.customerCheck ? { customerCheck: options.customerCheck } : {}),
    });
    return context;
  };
}

/** `::ffff:127.0.0.1` and `127.0.0.1` are one client; throttling must not count them apart. */
function normalizeAddress(address: string): string | null {
  if (!address) return null;
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
