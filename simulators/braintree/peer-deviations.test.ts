// Regression tests for the simulator's deviations from what braintree_node's own specs expect, one block per fix,
// each citing the peer case (file › test name) that found it. The peer specs themselves run in
// test/conformance/braintree; these pin the behaviour in our own words, through the real SDK.
import braintree from 'braintree';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayFor } from '../../test/support/braintree-gateway';
import { startBraintreeSimulator, type BraintreeSimulator } from './simulator';

let sim: BraintreeSimulator;
let gw: braintree.BraintreeGateway;

type AnyResult = braintree.ValidatedResponse<braintree.Transaction> & { transaction: braintree.Transaction & Record<string, unknown> };

/** `@types/braintree` types `errors.on()` as one error; at runtime it is an array (or undefined). */
function codes(result: { errors: braintree.ValidationErrorsCollection }): string[] {
  return result.errors.deepErrors().map((e) => e.code);
}

/** Customer requests as the SDK sends them (`@types/braintree` insists on a customerId inside creditCard). */
const createCustomer = (request: Record<string, unknown>) => gw.customer.create(request as unknown as braintree.CustomerCreateRequest);

beforeAll(async () => {
  sim = await startBraintreeSimulator();
  gw = gatewayFor(sim.gatewayTarget, { timeoutMs: 5000 });
});

afterAll(async () => {
  await sim.stop();
});

describe('sales with card data (transaction_gateway_spec.js › TransactionGateway › sale › charges a card)', () => {
  it('approves a sale on raw card data with the masked number, the expiration date and an authorization expiry', async () => {
    const result = (await gw.transaction.sale({ amount: '5.00', creditCard: { number: '5105105105105100', expirationDate: '05/12' } })) as AnyResult;
    expect(result.success).toBe(true);
    const tx = result.transaction;
    expect(tx.status).toBe('authorized');
    expect(tx.processorResponseCode).toBe('1000');
    expect(tx.processorResponseType).toBe('approved');
    expect(tx.creditCard!.maskedNumber).toBe('510510******5100');
    expect(tx.creditCard!.cardType).toBe('MasterCard');
    expect(tx.creditCard!.expirationDate).toBe('05/2012');
    expect(tx.paymentInstrumentType).toBe('credit_card');
    const expires = new Date(tx.authorizationExpiresAt as string).getTime();
    expect(expires).toBeGreaterThan(new Date(tx.createdAt).getTime());
  });

  it('answers missing card data with the gateway codes, nothing else (TransactionGateway › handles validation errors)', async () => {
    const result = await gw.transaction.sale({ creditCard: { number: '5105105105105100' } } as braintree.TransactionRequest);
    expect(result.success).toBe(false);
    expect(result.message).toBe('Amount is required.\nExpiration date is required.');
    expect(codes(result).sort()).toEqual(['81502', '81709']);
    expect(sim.sales()).toHaveLength(1);
  });

  it('refuses a number that fails the Luhn check with 81715', async () => {
    const result = await gw.transaction.sale({ amount: '5.00', creditCard: { number: '4111111111111112', expirationDate: '05/30' } });
    expect(result.success).toBe(false);
    expect(codes(result)).toEqual(['81715']);
  });
});

describe('processor declines (TransactionGateway › handles processor soft declines / hard declines)', () => {
  it.each([
    ['2000.00', '2000', 'soft_declined', '2000 : Do Not Honor'],
    ['2015.00', '2015', 'hard_declined', '2015 : Transaction Not Allowed'],
    ['2057.00', '2057', 'soft_declined', '2057 : Issuer or Cardholder has put a restriction on the card'],
    ['2999.00', '2999', 'soft_declined', '2999 : Processor Declined'],
  ])('amount %s: code %s, %s, additional processor response "%s"', async (amount, code, type, additional) => {
    const result = (await gw.transaction.sale({ amount, creditCard: { number: '5105105105105100', expirationDate: '05/12' } })) as AnyResult;
    expect(result.success).toBe(false);
    expect(result.transaction.status).toBe('processor_declined');
    expect(result.transaction.processorResponseCode).toBe(code);
    expect(result.transaction.processorResponseType).toBe(type);
    expect(result.transaction.additionalProcessorResponse).toBe(additional);
  });
});

describe('customers with cards (customer_gateway_spec.js › CustomerGateway › create › and vaults a payment method › creates customers with credit cards)', () => {
  it('vaults the card with its expiry, masked number and a 32-character unique number identifier, as the default', async () => {
    const result = await createCustomer({ firstName: 'John', lastName: 'Smith', creditCard: { number: '5105105105105100', expirationDate: '05/2012' } });
    expect(result.success).toBe(true);
    const card = result.customer.creditCards![0]!;
    expect(result.customer.creditCards!).toHaveLength(1);
    expect([card.expirationMonth, card.expirationYear, card.maskedNumber]).toEqual(['05', '2012', '510510******5100']);
    expect(card.uniqueNumberIdentifier).toMatch(/^\w{32}$/);
    expect(card.default).toBe(true);
    expect(sim.customer(result.customer.id)?.defaultPaymentMethodToken).toBe(card.token);
  });

  it('keeps the billing address and answers find with it and a global id (CustomerGateway › find › finds a custoemr)', async () => {
    const created = await createCustomer({
      firstName: 'John',
      creditCard: { number: '5105105105105100', expirationDate: '05/2014', billingAddress: { company: '', streetAddress: '123 E Fake St', phoneNumber: '312-123-4567' } },
    });
    const found = (await gw.customer.find(created.customer.id)) as braintree.Customer & { graphQLId?: string };
    const address = found.creditCards![0]!.billingAddress!;
    expect([address.streetAddress, address.company]).toEqual(['123 E Fake St', '']);
    expect((address as unknown as { phoneNumber: string }).phoneNumber).toBe('312-123-4567');
    expect(found.graphQLId).toBe(Buffer.from(`customer_${found.id}`).toString('base64').replace(/=+$/, ''));
  });

  it('refuses an invalid card number with 81715 under customer.creditCard (CustomerGateway › create › handles validation errors)', async () => {
    const result = await createCustomer({ creditCard: { number: 'invalid card number', expirationDate: '05/2012' } });
    expect(result.success).toBe(false);
    expect(result.message).toBe('Credit card number is invalid.');
    expect(codes(result)).toEqual(['81715']);
  });

  it('charges the vaulted card by customer id and by token with its cardholder (TransactionGateway › sale › can use a customer / a credit card from the vault)', async () => {
    const created = await createCustomer({ firstName: 'Adam', lastName: 'Jones', creditCard: { cardholderName: 'Adam Jones', number: '5105105105105100', expirationDate: '05/2014' } });
    for (const request of [{ customerId: created.customer.id }, { paymentMethodToken: created.customer.creditCards![0]!.token }]) {
      const result = (await gw.transaction.sale({ amount: '100.00', ...request })) as AnyResult;
      expect(result.success).toBe(true);
      expect([result.transaction.customer.firstName, result.transaction.customer.lastName]).toEqual(['Adam', 'Jones']);
      expect([result.transaction.creditCard!.cardholderName, result.transaction.creditCard!.expirationDate]).toEqual(['Adam Jones', '05/2014']);
    }
  });

  it('never vaults a PayPal account authorized for one payment: 82902 (… › does not vault a paypal account only authorized for one-time use)', async () => {
    const result = await gw.customer.create({ paymentMethodNonce: 'fake-paypal-one-time-nonce' });
    expect(result.success).toBe(false);
    expect(codes(result)).toEqual(['82902']);
    const customer = await gw.customer.create({});
    const pm = await gw.paymentMethod.create({ customerId: customer.customer.id, paymentMethodNonce: 'fake-paypal-one-time-nonce' });
    expect(pm.success).toBe(false);
    expect(codes(pm)).toEqual(['82902']);
  });
});

describe("subscription charge notifications (webhook_notification_gateway_spec.js › … › builds a sample notification for a successfully / unsuccessfully charged subscription)", () => {
  it.each([
    ['subscription_charged_successfully', 'submitted_for_settlement'],
    ['subscription_charged_unsuccessfully', 'failed'],
  ])('%s carries one made-up transaction, %s, for the sample amount 49.99', async (kind, status) => {
    const { bt_signature, bt_payload } = sim.buildWebhook(kind, { subscription: { id: 'my_id' } });
    const n = (await gw.webhookNotification.parse(bt_signature, bt_payload)) as braintree.SubscriptionNotification;
    expect(n.kind).toBe(kind);
    expect(n.subscription.id).toBe('my_id');
    expect(n.subscription.transactions!.map((t) => [t.status, t.amount])).toEqual([[status, '49.99']]);
    expect(n.subscription.price).toBe('49.99');
  });

  it('a subscription that names its price charges that price', async () => {
    const { bt_signature, bt_payload } = sim.buildWebhook('subscription_charged_successfully', { subscription: { id: 'sub_1', price: '12.00' } });
    const n = (await gw.webhookNotification.parse(bt_signature, bt_payload)) as braintree.SubscriptionNotification;
    expect(n.subscription.transactions!.map((t) => t.amount)).toEqual(['12.00']);
  });
});

/** The search builder the SDK hands a search function. */
type Search = Parameters<Parameters<braintree.BraintreeGateway['transaction']['search']>[0]>[0];

/** The SDK's own codes (`@types/braintree` does not declare ValidationErrorCodes). */
const API_KEY_CODES = (braintree as unknown as { ValidationErrorCodes: { Transaction: Record<string, string> } }).ValidationErrorCodes.Transaction;

describe('idempotent sales (transaction_idempotency_spec.js › TransactionIdempotency › sale › …)', () => {
  const card = { number: '4111111111111111', expirationDate: '05/2035' };
  const keyed = (apiRequestKey: string, amount = '1000.00') => ({ amount, apiRequestKey, creditCard: card }) as braintree.TransactionRequest;

  it('the same request with the same key answers the first transaction again and records nothing new (returns original transaction on duplicate request with same api request key)', async () => {
    const first = await gw.transaction.sale(keyed('idem-same'));
    const again = await gw.transaction.sale(keyed('idem-same'));
    expect(first.success && again.success).toBe(true);
    expect(again.transaction.id).toBe(first.transaction.id);
    expect(sim.sales().filter((s) => s.id === first.transaction.id)).toHaveLength(1);
    const other = await gw.transaction.sale(keyed('idem-other'));
    expect(other.transaction.id).not.toBe(first.transaction.id);
  });

  it('another request with a used key is refused with 915232 and records nothing (fails when different request used with same key)', async () => {
    await gw.transaction.sale(keyed('idem-changed'));
    const before = sim.sales().length;
    const changed = await gw.transaction.sale(keyed('idem-changed', '200.00'));
    expect(changed.success).toBe(false);
    expect(codes(changed)).toEqual([API_KEY_CODES.ApiRequestKeyCanBeReusedOnlyWithTheSameRequest]);
    expect(sim.sales()).toHaveLength(before);
  });

  it('takes keys of 255 characters and refuses longer ones with 915230 (fails when api request key is too big)', async () => {
    expect((await gw.transaction.sale(keyed('x'.repeat(255)))).success).toBe(true);
    const long = await gw.transaction.sale(keyed('x'.repeat(256)));
    expect(codes(long)).toEqual([API_KEY_CODES.ApiRequestKeyTooLong]);
  });

  it('refuses a key whose first sale is still in flight with 915233; only one sale is recorded', async () => {
    sim.configure({ saleLatencyMs: 200 });
    try {
      const [a, b] = await Promise.all([gw.transaction.sale(keyed('idem-flight')), new Promise((r) => setTimeout(r, 50)).then(() => gw.transaction.sale(keyed('idem-flight')))]);
      expect(a.success).toBe(true);
      expect(codes(b)).toEqual([API_KEY_CODES.ApiRequestKeyIsInFlight]);
      expect(sim.sales().filter((s) => s.id === a.transaction.id)).toHaveLength(1);
    } finally {
      sim.configure({ saleLatencyMs: 0 });
    }
  });

  it('after a timeout the retry with the same key gets the sale that was applied, not a second one', async () => {
    sim.addFault({ kind: 'timeout_applied', count: 1, match: { operation: 'transaction.sale', amount: '17.00' } });
    const slow = gatewayFor(sim.gatewayTarget, { timeoutMs: 300 });
    await expect(slow.transaction.sale(keyed('idem-timeout', '17.00'))).rejects.toThrow(/timed out/i);
    const retry = await gw.transaction.sale(keyed('idem-timeout', '17.00'));
    expect(retry.success).toBe(true);
    expect(sim.sales().filter((s) => s.amount === '17.00').map((s) => s.id)).toEqual([retry.transaction.id]);
  });
});

describe('gateway rejections by the fraud tools (transaction_gateway_spec.js › TransactionGateway › handles risk_threshold rejection (test credit card number) / (test nonce))', () => {
  it.each([
    [{ creditCard: { number: '4111130000000003', expirationDate: '05/16' } }, 'risk_threshold'],
    [{ paymentMethodNonce: 'fake-gateway-rejected-risk-thresholds-nonce' }, 'risk_threshold'],
    [{ creditCard: { number: '4000111111111511', expirationDate: '05/16' } }, 'fraud'],
    [{ paymentMethodNonce: 'fake-gateway-rejected-fraud-nonce' }, 'fraud'],
  ])('%o is gateway_rejected: %s', async (source, reason) => {
    const result = (await gw.transaction.sale({ amount: '10.00', ...source } as braintree.TransactionRequest)) as AnyResult;
    expect(result.success).toBe(false);
    expect(result.transaction.status).toBe('gateway_rejected');
    expect(result.transaction.gatewayRejectionReason).toBe(reason);
  });

  it("answers a second merchant's keys on its own merchant id only", async () => {
    const other = { merchantId: 'other_merchant', publicKey: 'other_public', privateKey: 'other_private' };
    const two = await startBraintreeSimulator({ otherMerchants: [other] });
    try {
      const ok = await gatewayFor({ url: two.url, ...other }).transaction.sale({ amount: '10.00', paymentMethodNonce: 'fake-valid-nonce' });
      expect(ok.success).toBe(true);
      const crossed = gatewayFor({ url: two.url, ...other, merchantId: two.merchantId }).transaction.sale({ amount: '10.00', paymentMethodNonce: 'fake-valid-nonce' });
      await expect(crossed).rejects.toMatchObject({ type: 'authorizationError' });
    } finally {
      await two.stop();
    }
  });
});

describe('search refusals and instrument names (transaction_search_spec.js › TransactionSearch › search › …)', () => {
  it('a negative amount is refused, which the SDK reports as an unexpectedError (raises Unexpected Error for search timeouts; emits error events when appropriate)', async () => {
    const stream = gw.transaction.search((s) => s.amount().is(-10 as unknown as string));
    const error = await new Promise<unknown>((resolve) => {
      stream.on('error', resolve);
      stream.on('data', () => undefined);
      stream.on('end', () => resolve(undefined));
    });
    expect(error).toMatchObject({ type: 'unexpectedError' });
  });

  it('searches payment instruments by the gateway\'s detail names (searches on payment instrument type credit_card)', async () => {
    const card = await gw.transaction.sale({ amount: '10.00', paymentMethodNonce: 'fake-valid-nonce' });
    const paypal = await gw.transaction.sale({ amount: '10.00', paymentMethodNonce: 'fake-paypal-billing-agreement-nonce' });
    const ids = async (type: string, id: string) => {
      const out: string[] = [];
      for await (const tx of gw.transaction.search((s) => { s.paymentInstrumentType().is(type); s.id().is(id); })) out.push((tx as braintree.Transaction).id);
      return out;
    };
    expect(await ids('CreditCardDetail', card.transaction.id)).toEqual([card.transaction.id]);
    expect(await ids('PayPalDetail', card.transaction.id)).toEqual([]);
    expect(await ids('PayPalDetail', paypal.transaction.id)).toEqual([paypal.transaction.id]);
  });
});

describe('a sale with customer, billing and shipping details, vaulted, settled and searched (transaction_search_spec.js › TransactionSearch › search › finds transactions)', () => {
  // @types/braintree misses or mistypes several transaction search fields (acquirerReferenceNumber, creditCardCardType, refund).
  type Node = { is(v: unknown): void; in(v: unknown): void; min(v: unknown): void; max(v: unknown): void; startsWith(v: string): void; endsWith(v: string): void };
  type Field =
    | 'id' | 'billingCountryName' | 'billingFirstName' | 'shippingStreetAddress' | 'customerEmail' | 'customerWebsite' | 'creditCardCardholderName'
    | 'creditCardExpirationDate' | 'creditCardNumber' | 'settlementBatchId' | 'acquirerReferenceNumber' | 'createdUsing' | 'creditCardCardType'
    | 'user' | 'refund' | 'status' | 'amount' | 'createdAt' | 'settledAt' | 'submittedForSettlementAt';
  type Loose = Record<Field, () => Node>;
  const search = async (build: (s: Loose) => void): Promise<string[]> => {
    const ids: string[] = [];
    for await (const tx of gw.transaction.search((s: Search) => build(s as unknown as Loose))) ids.push((tx as braintree.Transaction).id);
    return ids;
  };

  it('stores the details, vaults the card for the named customer, settles into a batch and is found by each of them, and by status, created-at and amount', async () => {
    const address = { company: 'Braintree', extendedAddress: 'Apt B', firstName: 'Tom_s', lastName: 'Guy', locality: 'Chicago', postalCode: '60646', region: 'IL', streetAddress: '123 Fake St' };
    const sold = (await gw.transaction.sale({
      amount: '5.00',
      orderId: 'order-finds',
      billing: { ...address, countryName: 'US' },
      shipping: { ...address, countryName: 'United States of America' },
      creditCard: { number: '5105105105105100', expirationDate: '05/2012', cardholderName: 'Tom Guy', token: 'card_finds' },
      customer: { id: 'customer_finds', company: 'Braintree', email: 'tom@example.com', fax: '(123)456-7890', firstName: 'Tom_s', lastName: 'Guy', phone: '(456)123-7890', website: 'http://www.example.com/' },
      options: { storeInVault: true, submitForSettlement: true },
    } as braintree.TransactionRequest)) as AnyResult;
    expect(sold.success).toBe(true);
    expect([sold.transaction.customer.id, (sold.transaction as unknown as { creditCard: { token: string } }).creditCard.token]).toEqual(['customer_finds', 'card_finds']);
    expect(sim.customer('customer_finds')?.defaultPaymentMethodToken).toBe('card_finds');
    await (gw as unknown as { testing: { settle(id: string): Promise<unknown> } }).testing.settle(sold.transaction.id);
    const tx = (await gw.transaction.find(sold.transaction.id)) as braintree.Transaction & { settlementBatchId: string; acquirerReferenceNumber: string };
    expect(tx.settlementBatchId).toMatch(/^\d{4}-\d{2}-\d{2}_meterdesk_usd$/);
    expect(tx.acquirerReferenceNumber).toMatch(/^\d{23}$/);
    expect(tx.billing?.countryName).toBe('United States of America');

    const id = sold.transaction.id;
    const day = 86_400_000;
    const only = async (f: (s: Loose) => void) => expect(await search((s) => { s.id().is(id); f(s); })).toEqual([id]);
    const none = async (f: (s: Loose) => void) => expect(await search((s) => { s.id().is(id); f(s); })).toEqual([]);
    await only((s) => s.billingCountryName().is('United States of America'));
    await only((s) => s.shippingStreetAddress().is('123 Fake St'));
    await only((s) => s.customerEmail().is('tom@example.com'));
    await only((s) => s.customerWebsite().is('http://www.example.com/'));
    await only((s) => s.creditCardCardholderName().is('Tom Guy'));
    await only((s) => s.creditCardExpirationDate().is('05/2012'));
    await only((s) => { s.creditCardNumber().startsWith('5105'); s.creditCardNumber().endsWith('100'); });
    await only((s) => s.settlementBatchId().is(tx.settlementBatchId));
    await only((s) => s.acquirerReferenceNumber().is(tx.acquirerReferenceNumber));
    await only((s) => s.createdUsing().in(['full_information']));
    await only((s) => s.creditCardCardType().in(['MasterCard']));
    await only((s) => s.user().in(['meterdesk_simulator']));
    await only((s) => s.refund().is(false));
    await only((s) => s.status().in(['settled']));
    await only((s) => { s.amount().min('4.99'); s.amount().max('5.01'); });
    await only((s) => { s.createdAt().min(new Date(Date.now() - day)); s.createdAt().max(new Date(Date.now() + day)); });
    await only((s) => { s.settledAt().min(new Date(Date.now() - day)); s.submittedForSettlementAt().max(new Date(Date.now() + day)); });
    await none((s) => s.billingFirstName().is('Someone else'));
    await none((s) => s.status().in(['submitted_for_settlement']));
    await none((s) => s.createdUsing().in(['token']));
    await none((s) => s.refund().is(true));
  });

  it('refuses to vault for a customer id that is taken (91609), recording nothing', async () => {
    sim.addCustomer('customer_taken');
    const before = sim.sales().length;
    const result = await gw.transaction.sale({ amount: '5.00', creditCard: { number: '5105105105105100', expirationDate: '05/2012' }, customer: { id: 'customer_taken' }, options: { storeInVault: true } } as braintree.TransactionRequest);
    expect(codes(result)).toEqual(['91609']);
    expect(sim.sales()).toHaveLength(before);
  });
});

describe('capture with an order id (transaction_gateway_spec.js › TransactionGateway › submitForSettlement › allows submitting with an order id)', () => {
  // The SDK takes (id, amount, options); @types/braintree declares two arguments.
  const submit = (id: string, amount: string | undefined, options: Record<string, unknown>) =>
    (gw.transaction.submitForSettlement as unknown as (id: string, amount: string | undefined, options: Record<string, unknown>) => Promise<AnyResult>)(id, amount, options);

  it('names the order on submit for settlement, with or without an amount; a too long one changes nothing', async () => {
    const card = { number: '5105105105105100', expirationDate: '05/12' };
    const first = await gw.transaction.sale({ amount: '5.00', creditCard: card });
    const captured = await submit(first.transaction.id, '3.00', { orderId: 'ABC123' });
    expect([captured.transaction.status, captured.transaction.amount, captured.transaction.orderId]).toEqual(['submitted_for_settlement', '3.00', 'ABC123']);

    const second = await gw.transaction.sale({ amount: '5.00', creditCard: card });
    const tooLong = await submit(second.transaction.id, '3.00', { orderId: 'x'.repeat(256) });
    expect(codes(tooLong)).toEqual(['91501']);
    expect(sim.transaction(second.transaction.id)).toMatchObject({ amount: '5.00', orderId: null, status: 'authorized' });
    const noAmount = await submit(second.transaction.id, undefined, { orderId: 'ABC123' });
    expect([noAmount.transaction.amount, noAmount.transaction.orderId]).toEqual(['5.00', 'ABC123']);
  });
});
