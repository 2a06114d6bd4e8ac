import { Form, Link } from 'react-router';
import type { Route } from './+types/_desk.customers';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { CustomerSearchPresenter } from '../billing/ledger/customer-list';
import { getServices } from '../server/desk-context';
import { requireUserWithPermission } from '../utils/permissions.server';

export const meta: Route.MetaFunction = () => [{ title: 'Customers · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'read:meter-event:any');
  const q = new URL(request.url).searchParams.get('q')?.trim().slice(0, 254) ?? '';
  return { q, customers: await CustomerSearchPresenter.call(getServices(context).pool, q) };
}

export default function CustomersPage({ loaderData }: Route.ComponentProps) {
  const { q, customers } = loaderData;
  return (
    <>
      <h1>Customers</h1>
      <p className="lede">Find a customer by the host app's id, their email, or their Stripe / Braintree customer id.</p>
      <section aria-labelledby="customer-search-heading" className="panel">
        <h2 id="customer-search-heading" className="visually-hidden">
          Search
        </h2>
        <Form method="get" className="filters" role="search" key={q}>
          <div className="field">
            <label htmlFor="customer-q">Name, email or external id (the start is enough), or processor customer id</label>
            <input id="customer-q" name="q" type="search" defaultValue={q} />
          </div>
          <div className="form-actions">
            <button type="submit" className="button button-primary">
              Search
            </button>
            {q ? (
              <Link to="/customers" className="button button-quiet">
                Clear
              </Link>
            ) : null}
          </div>
        </Form>
      </section>
      <section aria-labelledby="customers-heading">
        <h2 id="customers-heading" className="visually-hidden">
          Results
        </h2>
        {customers.length === 0 ? (
          <p className="empty">{q ? `No customer matches "${q}".` : 'No customers yet.'}</p>
        ) : (
          <div className="table-scroll" role="region" aria-label="Customers list" tabIndex={0}>
            <table className="data-table card-table">
              <thead>
                <tr>
                  <th scope="col">External id</th>
                  <th scope="col">Name</th>
                  <th scope="col">Email</th>
                  <th scope="col">Processor</th>
                  <th scope="col">Processor customer id</th>
                </tr>
              </thead>
              <tbody>
                {customers.map((c) => (
                  <tr key={c.id}>
                    <td data-label="External id">
                      <Link to={`/customers/${c.id}`}>{c.externalId}</Link>
                    </td>
                    <td data-label="Name">{c.name ?? <span className="muted">—</span>}</td>
                    <td data-label="Email">{c.email ?? <span className="muted">—</span>}</td>
                    <td data-label="Processor">{c.processor}</td>
                    <td data-label="Processor customer id">
                      <code>{c.processorCustomerId}</code>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
