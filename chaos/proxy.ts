// The campaign's load balancer: a loopback round-robin HTTP proxy in front of the web processes. Each request goes to
// the next backend; a backend that refuses the connection (killed, or not started again yet) is skipped for the next
// one, so a killed web process costs no request that another could serve. A request already in flight on a backend
// that dies is answered 502 (its answer is lost: the caller sends it again, as it would through a real balancer).
// The request is read whole before it is forwarded, so it can go to another backend unchanged; the Host header is
// kept, so the desk's same-origin check sees the proxy's origin on both sides.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProxyStats {
  /** Requests answered by a backend. */
  proxied: number;
  /** Connections a backend refused, the request sent to the next one. */
  skipped: number;
  /** Requests answered 502: lost in flight, or every backend refused. */
  badGateway: number;
}

export interface CampaignProxy {
  url: string;
  port: number;
  stats: ProxyStats;
  close(): Promise<void>;
}

const REFUSED = new Set(['ECONNREFUSED']);

export async function startProxy(backendPorts: readonly number[]): Promise<CampaignProxy> {
  const stats: ProxyStats = { proxied: 0, skipped: 0, badGateway: 0 };
  let next = 0;

  const forward = (port: number, req: http.IncomingMessage, body: Buffer): Promise<{ res: http.IncomingMessage } | { refused: true } | { lost: string }> =>
    new Promise((resolve) => {
      const headers = { ...req.headers, 'content-length': String(body.length) };
      delete headers['transfer-encoding'];
      delete headers.connection;
      const out = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers, agent: false }, (res) => resolve({ res }));
      out.on('error', (error: NodeJS.ErrnoException) => resolve(REFUSED.has(error.code ?? '') ? { refused: true } : { lost: error.code ?? error.message }));
      out.end(body);
    });

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => res.destroy());
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const start = next++ % backendPorts.length;
      let lastError = 'every backend refused the connection';
      for (let k = 0; k < backendPorts.length; k++) {
        const port = backendPorts[(start + k) % backendPorts.length]!;
        const r = await forward(port, req, body);
        if ('refused' in r) {
          stats.skipped++;
          continue;
        }
        if ('lost' in r) {
          lastError = `backend ${port}: ${r.lost}`;
          break; // it may have been applied: only the caller may decide to send it again
        }
        stats.proxied++;
        res.writeHead(r.res.statusCode ?? 502, r.res.statusMessage, r.res.rawHeaders);
        r.res.pipe(res);
        // The backend dying mid-answer: the client sees its connection cut, as it would behind a balancer.
        r.res.on('error', () => res.destroy());
        r.res.on('aborted', () => res.destroy());
        return;
      }
      stats.badGateway++;
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`Bad gateway: ${lastError}`);
      } else res.destroy();
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stats,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
