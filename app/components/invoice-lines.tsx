// An invoice's decomposition: one row per line (meter, events, quantity, billed units, unit price, amount), late
// usage labelled with the period it came from. Shared by the window and invoice detail pages.
import { Link } from 'react-router';
import { formatMoney, formatUnitPrice } from '../utils/money';
import type { InvoiceLineView } from '../presenters/windows';

/** The presenter's view of a line (a type only: nothing of the presenter reaches the browser). */
export type InvoiceLineRow = InvoiceLineView;

const count = new Intl.NumberFormat('en-US');
const big = (v: string) => count.format(BigInt(v));

export function InvoiceLinesTable({ lines, currency, totalMinor, label }: { lines: InvoiceLineRow[]; currency: string; totalMinor: string; label: string }) {
  if (lines.length === 0) return <p className="empty">No billable usage: the invoice has no lines (total {formatMoney(totalMinor, currency)}).</p>;
  return (
    <div className="table-scroll" role="region" aria-label={label} tabIndex={0}>
      <table className="data-table">
        <thead>
          <tr>
            <th scope="col">Meter</th>
            <th scope="col">Events</th>
            <th scope="col">Quantity</th>
            <th scope="col">Billed units</th>
            <th scope="col">Unit price</th>
            <th scope="col">Amount</th>
          </tr>
        </thead>
        <tbody>
          {lines.map((l) => (
            <tr key={l.id}>
              <th scope="row">
                <code>{l.eventName}</code>
                {l.kind === 'late_usage' ? <span className="badge badge-off">late usage</span> : null}
                <span className="muted block">{l.description}</span>
                {l.carriedFromWindowId ? (
                  <Link className="block" to={`/windows/${l.carriedFromWindowId}`}>
                    Origin window
                  </Link>
                ) : null}
              </th>
              <td className="numeric">{count.format(l.eventCount)}</td>
              <td className="numeric">{big(l.quantity)}</td>
              <td className="numeric">
                {big(l.billedUnits)}
                {l.perUnits !== '1' ? (
                  <span className="muted block">
                    per {big(l.perUnits)}, rounded {l.rounding}
                  </span>
                ) : null}
              </td>
              <td className="numeric">{formatUnitPrice(l.unitAmountDecimal, currency, l.perUnits)}</td>
              <td className="numeric">{formatMoney(l.amountMinor, currency)}</td>
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th scope="row" colSpan={5}>
              Total
            </th>
            <td className="numeric">
              <strong>{formatMoney(totalMinor, currency)}</strong>
            </td>
          </tr>
        </tfoot>
      </table>
    </div>
  );
}
