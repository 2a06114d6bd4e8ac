// Upcoming charges: what a subscription's open window would be charged if it closed now (a preview, nothing written).
import { Link } from 'react-router';
import { formatMoney, formatUnitPrice } from '../utils/money';
import { formatTimestamp } from '../utils/misc';
import type { UpcomingChargesView } from '../presenters/invoices';

/** The presenter's view (a type only: nothing of the presenter reaches the browser). */
export type UpcomingChargesItem = UpcomingChargesView;

export function UpcomingChargesTable({ items }: { items: UpcomingChargesItem[] }) {
  if (items.length === 0) return <p className="empty">No live Braintree subscriptions.</p>;
  return (
    <div className="table-scroll" role="region" aria-label="Upcoming charges by subscription" tabIndex={0}>
      <table className="data-table">
        <thead>
          <tr>
            <th scope="col">Customer</th>
            <th scope="col">Current period</th>
            <th scope="col">Usage so far</th>
            <th scope="col">Upcoming charge</th>
            <th scope="col">Not billable</th>
          </tr>
        </thead>
        <tbody>
          {items.map((u) => (
            <tr key={u.subscriptionId}>
              <th scope="row">
                {u.customerLabel}
                <code className="block">{u.processorSubscriptionId}</code>
                {u.windowId ? <Link to={`/windows/${u.windowId}`}>Open window</Link> : <span className="muted block">no window open yet</span>}
              </th>
              <td className="nowrap">
                {formatTimestamp(u.periodStart)} → {formatTimestamp(u.periodEnd)}
              </td>
              <td>
                {u.lines.length === 0 ? (
                  <span className="muted">none</span>
                ) : (
                  <ul className="stack">
                    {u.lines.map((l) => (
                      <li key={`${l.kind}-${l.eventName}-${l.description}`}>
                        <code>{l.eventName}</code>
                        {l.kind === 'late_usage' ? ' (late usage)' : ''}: {l.billedUnits} × {formatUnitPrice(l.unitAmountDecimal, u.currency, l.perUnits)} = {formatMoney(l.amountMinor, u.currency)}
                      </li>
                    ))}
                  </ul>
                )}
              </td>
              <td className="numeric">
                <strong>{formatMoney(u.totalMinor, u.currency)}</strong>
              </td>
              <td>
                {u.unmatchedEvents + u.unusableEvents === 0 ? (
                  <span className="muted">—</span>
                ) : (
                  <>
                    {u.unmatchedEvents > 0 ? <span className="block">{u.unmatchedEvents} without a definition ({u.unmatchedEventNames.join(', ')})</span> : null}
                    {u.unusableEvents > 0 ? <span className="block">{u.unusableEvents} unusable</span> : null}
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
