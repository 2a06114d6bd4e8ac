// One user per role with a known password, for the desk's integration and browser tests.
import type { PrismaClient } from '../../app/db/clients';
import { ROLES, type RoleName } from '../../app/billing/access/permissions';
import { createUser } from '../../app/billing/access/users';

export const DESK_TEST_USERS: Record<RoleName, { email: string; password: string }> = Object.fromEntries(
  ROLES.map((role) => [role, { email: `${role}@desk.test`, password: `correct horse ${role} staple` }]),
) as Record<RoleName, { email: string; password: string }>;

/** Creates the users (roles and permissions must exist: seedBase or prepareDatabase ran). Returns their ids. */
export async function createDeskTestUsers(prisma: PrismaClient): Promise<Record<RoleName, string>> {
  const ids = {} as Record<RoleName, string>;
  for (const role of ROLES) {
    const { user } = await createUser(prisma, { ...DESK_TEST_USERS[role], role });
    ids[role] = user.id;
  }
  return ids;
}
