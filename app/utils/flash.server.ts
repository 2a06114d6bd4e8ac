// One-request messages carried across a redirect: a toast ("User created") and, at most, one secret shown once
// (a new API key, a generated password). The cookie is encrypted (AES-256-GCM), not just signed, because the
// secret must not sit readable in a browser's cookie store or in a proxy's logs.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { redirect, type RouterContextProvider } from 'react-router';
import { z } from 'zod';
import { getDesk } from '../server/desk-context';
import { cookieName, readCookie, serializeCookie } from './cookies.server';

const toastSchema = z.object({
  type: z.enum(['success', 'error', 'info']).default('success'),
  title: z.string().max(200),
  description: z.string().max(1000).optional(),
});
const revealSchema = z.object({
  /** What the value is: "API key for CI ingest". */
  label: z.string().max(200),
  value: z.string().max(500),
  /** Why it matters: "Copy it now: it is not stored and will not be shown again." */
  note: z.string().max(500).optional(),
});
const flashSchema = z.object({ toast: toastSchema.optional(), reveal: revealSchema.optional() });

export type Toast = z.input<typeof toastSchema>;
export type Reveal = z.infer<typeof revealSchema>;
export type Flash = z.infer<typeof flashSchema>;

const BASE_NAME = 'md_flash';
// A flash is read on the very next request; one that was never read (closed tab) should not surface days later.
const MAX_AGE_SECONDS = 300;

type Context = Readonly<RouterContextProvider>;

/** The Set-Cookie header that carries `flash` to the next request. */
export function flashCookie(context: Context, flash: z.input<typeof flashSchema>): string {
  const desk = getDesk(context);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', desk.flashKey, iv);
  const plain = Buffer.from(JSON.stringify(flashSchema.parse(flash)), 'utf8');
  const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  return serializeCookie(cookieName(BASE_NAME, desk.secureCookies), sealed.toString('base64url'), {
    secure: desk.secureCookies,
    maxAge: MAX_AGE_SECONDS,
  });
}

/**
 * Reads and consumes the flash: returns it (or null) and the Set-Cookie header that deletes it (null when there
 * was no cookie). A cookie that fails to decrypt (rotated secret, tampering) is dropped silently.
 */
export function readFlash(request: Request, context: Context): { flash: Flash | null; setCookie: string | null } {
  const desk = getDesk(context);
  const name = cookieName(BASE_NAME, desk.secureCookies);
  const raw = readCookie(request, name);
  if (!raw) return { flash: null, setCookie: null };
  const setCookie = serializeCookie(name, '', { secure: desk.secureCookies, maxAge: 0 });
  try {
    const sealed = Buffer.from(raw, 'base64url');
    if (sealed.length < 12 + 16) return { flash: null, setCookie };
    const decipher = createDecipheriv('aes-256-gcm', desk.flashKey, sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const plain = Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]);
    const parsed = flashSchema.safeParse(JSON.parse(plain.toString('utf8')));
    return { flash: parsed.success ? parsed.data : null, setCookie };
  } catch {
    return { flash: null, setCookie };
  }
}

/** The end of every successful desk action: `throw`/`return redirectWithToast('/admin/users', context, { title: 'User created' })`. */
export function redirectWithToast(
  to: string,
  context: Context,
  toast: Toast,
  options: { reveal?: Reveal; headers?: HeadersInit } = {},
): Response {
  const headers = new Headers(options.headers);
  headers.append('set-cookie', flashCookie(context, { toast, reveal: options.reveal }));
  return redirect(to, { headers });
}
