import type { Config } from '@react-router/dev/config';

export default {
  appDirectory: 'app',
  // The desk is server-rendered: loaders read the ledger directly, and pages must work before hydration.
  ssr: true,
} satisfies Config;
