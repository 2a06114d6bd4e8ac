// Serves the existing build/ for the browser tests: `tsx test/browser/serve.ts [--port N]` (default: a free port).
// Prints one line `MD_SERVE_URL=<url>` once it accepts connections, and shuts down cleanly on SIGTERM/SIGINT.
import { parseArgs } from 'node:util';

import { startHttpServer } from '../../app/server/http';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`serve: --port must be an integer between 0 and 65535, got ${values.port}`);
  process.exit(2);
}

const server = await startHttpServer({ port, host: '127.0.0.1' });
console.log(`MD_SERVE_URL=${server.url}`);

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('serve: close failed', error);
        process.exit(1);
      },
    );
  });
}
