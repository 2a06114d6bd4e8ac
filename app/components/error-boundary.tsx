// The error boundary every desk route exports: `export function ErrorBoundary({ error }: Route.ErrorBoundaryProps)
// { return <GeneralErrorBoundary error={error} /> }`. Thrown responses (403 from a guard, 404 from
// invariantResponse) get a readable explanation; anything else a generic one (details stay in the server log).
import type { ReactNode } from 'react';
import { isRouteErrorResponse } from 'react-router';

type StatusHandler = (info: { status: number; message: string }) => ReactNode;

const DEFAULT_HANDLERS: Record<number, StatusHandler> = {
  400: ({ message }) => <Explained heading="That request was not valid" detail={message} />,
  403: ({ message }) => <Explained heading="Not allowed" detail={message} />,
  404: ({ message }) => <Explained heading="Not found" detail={message || 'There is nothing at this address.'} />,
};

export function GeneralErrorBoundary({
  error,
  statusHandlers,
}: {
  error: unknown;
  statusHandlers?: Record<number, StatusHandler>;
}) {
  if (isRouteErrorResponse(error)) {
    const message = messageOf(error.data) ?? error.statusText;
    const handler = statusHandlers?.[error.status] ?? DEFAULT_HANDLERS[error.status];
    if (handler) return <>{handler({ status: error.status, message })}</>;
    return <Explained heading={`${error.status} ${error.statusText}`} detail={message} />;
  }
  return (
    <Explained
      heading="Something went wrong"
      detail="The desk hit an unexpected error. It has been logged; try again, and tell an admin if it keeps happening."
    />
  );
}

function Explained({ heading, detail }: { heading: string; detail: string }) {
  return (
    <section className="error-panel" aria-labelledby="error-heading">
      <title>{`${heading} · Meterdesk`}</title>
      <h1 id="error-heading">{heading}</h1>
      <p>{detail}</p>
    </section>
  );
}

function messageOf(data: unknown): string | null {
  if (typeof data === 'string') return data;
  if (data && typeof data === 'object' && 'message' in data && typeof data.message === 'string') return data.message;
  return null;
}
