// The loopback HTTP plumbing both simulators share: a keep-alive server that reads each body (bounded), sends
// `/__simulator/*` to the control API and everything else to the processor's API, can hold a response forever
// (a timeout) or reset its socket (a lost answer), and stops with every connection closed. Also the control API's
// common routes (health, faults, stats, reset, clock) and a route table for the processor's paths.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { FaultControls, FaultRuleBase } from './faults';

export const MAX_BODY_BYTES = 1 << 20;

export const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined);
export const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** `/a/b?x=1` -> path and query string (without `?`). */
export function splitUrl(rawUrl: string | undefined): { path: string; query: string } {
  const url = rawUrl ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

export interface LoopbackHandlers {
  /** A request for the processor's API. */
  api(req: IncomingMessage, res: ServerResponse, body: string): Promise<void>;
  /** A request under `/__simulator/`. */
  control(req: IncomingMessage, res: ServerResponse, body: string): Promise<void>;
  /** The body passed MAX_BODY_BYTES. */
  tooLarge(req: IncomingMessage, res: ServerResponse): void;
  /** A handler threw: answer as the processor would answer its own internal error. */
  failed(req: IncomingMessage, res: ServerResponse, err: unknown): void;
}

export class LoopbackServer {
  url = '';
  port = 0;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly held = new Set<ServerResponse>();

  constructor(
    readonly host: string,
    private readonly handlers: LoopbackHandlers,
  ) {
    this.server = createServer({ keepAlive: true }, (req, res) => this.onRequest(req, res));
    // Longer than the SDK agents' idle reuse, so a reused keep-alive socket is rarely closed under them.
    this.server.keepAliveTimeout = 65_000;
    this.server.on('connection', (socket) => {
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async listen(port = 0): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    this.url = `http://${this.host}:${this.port}`;
  }

  async stop(): Promise<void> {
    this.releaseHeld();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
      for (const s of this.sockets) s.destroy();
    });
  }

  /** Never answers: the client times out (the request may or may not have been applied). */
  hold(res: ServerResponse): void {
    this.held.add(res);
    res.on('close', () => this.held.delete(res));
  }

  /** Drops every held response (their clients see a reset). */
  releaseHeld(): void {
    for (const res of this.held) res.destroy();
    this.held.clear();
  }

  /** The connection dies under the request: the client sees ECONNRESET. */
  resetSocket(req: IncomingMessage): void {
    req.socket.destroy();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) return this.handlers.tooLarge(req, res);
      const body = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
      const work = (req.url ?? '').startsWith('/__simulator/') ? this.handlers.control(req, res, body) : this.handlers.api(req, res, body);
      work.catch((err: unknown) => {
        if (!res.headersSent && !res.destroyed) this.handlers.failed(req, res, err);
      });
    });
    req.on('error', () => res.destroy());
  }
}

/** Exact paths first, then patterns whose first group is the (URL-decoded) id. */
export class RouteTable<R> {
  private readonly exact = new Map<string, R>();
  private readonly patterns: Array<{ method: string; re: RegExp; route: R }> = [];

  add(method: string, path: string | RegExp, route: R): void {
    if (typeof path === 'string') this.exact.set(`${method} ${path}`, route);
    else this.patterns.push({ method, re: path, route });
  }

  find(method: string, path: string): { route: R; pathId: string | undefined } | undefined {
    const route = this.exact.get(`${method} ${path}`);
    if (route) return { route, pathId: undefined };
    for (const r of this.patterns) {
      if (r.method !== method) continue;
      const m = r.re.exec(path);
      if (!m) continue;
      try {
        return { route: r.route, pathId: decodeURIComponent(m[1] ?? '') };
      } catch {
        return undefined;
      }
    }
    return undefined;
  }
}

export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  /** `rate` per second, capacity one second of traffic (like the processors' per-second limits); 0 = unlimited. */
  constructor(private rate: number) {
    this.tokens = rate;
  }
  get enabled(): boolean {
    return this.rate > 0;
  }
  setRate(rate: number): void {
    this.rate = rate;
    this.tokens = Math.min(this.tokens, rate);
  }
  refill(): void {
    this.tokens = this.rate;
    this.last = performance.now();
  }
  take(n = 1): boolean {
    if (!this.enabled) return true;
    const now = performance.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens >= n) {
      this.tokens -= n;
      return true;
    }
    return false;
  }
}

// ---------------------------------------------------------------- the control API (/__simulator/*)

export interface ControlRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** The parsed JSON body ({} when empty). */
  body: unknown;
  /** The body when it is an object, else {}. */
  fields: Record<string, unknown>;
}

/** An answer: status and JSON body. */
export type ControlAnswer = [status: number, body: unknown];
export type ControlHandler = (c: ControlRequest, id: string) => ControlAnswer | Promise<ControlAnswer>;

/** What every simulator offers its control API. */
export interface Controllable<R extends FaultRuleBase> extends FaultControls<R> {
  url: string;
  reset(opts?: { all?: boolean }): void;
  advanceClock(ms: number): void;
  now(): number;
  stats(): unknown;
}

/**
 * Serves `/__simulator/*`: the common routes (health, faults, stats, reset, clock) and the simulator's own, keyed
 * `METHOD /__simulator/path`, or `METHOD /__simulator/path/:id` for one id segment. A handler that throws answers 400.
 */
export async function serveControl<R extends FaultRuleBase>(
  req: IncomingMessage,
  res: ServerResponse,
  rawBody: string,
  sim: Controllable<R>,
  validate: (raw: unknown) => R,
  routes: Record<string, ControlHandler>,
  health: Record<string, unknown> = {},
): Promise<void> {
  const send = (status: number, body: unknown) => {
    if (res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const method = req.method ?? 'GET';
  const { path, query } = splitUrl(req.url);
  let body: unknown = {};
  if (rawBody.length > 0) {
    try {
      body = JSON.parse(rawBody);
    } catch {
      return send(400, { error: 'body must be JSON' });
    }
  }
  const c: ControlRequest = { method, path, query: new URLSearchParams(query), body, fields: isObject(body) ? body : {} };
  const common: Record<string, ControlHandler> = {
    'GET /__simulator/health': () => [200, { ok: true, url: sim.url, ...health }],
    'GET /__simulator/faults': () => [200, { data: sim.faults() }],
    'POST /__simulator/faults': () => {
      const raw = Array.isArray(body) ? body : Array.isArray(c.fields.rules) ? c.fields.rules : [body];
      const rules = raw.map((r) => validate(r));
      return [200, { data: rules.map((r) => sim.addFault(r)) }];
    },
    'DELETE /__simulator/faults': () => {
      sim.clearFaults();
      return [200, { deleted: true }];
    },
    'DELETE /__simulator/faults/:id': (_c, id) => [200, { deleted: sim.removeFault(id) }],
    'GET /__simulator/stats': () => [200, sim.stats()],
    'POST /__simulator/reset': () => {
      sim.reset({ all: c.fields.all === true });
      return [200, { reset: true }];
    },
    'POST /__simulator/clock': () => {
      if (typeof c.fields.advance_ms !== 'number') return [400, { error: 'advance_ms is required' }];
      sim.advanceClock(c.fields.advance_ms);
      return [200, { now: sim.now() }];
    },
  };
  const all = { ...common, ...routes };
  let handler = all[`${method} ${path}`];
  let id = '';
  if (!handler) {
    const slash = path.lastIndexOf('/');
    handler = all[`${method} ${path.slice(0, slash)}/:id`];
    try {
      id = decodeURIComponent(path.slice(slash + 1));
    } catch {
      handler = undefined;
    }
  }
  if (!handler) return send(404, { error: `unknown simulator control route ${method} ${path}` });
  try {
    const [status, answer] = await handler(c, id);
    send(status, answer);
  } catch (err) {
    send(400, { error: err instanceof Error ? err.message : String(err) });
  }
}

/** `--name value` from a command line. */
export function argValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? undefined : args[i + 1];
}

/** Stops the simulator and exits on SIGINT / SIGTERM (a simulator run as its own process). */
export function stopOnSignals(stop: () => Promise<void>): void {
  const shutdown = () => {
    stop().finally(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
