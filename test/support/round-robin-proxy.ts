// A small load balancer on loopback, as the rolling-restart test (and a multi-web fault campaign) needs one: round
// robin over the upstreams whose /readyz answers 200, polled every `probeMs`. A request whose connection to an
// upstream is refused (its listener closed) never reached it and is sent to the next upstream, as real balancers
// do; a request already sent is never sent again — any failure after the connect is answered 502 and counted.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProxyStats {
  requests: number;
  /** Answers relayed from each upstream (by its `host:port`). */
  served: Record<string, number>;
  /** Connects refused by an upstream, then sent to another one. */
  connectRetries: number;
  /** Requests that failed after reaching an upstream (answered 502), or found no upstream (503). */
  failed: number;
  /** The last such failures, for the test's message. */
  failures: string[];
}

export interface RoundRobinProxy {
  url: string;
  stats(): ProxyStats;
  /** Upstreams whose last probe said ready. */
  ready(): string[];
  close(): Promise<void>;
}

export async function startRoundRobinProxy(upstreams: string[], options: { probeMs?: number } = {}): Promise<RoundRobinProxy> {
  const targets = upstreams.map((u) => new URL(u));
  const key = (t: URL) => t.host;
  const readiness = new Map<string, boolean>(targets.map((t) => [key(t), false]));
  const stats: ProxyStats = { requests: 0, served: Object.fromEntries(targets.map((t) => [key(t), 0])), connectRetries: 0, failed: 0, failures: [] };
  let next = 0;
  let closed = false;

  const probe = async (target: URL) => {
    try {
      const res = await fetch(new URL('/readyz', target), { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      readiness.set(key(target), res.status === 200);
    } catch {
      readiness.set(key(target), false);
    }
  };
  const probes = targets.map((target) =>
    (async () => {
      while (!closed) {
        await probe(target);
        await new Promise((r) => setTimeout(r, options.probeMs ?? 100));
      }
    })(),
  );

  /** The upstreams to try, in order: ready ones from the round-robin position, then the others. */
  const order = (): URL[] => {
    const start = next++ % targets.length;
    const rotated = [...targets.slice(start), ...targets.slice(0, start)];
    return [...rotated.filter((t) => readiness.get(key(t))), ...rotated.filter((t) => !readiness.get(key(t)))];
  };

  const fail = (res: http.ServerResponse, status: number, why: string) => {
    stats.failed++;
    stats.failures.push(why);
    if (stats.failures.length > 20) stats.failures.shift();
    if (!res.headersSent) res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(why);
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, candidates: URL[]) => {
    const target = candidates.shift();
    if (!target) return fail(res, 503, 'no upstream accepted the connection');
    const headers = { ...req.headers, host: target.host, connection: 'close', 'content-length': String(body.length) };
    delete headers['transfer-encoding'];
    let connected = false;
    // One connection per request (no keep-alive upstream): a connection is either refused before anything is sent,
    // or it carries exactly this request.
    const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent: false });
    upstream.once('socket', (socket) => socket.once('connect', () => (connected = true)));
    upstream.once('response', (answer) => {
      stats.served[key(target)] = (stats.served[key(target)] ?? 0) + 1;
      const out = { ...answer.headers };
      delete out.connection;
      delete out['keep-alive'];
      res.writeHead(answer.statusCode ?? 502, out);
      answer.pipe(res);
      answer.once('error', () => res.destroy());
    });
    upstream.once('error', (error: NodeJS.ErrnoException) => {
      if (!connected && error.code === 'ECONNREFUSED') {
        readiness.set(key(target), false);
        stats.connectRetries++;
        forward(req, res, body, candidates);
        return;
      }
      fail(res, 502, `${req.method} ${req.url} via ${key(target)}: ${error.code ?? error.message}`);
    });
    upstream.end(body);
  };

  const server = http.createServer((req, res) => {
    stats.requests++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => forward(req, res, Buffer.concat(chunks), order()));
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    stats: () => structuredClone(stats),
    ready: () => [...readiness].filter(([, ok]) => ok).map(([k]) => k),
    async close() {
      closed = true;
      await Promise.all(probes);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
