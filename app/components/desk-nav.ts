// The desk's navigation, in one list. A page adds its entry here when its route exists (never before: no links to
// pages that are not built). The header shows an entry only to roles holding its permission; the route's own
// guard is what actually protects it.
import type { PermissionString } from '../billing/access/permissions';

export interface DeskNavItem {
  to: string;
  label: string;
  permission: PermissionString;
  /** Also marks the entry current for these path prefixes (e.g. `/admin` for Users & keys). */
  activePrefixes?: string[];
}

// PRODUCT.md order: Overview, Events, Windows, Definitions, Invoices, Telemetry, Customers, Audit, Users & keys;
// Reconciliation (ADR 011) sits with Telemetry; Alerts (ADR 036) after Customers.
export const DESK_NAV: DeskNavItem[] = [
  { to: '/', label: 'Overview', permission: 'read:meter-event:any' },
  { to: '/events', label: 'Events', permission: 'read:meter-event:any' },
  { to: '/windows', label: 'Windows', permission: 'read:meter-event:any' },
  { to: '/definitions', label: 'Definitions', permission: 'read:meter-event:any' },
  { to: '/invoices', label: 'Invoices', permission: 'read:invoice:any' },
  { to: '/telemetry', label: 'Telemetry', permission: 'read:meter-event:any' },
  { to: '/reconciliation', label: 'Reconciliation', permission: 'read:invoice:any' },
  { to: '/customers', label: 'Customers', permission: 'read:meter-event:any' },
  { to: '/alerts', label: 'Alerts', permission: 'read:alert:any' },
  { to: '/audit', label: 'Audit', permission: 'read:audit:any' },
  { to: '/admin/users', label: 'Users & keys', permission: 'manage:user:any', activePrefixes: ['/admin/'] },
];

export function isNavItemCurrent(item: DeskNavItem, pathname: string): boolean {
  if (item.to === '/') return pathname === '/';
  if (pathname === item.to || pathname.startsWith(`${item.to}/`)) return true;
  return item.activePrefixes?.some((prefix) => pathname.startsWith(prefix)) ?? false;
}
