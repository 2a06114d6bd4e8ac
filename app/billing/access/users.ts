import { randomBytes } from 'node:crypto';
import { hash, verify } from '@node-rs/argon2';
import { z } from 'zod';
import type { PrismaClient } from '../../db/clients';
import { ValidationError, ConflictError } from '../errors';
import { zodFieldErrors } from '../validation';
import { ROLES, ROLE_PERMISSIONS, PERMISSIONS, splitPermission, type RoleName } from './permissions';

const ARGON2 = { algorithm: 2 /* Argon2id (a const enum upstream) */, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2);
}

export function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  return verify(passwordHash, password).catch(() => false);
}

export const newUserSchema = z.object({
  email: z.string().trim().toLowerCase().email('must be an email address').max(254),
  role: z.enum(ROLES, { error: `must be one of ${ROLES.join(', ')}` }),
  password: z.string().min(12, 'must be at least 12 characters').max(200).optional(),
  name: z.string().trim().max(200).optional(),
});

/** Roles and permissions as rows, matching ROLE_PERMISSIONS. Idempotent; run at every start. */
export async function syncRolesAndPermissions(prisma: PrismaClient): Promise<void> {
  await prisma.$transaction(async (tx) => {
    for (const [p, description] of Object.entries(PERMISSIONS)) {
      const parts = splitPermission(p as keyof typeof PERMISSIONS);
      await tx.permission.upsert({
        where: { action_entity_access: parts },
        update: { description },
        create: { ...parts, description },
      });
    }
    const permissions = await tx.permission.findMany();
    const idOf = new Map(permissions.map((p) => [`${p.action}:${p.entity}:${p.access}`, p.id]));
    for (const role of ROLES) {
      const r = await tx.role.upsert({ where: { name: role }, update: {}, create: { name: role } });
      await tx.rolePermission.deleteMany({ where: { roleId: r.id } });
      await tx.rolePermission.createMany({
        data: ROLE_PERMISSIONS[role].map((p) => ({ roleId: r.id, permissionId: idOf.get(p)! })),
      });
    }
  });
}

/** Creates a user; without a password one is generated and returned (shown once). */
export async function createUser(prisma: PrismaClient, input: z.input<typeof newUserSchema>) {
  const parsed = newUserSchema.safeParse(input);
  if (!parsed.success) {
    throw new ValidationError(zodFieldErrors(parsed.error));
  }
  const { email, role, name } = parsed.data;
  const password = parsed.data.password ?? randomBytes(18).toString('base64url');
  const roleRow = await prisma.role.findUnique({ where: { name: role } });
  if (!roleRow) throw new Error(`role ${role} is missing: run migrations and the base seed first`);
  if (await prisma.user.findUnique({ where: { email } })) throw new ConflictError(`a user with email ${email} already exists`);
  const user = await prisma.user.create({
    data: { email, name: name ?? null, roleId: roleRow.id, passwordHash: await hashPassword(password) },
  });
  return { user, password, generated: parsed.data.password === undefined };
}

/** METERDESK_ADMIN_EMAIL/PASSWORD: the admin exists with this password and role (idempotent). */
export async function ensureAdmin(prisma: PrismaClient, email: string, password: string) {
  const normalized = email.trim().toLowerCase();
  const admin = await prisma.role.findUniqueOrThrow({ where: { name: 'admin' satisfies RoleName } });
  const existing = await prisma.user.findUnique({ where: { email: normalized } });
  if (existing && (await verifyPassword(existing.passwordHash, password)) && existing.roleId === admin.id && !existing.disabledAt) return existing;
  const passwordHash = await hashPassword(password);
  return prisma.user.upsert({
    where: { email: normalized },
    update: { passwordHash, roleId: admin.id, disabledAt: null },
    create: { email: normalized, passwordHash, roleId: admin.id },
  });
}
