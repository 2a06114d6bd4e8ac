// The guards every desk loader and action starts with. They return the user or THROW (a redirect to /login for
// anonymous visitors, a 403 for a role without the permission), so a route reads top to bottom:
//
//   export async function loader({ request, context }: Route.LoaderArgs) {
//     const user = await requireUserWithPermission(request, context, 'read:audit:any');
//     ...
//   }
//
// Every loader and action guards itself: a `.data?_routes=<id>` request runs one route's loader without its
// parents', so a child can never rely on its layout's guard (the permission-matrix test checks this).
import { data, redirect, type RouterContextProvider } from 'react-router';
import { PERMISSIONS } from '../billing/access/permissions';
import type { Actor } from '../billing/audit';
import { getPrimaryServices } from '../server/desk-context';
import { userHasPermission, type DeskUser, type PermissionString } from './permissions';
import { clearSessionCookie, loadSessionUser, readSessionToken } from './session.server';

export type { DeskUser, PermissionString };
export { userHasPermission };

type Context = Readonly<RouterContextProvider>;

/** The signed-in user with the id of their session row (for "log out" and session housekeeping). */
export interface SessionUser extends DeskUser {
  sessionId: string;
}

// One lookup per request, however many loaders ask (they run in parallel on the same context).
const lookups = new WeakMap<object, Promise<SessionUser | null>>();

export function getOptionalUser(request: Request, context: Context): Promise<SessionUser | null> {
  let lookup = lookups.get(context);
  if (!lookup) {
    lookup = resolveUser(request, context);
    lookups.set(context, lookup);
  }
  return lookup;
}

async function resolveUser(request: Request, context: Context): Promise<SessionUser | null> {
  const token = readSessionToken(request, context);
  if (!token) return null;
  // The primary even on a replica-read GET: the lookup may slide the expiry (a write), and a session created a moment
  // ago (the login redirect) may not have reached the replica yet.
  const row = await loadSessionUser(getPrimaryServices(context).pool, token);
  if (!row) return null;
  return {
    id: row.userId,
    sessionId: row.sessionId,
    email: row.email,
    name: row.name,
    role: row.role,
    // Rows that are not (or no longer) in the code's permission list grant nothing.
    permissions: row.permissions.filter((p): p is PermissionString => Object.hasOwn(PERMISSIONS, p)),
  };
}

export async function requireUser(request: Request, context: Context): Promise<SessionUser> {
  const user = await getOptionalUser(request, context);
  if (user) return user;
  const headers = new Headers();
  // A cookie that no longer names a live session (expired, logged out elsewhere) is dropped on the way out.
  if (readSessionToken(request, context)) headers.append('set-cookie', clearSessionCookie(context));
  throw redirect(`/login?${new URLSearchParams({ redirectTo: pagePath(request) })}`, { headers });
}

export async function requireUserWithPermission(
  request: Request,
  context: Context,
  permission: PermissionString,
): Promise<SessionUser> {
  const user = await requireUser(request, context);
  if (userHasPermission(user, permission)) return user;
  throw data(
    {
      message: `Your role (${user.role}) does not allow this: it needs the permission "${permission}" (${PERMISSIONS[permission]}).`,
      requiredPermission: permission,
    },
    { status: 403 },
  );
}

/** For /login: a signed-in visitor goes to the desk instead. */
export async function requireAnonymous(request: Request, context: Context): Promise<void> {
  if (await getOptionalUser(request, context)) throw redirect('/');
}

/** Who did it, for writeAudit(). */
export function actorOf(user: DeskUser): Actor {
  return { userId: user.id, label: user.email, role: user.role };
}

/** The page the request is for, without React Router's `.data` transport details: where to come back after login. */
function pagePath(request: Request): string {
  const url = new URL(request.url);
  let pathname = url.pathname;
  if (pathname.endsWith('/_.data')) pathname = pathname.slice(0, -'_.data'.length);
  else if (pathname.endsWith('.data')) pathname = pathname.slice(0, -'.data'.length);
  url.searchParams.delete('_routes');
  url.searchParams.delete('index');
  const search = url.searchParams.toString();
  return `${pathname || '/'}${search ? `?${search}` : ''}`;
}
