import { Link } from 'react-router';
import { DeskTable, FilterBar, FilterInput, Missing } from '../components/desk-table';
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
        <FilterBar filtered={q !== ''} clearTo="/customers" formKey={q} role="search" applyText="Search">
          <FilterInput id="customer-q" name="q" type="search" label="Name, email or external id (the start is enough), or processor customer id" value={q} />
        </FilterBar>
      </section>
      <section aria-labelledby="customers-heading">
        <h2 id="customers-heading" className="visually-hidden">
          Results
        </h2>
        <DeskTable
          label="Customers list"
          cards
          rows={customers}
          rowKey={(c) => c.id}
          empty={q ? `No customer matches "${q}".` : 'No customers yet.'}
          columns={[
            { header: 'External id', cell: (c) => <Link to={`/customers/${c.id}`}>{c.externalId}</Link> },
            { header: 'Name', cell: (c) => c.name ?? <Missing /> },
            { header: 'Email', cell: (c) => c.email ?? <Missing /> },
            { header: 'Processor', cell: (c) => c.processor },
            { header: 'Processor customer id', cell: (c) => <code>{c.processorCustomerId}</code> },
          ]}
        />
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
