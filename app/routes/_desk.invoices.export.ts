// GET /invoices/export: the invoices the page's filters match, as CSV, streamed (a resource route: no component,
// the loader's Response is the download). `view=invoices` (default) is one row per invoice; `view=lines` one row per
// invoice line (ADR 031). Rows are read in keyset chunks as the client consumes them.
import type { Route } from './+types/_desk.invoices.export';
import { getServices } from '../server/desk-context';
import { requireUserWithPermission } from '../utils/permissions.server';
import { parseInvoiceFilters } from '../presenters/invoices';
import { CSV_VIEWS, invoiceCsvStream, type CsvView } from '../presenters/invoice-export';

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'read:invoice:any');
  const url = new URL(request.url);
  const view = url.searchParams.get('view') || 'invoices';
  if (!(CSV_VIEWS as readonly string[]).includes(view)) {
    const detail = `There is no "${view}" export: ask for view=invoices (one row per invoice) or view=lines (one row per invoice line).`;
    return new Response(JSON.stringify({ type: '/problems/invalid-export', title: 'Unknown export', status: 400, detail }), {
      status: 400,
      headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store' },
    });
  }
  const stamp = new Date().toISOString().slice(0, 19).replaceAll(':', '-');
  const name = view === 'lines' ? 'invoice-lines' : 'invoices';
  return new Response(invoiceCsvStream(getServices(context).pool, { filters: parseInvoiceFilters(url), view: view as CsvView }), {
    headers: {
      'content-type': 'text/csv; charset=utf-8',
      'content-disposition': `attachment; filename="${name}-${stamp}.csv"`,
      'cache-control': 'no-store',
    },
  });
}
