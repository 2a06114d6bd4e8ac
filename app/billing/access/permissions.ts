// Permissions are data (rows tied to roles); this is the seed that states PRODUCT.md's permission table.
export const ROLES = ['admin', 'operator', 'finance', 'support'] as const;
export type RoleName = (typeof ROLES)[number];

export const PERMISSIONS = {
  'read:meter-event:any': 'Read events, windows, definitions, telemetry and customers',
  'retry:meter-event:own': "Retry one customer's failed events",
  'retry:meter-event:any': 'Retry a selection or every event matching a filter; force past the 23 h guard',
  'repair:window:any': 'Repair stale windows, re-author invoices, settle again',
  'write:definition:any': 'Add and edit meters, prices and plans',
  'read:invoice:any': 'Read invoices and upcoming charges; export CSV',
  'write-off:charge:any': 'Write off an exhausted charge',
  'read:audit:any': 'Read the audit log',
  'run:reconciliation:any': 'Run the ledger reconciliation now (it also runs on a schedule)',
  'read:alert:any': 'Read alert rules, their firings, channels and deliveries',
  'manage:alert:any': 'Manage alert rules and notification channels; send a test notification',
  'manage:user:any': 'Manage users and roles',
  'manage:api-key:any': 'Manage API keys',
} as const;
export type PermissionString = keyof typeof PERMISSIONS;

export const ROLE_PERMISSIONS: Record<RoleName, PermissionString[]> = {
  admin: Object.keys(PERMISSIONS) as PermissionString[],
  operator: [
    'read:meter-event:any',
    'retry:meter-event:own',
    'retry:meter-event:any',
    'repair:window:any',
    'write:definition:any',
    'read:invoice:any',
    'read:audit:any',
    'run:reconciliation:any',
    'read:alert:any',
    'manage:alert:any',
  ],
  finance: ['read:meter-event:any', 'read:invoice:any', 'write-off:charge:any', 'read:audit:any', 'read:alert:any'],
  support: ['read:meter-event:any', 'retry:meter-event:own', 'read:alert:any'],
};

export function splitPermission(p: PermissionString): { action: string; entity: string; access: string } {
  const [action, entity, access] = p.split(':') as [string, string, string];
  return { action, entity, access };
}
