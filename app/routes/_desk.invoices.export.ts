// GET /invoices/export: every invoice as CSV, streamed (a resource route: no component, the loader's Response is
// the download). Rows are read in keyset chunks as the client consumes them.
import type { Route } from './+types/_desk.invoices.export';
import { getServices } from '../server/desk-context';
import { requireUserWithPermission } from '../utils/permissions.server';
import { invoiceCsvStream } from '../presenters/invoices';

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'read:invoice:any');
  const stamp = new Date().toISOString().slice(0, 19).replaceAll(':', '-');
  return new Response(invoiceCsvStream(getServices(context).pool), {
    headers: {
      'content-type': 'text/csv; charset=utf-8',
      'content-disposition': `attachment; filename="invoices-${stamp}.csv"`,
      'cache-control': 'no-store',
    },
  });
}
