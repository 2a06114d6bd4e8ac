import type { ReactNode } from 'react';
import { data, isRouteErrorResponse, Links, Meta, Outlet, Scripts, ScrollRestoration, type ShouldRevalidateFunction } from 'react-router';

import type { Route } from './+types/root';
import { csrfMiddleware } from './utils/csrf.server';
import { storableInputMiddleware } from './utils/storable-input.server';
import { readFlash } from './utils/flash.server';
import { readYourWritesMiddleware } from './server/desk-context';
import './app.css';

// Runs around every loader and action of every route: cross-site state-changing requests never reach an action,
// and neither does a NUL that no query could store (refused second: a forged request learns nothing from it). With a
// read replica, what an action wrote is read back from the primary on the next pages (ADR 027).
export const middleware: Route.MiddlewareFunction[] = [csrfMiddleware, storableInputMiddleware, readYourWritesMiddleware];

// Public by design: it only hands this browser its own flash (toast, one-time secret) and consumes it.
export async function loader({ request, context }: Route.LoaderArgs) {
  const { flash, setCookie } = readFlash(request, context);
  return data(
    // A fresh nonce per load: the forms on the page derive their submission keys from it (components/submission-key.tsx).
    { toast: flash?.toast ?? null, reveal: flash?.reveal ?? null, submissionNonce: crypto.randomUUID() },
    setCookie ? { headers: { 'set-cookie': setCookie } } : undefined,
  );
}

// The flash is read on the request after an action and gone on the next page: reading it is one cookie, no
// database, so the root loader runs on every navigation and a toast never lingers onto an unrelated page.
export const shouldRevalidate: ShouldRevalidateFunction = () => true;

export const links: Route.LinksFunction = () => [
  // A real icon: a missing /favicon.ico would 404 and trip the browser tests' console-error check.
  { rel: 'icon', href: '/favicon.svg', type: 'image/svg+xml' },
];

export function Layout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <head>
        <meta charSet="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <Meta />
        <Links />
      </head>
      <body>
        {children}
        <ScrollRestoration />
        <Scripts />
      </body>
    </html>
  );
}

export default function App() {
  return <Outlet />;
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  let heading = 'Something went wrong';
  let detail = 'An unexpected error occurred.';
  let stack: string | undefined;

  if (isRouteErrorResponse(error)) {
    heading = error.status === 404 ? 'Page not found' : `${error.status} ${error.statusText}`;
    detail = error.status === 404 ? 'There is nothing at this address.' : String(error.data ?? error.statusText);
  } else if (import.meta.env.DEV && error instanceof Error) {
    // Production builds never show server error details to the browser.
    detail = error.message;
    stack = error.stack;
  }

  return (
    <main className="page">
      <title>{`${heading} · Meterdesk`}</title>
      <h1>{heading}</h1>
      <p>{detail}</p>
      {stack ? (
        <pre className="stack">
          <code>{stack}</code>
        </pre>
      ) : null}
      <p>
        <a href="/">Back to the desk</a>
      </p>
    </main>
  );
}
