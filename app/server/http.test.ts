import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { RouterContextProvider } from 'react-router';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { ensureFreshBuild } from '../../test/support/desk-build';
import { createDeskLoadContext } from './desk-context';
import { configureLogging } from '../log';
import { startTelemetry } from './telemetry';
import { startHttpServer } from './http';
import type { HttpServer, NodeHandler } from './http';
import type { Services } from './services';

const buildDirectory = path.resolve('build');
const serverEntry = path.join(buildDirectory, 'server', 'index.js');

/** Raw request, so paths such as `/../x` reach the server exactly as written (fetch would normalise them). */
function rawGet(
  url: string,
  requestPath: string,
  headers: http.OutgoingHttpHeaders = {},
  agent: http.Agent | false = false,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(url);
    const req = http.request({ hostname, port, path: requestPath, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const claimX: NodeHandler = async (req, res) => {
  if (req.url !== '/x') return false;
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('handled by node');
  return true;
};

// Every desk page needs the desk's load context; the login page, for an anonymous visitor, reads no database.
const deskLoadContext = createDeskLoadContext({} as Services, { sessionSecret: 'http-test-'.repeat(4) });

let running: HttpServer[] = [];
async function start(opts: Partial<Parameters<typeof startHttpServer>[0]> = {}) {
  const server = await startHttpServer({ port: 0, getLoadContext: deskLoadContext, ...opts });
  running.push(server);
  return server;
}

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(running.map((server) => server.close()));
  running = [];
});

/** React Router logs every unmatched URL with a stack trace; keep the expected ones out of the test output. */
function quietConsoleError() {
  return vi.spyOn(console, 'error').mockImplementation(() => {});
}

describe('startHttpServer with the web build', () => {
  beforeAll(async () => {
    // scripts/test.sh builds first; build here too (when sources changed) so this file also runs on its own. The
    // shared helper takes a lock, so it never reads a build another test file is rewriting.
    await ensureFreshBuild();
  }, 180_000);

  it('lets a Node handler claim a path before React Router', async () => {
    const server = await start({ handlers: [claimX] });
    const claimed = await fetch(`${server.url}/x`);
    expect(claimed.status).toBe(200);
    expect(await claimed.text()).toBe('handled by node');

    const notClaimed = await fetch(`${server.url}/login`);
    expect(notClaimed.status).toBe(200);
    expect(await notClaimed.text()).toContain('Sign in to Meterdesk</h1>');
  });

  it('serves hashed assets with long cache headers and other files with revalidation', async () => {
    const server = await start();
    const assets = await readdir(path.join(buildDirectory, 'client', 'assets'));
    const script = assets.find((name) => name.endsWith('.js'));
    const stylesheet = assets.find((name) => name.endsWith('.css'));
    expect(script).toBeDefined();
    expect(stylesheet).toBeDefined();

    const js = await fetch(`${server.url}/assets/${script}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(Buffer.from(await js.arrayBuffer())).toEqual(
      await readFile(path.join(buildDirectory, 'client', 'assets', script!)),
    );

    const css = await fetch(`${server.url}/assets/${stylesheet}`);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    await css.arrayBuffer();

    const icon = await fetch(`${server.url}/favicon.svg`);
    expect(icon.status).toBe(200);
    expect(icon.headers.get('content-type')).toBe('image/svg+xml');
    expect(icon.headers.get('cache-control')).toBe('public, max-age=0, must-revalidate');
    expect(await icon.text()).toContain('<svg');

    const etag = icon.headers.get('etag');
    expect(etag).toBeTruthy();
    const revalidated = await fetch(`${server.url}/favicon.svg`, { headers: { 'if-none-match': etag! } });
    expect(revalidated.status).toBe(304);

    const head = await fetch(`${server.url}/favicon.svg`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(icon.headers.get('content-length'));

    const stale = await fetch(`${server.url}/assets/entry.client-0000000.js`);
    expect(stale.status).toBe(404);
    expect(await stale.text()).toBe('Not Found\n');
  });

  it('never serves files outside build/client', async () => {
    quietConsoleError();
    const server = await start();
    const packageJson = await readFile('package.json', 'utf8');
    const attempts = [
      '/../../package.json',
      '/assets/../../../package.json',
      '/%2e%2e/%2e%2e/package.json',
      '/assets/..%2f..%2f..%2fpackage.json',
      '/.vite/manifest.json',
      '/%2fetc%2fpasswd',
    ];
    for (const attempt of attempts) {
      const response = await rawGet(server.url, attempt);
      expect(response.status, attempt).not.toBe(200);
      expect(response.body.toString(), attempt).not.toContain(packageJson.slice(0, 40));
    }
  });

  it('renders React Router pages, passing the load context through', async () => {
    let contexts = 0;
    const server = await start({
      getLoadContext: (request, client) => {
        contexts += 1;
        const context = deskLoadContext(request, client);
        expect(context).toBeInstanceOf(RouterContextProvider);
        return context;
      },
    });

    const home = await fetch(`${server.url}/login`);
    expect(home.status).toBe(200);
    expect(home.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await home.text();
    expect(html).toContain('Sign in to Meterdesk</h1>');
    expect(html).toContain('href="/favicon.svg"');
    expect(html).toContain('name="viewport"');
    expect(contexts).toBe(1);

    const logged = quietConsoleError();
    const missing = await fetch(`${server.url}/no-such-page`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain('Page not found');
    expect(String(logged.mock.calls[0]?.[0])).toContain('No route matches URL "/no-such-page"');
  });

  it('uses an explicit build function once, not per request', async () => {
    let loads = 0;
    const server = await start({
      build: async () => {
        loads += 1;
        return import(/* @vite-ignore */ serverEntry);
      },
    });
    for (let i = 0; i < 3; i += 1) {
      const response = await fetch(`${server.url}/login`);
      expect(response.status).toBe(200);
      await response.text();
    }
    expect(loads).toBe(1);
  });
});

describe('startHttpServer without a web build', () => {
  let emptyBuild: string;
  beforeAll(async () => {
    emptyBuild = await mkdtemp(path.join(os.tmpdir(), 'meterdesk-nobuild-'));
  });
  afterAll(async () => {
    await rm(emptyBuild, { recursive: true, force: true });
  });

  it('still serves handlers and answers everything else with a 503 asking for a build', async () => {
    const server = await start({ handlers: [claimX], buildDirectory: emptyBuild });
    expect(await (await fetch(`${server.url}/x`)).text()).toBe('handled by node');

    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(503);
    expect(await page.text()).toContain('run npm run build');
  });

  it('answers a throwing handler with a 500 and keeps serving', async () => {
    const failing: NodeHandler = async (req) => {
      if (req.url === '/boom') throw new Error('handler failed on purpose');
      return false;
    };
    const lines: Array<Record<string, unknown>> = [];
    // Trace ids exist once the process's telemetry is started, as every process does at start.
    const telemetry = startTelemetry({ serviceName: 'meterdesk-test' });
    configureLogging({ role: 'web', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    try {
      const server = await start({ handlers: [failing, claimX], buildDirectory: emptyBuild });
      const boom = await fetch(`${server.url}/boom`, { headers: { 'x-request-id': 'boom-1' } });
      expect(boom.status).toBe(500);
      expect(boom.headers.get('x-request-id')).toBe('boom-1');
      expect(await boom.text()).toBe('Internal Server Error\n');
      expect(await (await fetch(`${server.url}/x`)).text()).toBe('handled by node');
      // The handler's failure, then the request's own line (a 5xx), both with the request and trace ids.
      const errors = lines.filter((l) => l.level === 'error');
      expect(errors.map((l) => l.msg)).toEqual(['unhandled error while serving', 'request failed']);
      for (const l of errors) expect(l).toMatchObject({ role: 'web', component: 'http', request_id: 'boom-1', trace_id: expect.stringMatching(/^[0-9a-f]{32}$/) });
      expect(errors[0]).toMatchObject({ path: '/boom', err: { message: 'handler failed on purpose' } });
      expect(errors[1]).toMatchObject({ path: '/boom', status: 500, method: 'GET' });
    } finally {
      configureLogging({ role: 'cli' });
      await telemetry.shutdown();
    }
  });
});

describe('close()', () => {
  let emptyBuild: string;
  beforeAll(async () => {
    emptyBuild = await mkdtemp(path.join(os.tmpdir(), 'meterdesk-close-'));
  });
  afterAll(async () => {
    await rm(emptyBuild, { recursive: true, force: true });
  });

  it('returns at once although keep-alive connections are open', async () => {
    const server = await startHttpServer({ port: 0, handlers: [claimX], buildDirectory: emptyBuild });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    try {
      await Promise.all([1, 2, 3, 4].map(() => rawGet(server.url, '/x', {}, agent)));
      expect(Object.values(agent.freeSockets).flat().length).toBeGreaterThan(0);

      // A client that connected but never sent a request holds a socket too.
      const silent = net.connect(server.port, '127.0.0.1');
      await new Promise((resolve) => silent.once('connect', resolve));
      const silentClosed = new Promise((resolve) => silent.once('close', resolve));

      const started = performance.now();
      await server.close();
      expect(performance.now() - started).toBeLessThan(500);
      await silentClosed;
    } finally {
      agent.destroy();
    }
  });

  it('lets an in-flight request finish, then closes its connection', async () => {
    const slow: NodeHandler = async (req, res) => {
      if (req.url !== '/slow') return false;
      await new Promise((resolve) => setTimeout(resolve, 200));
      res.end('done');
      return true;
    };
    const server = await startHttpServer({ port: 0, handlers: [slow], buildDirectory: emptyBuild });
    const agent = new http.Agent({ keepAlive: true });
    try {
      const inFlight = rawGet(server.url, '/slow', {}, agent);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const started = performance.now();
      await server.close();
      const elapsed = performance.now() - started;

      const response = await inFlight;
      expect(response.status).toBe(200);
      expect(response.body.toString()).toBe('done');
      expect(elapsed).toBeGreaterThan(100);
      expect(elapsed).toBeLessThan(1_500);
    } finally {
      agent.destroy();
    }
  });
});
