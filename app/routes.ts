import { type RouteConfig, index, layout, route } from '@react-router/dev/routes';

// Every route with a loader or action must have a row in test/desk/permission-matrix.test.ts (the test fails
// otherwise). Desk pages go inside the `routes/_desk.tsx` layout, which requires a signed-in user; each page's own
// loader and action still guard themselves (requireUserWithPermission), and its nav entry goes in
// app/components/desk-nav.ts.
export default [
  route('login', 'routes/login.tsx'),
  route('logout', 'routes/logout.tsx'),
  layout('routes/_desk.tsx', [
    index('routes/_index.tsx'),
    route('events', 'routes/_desk.events.tsx'),
    route('events/:id', 'routes/_desk.events.$id.tsx'),
    route('customers', 'routes/_desk.customers.tsx'),
    route('customers/:id', 'routes/_desk.customers.$id.tsx'),
    route('windows', 'routes/_desk.windows.tsx'),
    route('windows/:windowId', 'routes/_desk.windows.$windowId.tsx'),
    route('windows/:windowId/write-off', 'routes/_desk.windows.$windowId.write-off.tsx'),
    route('definitions', 'routes/_desk.definitions.tsx'),
    route('invoices', 'routes/_desk.invoices.tsx'),
    route('invoices/export', 'routes/_desk.invoices.export.ts'),
    route('invoices/:invoiceId', 'routes/_desk.invoices.$invoiceId.tsx'),
    route('telemetry', 'routes/_desk.telemetry.tsx'),
    route('reconciliation', 'routes/_desk.reconciliation.tsx'),
    route('alerts', 'routes/_desk.alerts.tsx'),
    route('audit', 'routes/_desk.audit.tsx'),
    route('admin/users', 'routes/_desk.admin.users.tsx'),
    route('admin/api-keys', 'routes/_desk.admin.api-keys.tsx'),
  ]),
] satisfies RouteConfig;
