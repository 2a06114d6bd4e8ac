import type { Route } from './+types/_index';

export const meta: Route.MetaFunction = () => [
  { title: 'Meterdesk' },
  { name: 'description', content: 'Self-hosted usage metering with an operations desk.' },
];

export default function Home() {
  return (
    <section className="page-intro" aria-labelledby="overview-heading">
      <h1 id="overview-heading">Meterdesk</h1>
      <p>
        Usage metering for Stripe and Braintree: events in, billing windows closed, charges reported, and every
        failure visible on one desk.
      </p>
      <p>
        {/* A plain link, not <Link>: /healthz is served by a Node handler, not by a route. */}
        <a href="/healthz">Service health</a>
      </p>
    </section>
  );
}
