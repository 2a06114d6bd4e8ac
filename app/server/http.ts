import { createReadStream } from 'node:fs';
import { access, readdir, readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';

import { randomUUID } from 'node:crypto';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, isSpanContextValid, propagation, trace } from '@opentelemetry/api';
import { createRequestListener } from '@react-router/node';
import type { RequestListenerOptions } from '@react-router/node';
import type { ServerBuild } from 'react-router';
import { errorFields, logger, withLogContext } from '../log';

const log = logger('http');
const tracer = trace.getTracer('meterdesk-http');
// A caller's request id is kept when it is a plain token (a proxy's or load balancer's), else one is made.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A plain Node handler tried before React Router; resolves true when it wrote the response. */
export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

/** Builds the `context` that loaders, actions and middleware receive (must return a `RouterContextProvider`). */
export type GetLoadContext = NonNullable<RequestListenerOptions['getLoadContext']>;

export interface HttpServerOptions {
  /** 0 picks a free port. */
  port: number;
  /** Defaults to 127.0.0.1. */
  host?: string;
  /** Tried in order before static assets and React Router. */
  handlers?: NodeHandler[];
  /**
   * The React Router server build. Omitted: `<buildDirectory>/server/index.js` if it exists, otherwise every
   * request no handler claims gets a 503 asking for `npm run build`. A function is called once, on the first
   * request that needs it (React Router re-derives its route tables on every call of a build function).
   */
  build?: ServerBuild | (() => ServerBuild | Promise<ServerBuild>);
  getLoadContext?: GetLoadContext;
  /** Where `react-router build` wrote `client/` and `server/`; defaults to `./build`. */
  buildDirectory?: string;
  /** React Router's server mode: "production" hides error details from responses. */
  mode?: 'production' | 'development' | 'test';
  /** How long close() lets in-flight requests finish before cutting their connections. */
  shutdownGraceMs?: number;
}

export interface HttpServer {
  url: string;
  port: number;
  server: Server;
  /**
   * Starts a drain without closing the listener: every response from now on carries `connection: close`, so
   * keep-alive clients leave after their current request while balancers notice /readyz and route away.
   */
  drain(): void;
  /** Stops accepting, lets requests in flight finish (up to the grace period), then closes every connection. */
  close(): Promise<void>;
}

const IMMUTABLE = 'public, max-age=31536000, immutable';
// Unhashed files (favicon) may change between deploys: cache, but revalidate with the ETag.
const REVALIDATE = 'public, max-age=0, must-revalidate';
// Small files are kept in memory after the first read; larger ones stream from disk.
const MEMORY_LIMIT_BYTES = 512 * 1024;

const CONTENT_TYPES: Record<string, string> = {
  '.avif': 'image/avif',
  '.css': 'text/css; charset=utf-8',
  '.gif': 'image/gif',
  '.html': 'text/html; charset=utf-8',
  '.ico': 'image/x-icon',
  '.jpeg': 'image/jpeg',
  '.jpg': 'image/jpeg',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
  '.webmanifest': 'application/manifest+json',
  '.webp': 'image/webp',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.xml': 'application/xml; charset=utf-8',
};

interface StaticFile {
  absolutePath: string;
  size: number;
  etag: string;
  cacheControl: string;
  headers: Record<string, string>;
  body?: Buffer;
}

/**
 * Starts the production HTTP server: our Node handlers first (API, webhooks, health, metrics), then the files in
 * `build/client`, then React Router for everything else.
 */
export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const buildDirectory = path.resolve(opts.buildDirectory ?? 'build');
  const handlers = opts.handlers ?? [];
  const staticFiles = await indexStaticFiles(path.join(buildDirectory, 'client'));
  const routerListener = await createRouterListener(opts, buildDirectory);

  let closing = false;
  // Node's closeIdleConnections() skips sockets that connected but never sent a request (browsers preconnect),
  // which would hold close() open until the grace period; these two let close() find and drop them.
  const sockets = new Set<Socket>();
  const served = new WeakSet<Socket>();

  const serve = async (req: IncomingMessage, res: ServerResponse) => {
    try {
      for (const handler of handlers) {
        if (await handler(req, res)) return;
      }
      if (staticFiles.size > 0 && (await serveStatic(staticFiles, req, res))) return;
      // React Router's listener converts to and from Fetch and answers its own errors with a 500.
      await routerListener(req, res);
    } catch (error) {
      log.error({ ...errorFields(error), method: req.method, path: pathOf(req.url) }, 'unhandled error while serving');
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('Internal Server Error\n');
      } else {
        res.destroy(error instanceof Error ? error : undefined);
      }
    }
  };

  // Responses not yet finished, so a drain that starts while they run still asks their clients to reconnect.
  const inFlight = new Set<ServerResponse>();
  const listener: RequestListener = (req, res) => {
    served.add(req.socket);
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    // Lets keep-alive clients finish their current request, then reconnect to whichever instance replaces us.
    if (closing) res.setHeader('connection', 'close');
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.setHeader('x-request-id', requestId);
    const started = performance.now();
    const method = req.method ?? 'GET';
    // One server span per request (a caller's traceparent continues its trace), so every line logged while serving
    // it carries a trace id, and so do the events it stores.
    const parent = req.headers.traceparent ? propagation.extract(ROOT_CONTEXT, req.headers) : ROOT_CONTEXT;
    tracer.startActiveSpan(`HTTP ${method}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method } }, parent, (span) => {
      const spanContext = span.spanContext();
      const traceId = isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
      res.once('close', () => {
        const status = res.statusCode;
        span.setAttribute('http.response.status_code', status);
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
        // A probe's 503 is its answer (not ready, draining), not a failure of the request.
        const path = pathOf(req.url);
        const level = status >= 500 && path !== '/readyz' ? 'error' : 'debug';
        if (!log.enabled(level)) return;
        const fields = {
          request_id: requestId,
          ...(traceId ? { trace_id: traceId } : {}),
          method,
          path,
          status,
          duration_ms: Math.round((performance.now() - started) * 10) / 10,
          ...(res.writableFinished ? {} : { aborted: true }),
        };
        if (level === 'error') log.error(fields, 'request failed');
        else log.debug(fields, 'request');
      });
      void withLogContext({ request_id: requestId }, () => serve(req, res));
    });
  };

  const server = createServer(
    {
      // TCP keep-alive probes on idle sockets, so dead peers do not pin connections.
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
      noDelay: true,
    },
    listener,
  );
  // Longer than the 60 s idle timeout of common proxies and load balancers, so the proxy, never us, closes an
  // idle connection (otherwise a request can race our close and fail with a reset).
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  // Requests Node refuses before any handler sees them (a URL or headers over 16 KiB, a malformed request line):
  // still a problem document, like every other error, never Node's bare `400 Bad Request` / `431`.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || (socket as Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
    const status = tooLarge ? 431 : 400;
    const title = tooLarge ? 'Request header fields too large' : 'Bad request';
    const detail = tooLarge ? 'the request line and headers must fit in 16 KiB' : 'the request is not valid HTTP/1.1';
    const body = JSON.stringify({ type: tooLarge ? '/problems/headers-too-large' : '/problems/bad-request', title, status, detail });
    socket.end(
      `HTTP/1.1 ${status} ${title}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: opts.port, host }, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  const drain = () => {
    closing = true;
    for (const res of inFlight) if (!res.headersSent) res.setHeader('connection', 'close');
  };

  return {
    url: `http://${urlHost(host)}:${port}`,
    port,
    server,
    drain,
    close() {
      closed ??= new Promise<void>((resolve, reject) => {
        drain();
        const graceMs = opts.shutdownGraceMs ?? 5_000;
        // Keep-alive sockets would otherwise hold server.close() open until they time out.
        const sweep = setInterval(() => server.closeIdleConnections(), 25);
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        sweep.unref();
        force.unref();
        server.close((error) => {
          clearInterval(sweep);
          clearTimeout(force);
          if (error) reject(error);
          else resolve();
        });
        server.closeIdleConnections();
        for (const socket of sockets) {
          if (!served.has(socket)) socket.destroy();
        }
      });
      return closed;
    },
  };
}

async function createRouterListener(opts: HttpServerOptions, buildDirectory: string): Promise<RequestListener> {
  let build = opts.build;
  const serverEntry = path.join(buildDirectory, 'server', 'index.js');
  if (build === undefined && (await exists(serverEntry))) {
    build = async () => (await import(pathToFileURL(serverEntry).href)) as ServerBuild;
  }
  if (build === undefined) return missingBuildListener(serverEntry);

  const resolveBuild = build;
  const make = async () =>
    createRequestListener({
      build: typeof resolveBuild === 'function' ? await resolveBuild() : resolveBuild,
      getLoadContext: opts.getLoadContext,
      mode: opts.mode ?? 'production',
    });

  // Loaded on first use: API-only processes and tests never pay for importing React and the route modules.
  let ready: RequestListener | undefined;
  let loading: Promise<RequestListener> | undefined;
  return async (req, res) => {
    if (!ready) {
      loading ??= make().catch((error: unknown) => {
        loading = undefined;
        throw error;
      });
      ready = await loading;
    }
    await ready(req, res);
  };
}

function missingBuildListener(serverEntry: string): RequestListener {
  const body = `Meterdesk's web build is missing (${path.relative(process.cwd(), serverEntry)}): run npm run build.\n`;
  return (_req, res) => {
    res.writeHead(503, {
      'content-type': 'text/plain; charset=utf-8',
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  };
}

/**
 * Lists build/client once at start. Only files in this map are ever served, so no request path can reach
 * outside the directory, and a request costs a map lookup instead of a stat.
 */
async function indexStaticFiles(clientDirectory: string): Promise<Map<string, StaticFile>> {
  const files = new Map<string, StaticFile>();
  let entries;
  try {
    entries = await readdir(clientDirectory, { recursive: true, withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return files;
    throw error;
  }

  await Promise.all(
    entries.map(async (entry) => {
      if (!entry.isFile()) return;
      const absolutePath = path.join(entry.parentPath, entry.name);
      const relative = path.relative(clientDirectory, absolutePath).split(path.sep);
      // Dot-directories hold build metadata (.vite/manifest.json), not assets.
      if (relative.some((segment) => segment.startsWith('.'))) return;
      const info = await stat(absolutePath);
      const urlPath = `/${relative.join('/')}`;
      const etag = `W/"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
      const cacheControl = urlPath.startsWith('/assets/') ? IMMUTABLE : REVALIDATE;
      files.set(urlPath, {
        absolutePath,
        size: info.size,
        etag,
        cacheControl,
        headers: {
          'content-type': CONTENT_TYPES[path.extname(entry.name).toLowerCase()] ?? 'application/octet-stream',
          'content-length': String(info.size),
          'cache-control': cacheControl,
          etag,
          'last-modified': info.mtime.toUTCString(),
          'x-content-type-options': 'nosniff',
        },
      });
    }),
  );
  return files;
}

async function serveStatic(files: Map<string, StaticFile>, req: IncomingMessage, res: ServerResponse) {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const rawUrl = req.url ?? '/';
  const queryAt = rawUrl.indexOf('?');
  let pathname = queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt);
  if (pathname.includes('%')) {
    try {
      pathname = decodeURIComponent(pathname);
    } catch {
      return false;
    }
  }

  const file = files.get(pathname);
  if (!file) {
    // A missing hashed asset is a stale page asking for an old deploy's file: no point rendering HTML for it.
    if (pathname.startsWith('/assets/')) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end('Not Found\n');
      return true;
    }
    return false;
  }

  if (req.headers['if-none-match'] === file.etag) {
    res.writeHead(304, { etag: file.etag, 'cache-control': file.cacheControl });
    res.end();
    return true;
  }

  res.writeHead(200, file.headers);
  if (req.method === 'HEAD') {
    res.end();
    return true;
  }
  if (file.size <= MEMORY_LIMIT_BYTES) {
    file.body ??= await readFile(file.absolutePath);
    res.end(file.body);
    return true;
  }
  try {
    await pipeline(createReadStream(file.absolutePath), res);
  } catch (error) {
    // A client that hangs up mid-download is routine; anything else is worth a log line.
    if ((error as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') {
      log.error({ ...errorFields(error), file: file.absolutePath }, 'failed to stream a static file');
    }
    res.destroy();
  }
  return true;
}

async function exists(file: string) {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

function pathOf(url: string | undefined) {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  return q === -1 ? raw : raw.slice(0, q);
}

function urlHost(host: string) {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
