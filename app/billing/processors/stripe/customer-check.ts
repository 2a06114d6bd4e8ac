// Which customers Stripe knows now, for a retry that re-sends an `unknown_customer` failure only once its cause is
// gone (ledger/retry.ts). One `customers.retrieve` per distinct customer, all at once; anything but a live customer
// (404, deleted, an error, a timeout) counts as not known, so a retry never re-sends on a guess.
import type Stripe from 'stripe';
import type { CustomerCheck } from '../../ledger/retry';

export function stripeCustomerCheck(client: Stripe): CustomerCheck {
  return async (ids) => {
    const answers = await Promise.all(
      ids.map(async (id) => {
        try {
          const customer = await client.customers.retrieve(id);
          return 'deleted' in customer && customer.deleted ? null : id;
        } catch {
          return null;
        }
      }),
    );
    return new Set(answers.filter((id): id is string => id !== null));
  };
}
