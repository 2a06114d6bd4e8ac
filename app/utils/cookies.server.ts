// The desk's cookies (session token, flash, read-your-writes) are written by hand: all hold opaque strings, and
// spelling out every attribute keeps what the browser receives reviewable in one place.

export interface CookieAttributes {
  secure: boolean;
  /** Seconds; 0 deletes the cookie. */
  maxAge: number;
}

export function readCookie(request: Request, name: string): string | null {
  const header = request.headers.get('cookie');
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || null;
  }
  return null;
}

/** HttpOnly (no script reads it), SameSite=Lax (not sent on cross-site POSTs), Path=/, Secure over HTTPS. */
export function serializeCookie(name: string, value: string, { secure, maxAge }: CookieAttributes): string {
  const parts = [`${name}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Lax', `Max-Age=${Math.max(0, Math.floor(maxAge))}`];
  if (maxAge <= 0) parts.push('Expires=Thu, 01 Jan 1970 00:00:00 GMT');
  if (secure) parts.push('Secure');
  return parts.join('; ');
}

/** `__Host-` makes browsers refuse the cookie unless it is Secure, host-only and Path=/ (no subdomain can plant it). */
export function cookieName(base: string, secure: boolean): string {
  return secure ? `__Host-${base}` : base;
}
