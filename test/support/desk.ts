// The desk as production runs it, for integration tests: a fresh migrated database with one user per role, the
// built app (react-router build output, rebuilt when stale) behind startHttpServer with the desk's load context.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { createApiHandler } from '../../app/api/handler';
import type { RoleName } from '../../app/billing/access/permissions';
import { seedBase } from '../../app/seed/base';
import { createDeskLoadContext, type DeskOptions } from '../../app/server/desk-context';
import { startHttpServer, type HttpServer } from '../../app/server/http';
import { createServices, type Services } from '../../app/server/services';
import { startSession } from '../../app/utils/session.server';
import { createTestDatabase, type TestDatabase } from './database';
import { ensureFreshBuild } from './desk-build';
import { createDeskTestUsers, DESK_TEST_USERS } from './desk-users';

export { DESK_TEST_USERS };

export interface DeskRequestInit extends Omit<RequestInit, 'headers'> {
  headers?: Record<string, string>;
  /** A `name=value` cookie to send. */
  cookie?: string | null;
  /** The Origin header; defaults to the app's own origin for non-GET requests. `null` sends none. */
  origin?: string | null;
}

export interface DeskTestApp {
  url: string;
  services: Services;
  userIds: Record<RoleName, string>;
  /** Cookie name the app uses for sessions (`md_session`, or `__Host-md_session` with secureCookies). */
  sessionCookieName: string;
  request(path: string, init?: DeskRequestInit): Promise<Response>;
  postForm(path: string, fields: Record<string, string>, init?: DeskRequestInit): Promise<Response>;
  /** Logs in through the login form; `cookie` is the new session cookie (`name=value`) or null. */
  login(email: string, password: string, init?: DeskRequestInit & { redirectTo?: string }): Promise<{ response: Response; cookie: string | null }>;
  /** A session created directly in the database (no login form, no throttling): `name=value`. */
  sessionCookieFor(role: RoleName): Promise<string>;
  /** Another server on the same database with different desk options (e.g. secureCookies). */
  startVariant(options: Partial<DeskOptions>): Promise<{ url: string; close(): Promise<void> }>;
  close(): Promise<void>;
}

export interface DeskTestDatabase {
  /** A migrated database to use (and drop on close) instead of a fresh one from the test cluster. */
  database?: TestDatabase;
  /** The desk reads through a read pool on this URL (DATABASE_READ_URL); the primary's own URL when `'primary'`. */
  readConnectionString?: string | 'primary';
}

export async function startDeskTestApp(options: Partial<DeskOptions> = {}, where: DeskTestDatabase = {}): Promise<DeskTestApp> {
  await ensureFreshBuild();
  const db = where.database ?? (await createTestDatabase());
  const read = where.readConnectionString === 'primary' ? db.connectionString : where.readConnectionString;
  const services = createServices({ connectionString: db.connectionString, ...(read ? { readConnectionString: read } : {}) });
  await seedBase(services.prisma);
  const userIds = await createDeskTestUsers(services.prisma);
  const servers: HttpServer[] = [];
  const start = async (opts: Partial<DeskOptions>) => {
    const server = await startHttpServer({
      port: 0,
      handlers: [createApiHandler(services)],
      getLoadContext: createDeskLoadContext(services, { sessionSecret: randomBytes(32).toString('hex'), ...opts }),
    });
    servers.push(server);
    return server;
  };
  const http = await start(options);
  const sessionCookieName = options.secureCookies ? '__Host-md_session' : 'md_session';

  const request = (path: string, init: DeskRequestInit = {}) => {
    const { cookie, origin, headers, ...rest } = init;
    const method = (rest.method ?? 'GET').toUpperCase();
    const all: Record<string, string> = { ...headers };
    if (cookie) all.cookie = cookie;
    const sentOrigin = origin === undefined ? (method === 'GET' || method === 'HEAD' ? null : http.url) : origin;
    if (sentOrigin) all.origin = sentOrigin;
    return fetch(http.url + path, { redirect: 'manual', ...rest, headers: all });
  };
  const postForm = (path: string, fields: Record<string, string>, init: DeskRequestInit = {}) =>
    request(path, {
      ...init,
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...init.headers },
      body: new URLSearchParams(fields).toString(),
    });

  return {
    url: http.url,
    services,
    userIds,
    sessionCookieName,
    request,
    postForm,
    async login(email, password, init = {}) {
      const { redirectTo, ...rest } = init;
      const response = await postForm('/login', { email, password, ...(redirectTo ? { redirectTo } : {}) }, rest);
      return { response, cookie: cookieFrom(response, sessionCookieName) };
    },
    async sessionCookieFor(role) {
      const { token } = await startSession(services.pool, { userId: userIds[role], ip: '127.0.0.1', userAgent: 'vitest' });
      return `${sessionCookieName}=${token}`;
    },
    async startVariant(opts) {
      const server = await start(opts);
      return { url: server.url, close: () => server.close() };
    },
    async close() {
      await Promise.all(servers.map((s) => s.close()));
      await services.close();
      // pool.end() resolves before its sockets finish closing; the forced drop may cut them, which is fine now.
      services.pool.removeAllListeners('error').on('error', () => {});
      services.readPool?.removeAllListeners('error').on('error', () => {});
      await db.drop();
    },
  };
}

/** `name=value` of a cookie the response sets (null when it sets none or deletes it). */
export function cookieFrom(response: Response, name: string): string | null {
  for (const header of response.headers.getSetCookie()) {
    const [pair] = header.split(';');
    const eq = pair!.indexOf('=');
    if (pair!.slice(0, eq) === name) {
      const value = pair!.slice(eq + 1);
      return value ? `${name}=${value}` : null;
    }
  }
  return null;
}

/** The full Set-Cookie header for `name`, to check its attributes. */
export function setCookieHeader(response: Response, name: string): string | undefined {
  return response.headers.getSetCookie().find((h) => h.startsWith(`${name}=`));
}

/** Joins cookies (`a=1`, `b=2`, null) into one Cookie header value. */
export function cookies(...pairs: Array<string | null | undefined>): string {
  return pairs.filter(Boolean).join('; ');
}

/**
 * This file's desk (startDeskTestApp with the defaults): started before its tests, closed after. Its fields are set
 * once beforeAll has run, before the file's own beforeAll hooks (registered after this call).
 */
export function useDeskTestApp(): DeskTestApp {
  const app = {} as DeskTestApp;
  beforeAll(async () => {
    Object.assign(app, await startDeskTestApp());
  }, 120_000);
  afterAll(async () => {
    await app.close?.();
  });
  return app;
}
