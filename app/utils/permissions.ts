// Permission checks that run anywhere (server and browser), e.g. to hide a button the server would refuse anyway.
// The server-side guards that actually protect loaders and actions are in permissions.server.ts.
import type { PermissionString, RoleName } from '../billing/access/permissions';

export type { PermissionString, RoleName };

/** The signed-in user as loaders return it to the page (serializable). */
export interface DeskUser {
  id: string;
  email: string;
  name: string | null;
  role: string;
  permissions: PermissionString[];
}

/**
 * `action:entity:own` is also satisfied by `action:entity:any` (whoever may retry every customer's events may retry
 * one customer's); `:any` needs `:any`.
 */
export function userHasPermission(user: Pick<DeskUser, 'permissions'> | null | undefined, permission: PermissionString): boolean {
  if (!user) return false;
  if (user.permissions.includes(permission)) return true;
  if (permission.endsWith(':own')) return user.permissions.includes(`${permission.slice(0, -4)}:any` as PermissionString);
  return false;
}
