import type { Config } from '@react-router/dev/config';

export default {
  appDirectory: 'app',
  // The desk is server-rendered: loaders read the ledger directly, and pages must work before hydration.
  ssr: true,
  // Cross-site requests are refused by the desk's own check (app/utils/csrf.server.ts, the root route's middleware:
  // Sec-Fetch-Site, then Origin against the host; a 403), proven by test/desk/permission-matrix.test.ts. React
  // Router's built-in check is switched off because it compares Origin with request.url's full origin, which is
  // http:// behind a TLS-terminating proxy (every action would fail), lets requests without Origin through, and
  // answers 400 with a logged stack trace per attempt. See docs/decisions/007-desk-sessions-csrf-throttling.md.
  allowedActionOrigins: ['**'],
} satisfies Config;
