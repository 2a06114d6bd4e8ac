// The real braintree SDK against the simulator: sales and declines, validation, search, faults, webhooks.
import { spawn } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import braintree from 'braintree';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { gatewayFor } from '../../test/support/braintree-gateway';
import { startBraintreeSimulator, type BraintreeSimulator, type FaultRule } from './simulator';

interface ReceivedWebhook {
  contentType: string | undefined;
  form: URLSearchParams;
}

let sim: BraintreeSimulator;
let receiver: Server;
let received: ReceivedWebhook[] = [];
const CUSTOMER = 'cust_acme';
const TOKEN = 'pm_acme_visa';

type Gateway = braintree.BraintreeGateway;
type SdkError = Error & { type: string };

function gateway(timeoutMs = 5000): Gateway {
  return gatewayFor(sim.gatewayTarget, { timeoutMs });
}

function sale(gw: Gateway, orderId: string, extra: Partial<braintree.TransactionRequest> = {}) {
  return gw.transaction.sale({ amount: '12.34', paymentMethodToken: TOKEN, orderId, options: { submitForSettlement: true }, ...extra });
}

async function rejection(p: Promise<unknown>): Promise<SdkError> {
  try {
    await p;
  } catch (err) {
    return err as SdkError;
  }
  throw new Error('expected the call to fail');
}

/** `@types/braintree` types `errors.on()` as one error; at runtime it is an array (or undefined). */
function errorsOn(result: braintree.ValidatedResponse<braintree.Transaction | braintree.Customer | braintree.PaymentMethod>, scope: string, attribute: string): braintree.ValidationError[] {
  return (result.errors.for(scope)?.on(attribute) as unknown as braintree.ValidationError[] | undefined) ?? [];
}

/** `@types/braintree` makes WebhookNotification a union; subscription kinds carry `subscription`. */
const subscriptionOf = (n: braintree.WebhookNotification) => (n as braintree.SubscriptionNotification).subscription;

async function searchByOrderId(gw: Gateway, orderId: string): Promise<braintree.Transaction[]> {
  const found: braintree.Transaction[] = [];
  for await (const tx of gw.transaction.search((s) => s.orderId().is(orderId))) found.push(tx as braintree.Transaction);
  return found;
}

async function waitFor<T>(find: () => T | undefined, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ contentType: req.headers['content-type'], form: new URLSearchParams(Buffer.concat(chunks).toString('utf8')) });
      res.writeHead(200);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as AddressInfo).port;
  sim = await startBraintreeSimulator({ webhookUrl: `http://127.0.0.1:${port}/webhooks/braintree`, seed: 7 });
});

afterAll(async () => {
  await sim.stop();
  await new Promise<void>((r) => receiver.close(() => r()));
});

beforeEach(() => {
  sim.reset({ all: true });
  sim.configure({ amountRules: true, tokenRules: true, duplicateWindowMs: 0, latencyMs: 0, saleLatencyMs: 0 });
  received = [];
  sim.addCustomer(CUSTOMER, { firstName: 'Acme', email: 'billing@acme.test' });
  sim.addPaymentMethod(CUSTOMER, TOKEN);
});

describe('Transaction.sale', () => {
  it('approves, submits for settlement and records the sale once', async () => {
    const result = await sale(gateway(), 'win-1');
    expect(result.success).toBe(true);
    const tx = result.transaction;
    expect(tx).toMatchObject({
      status: 'submitted_for_settlement',
      type: 'sale',
      amount: '12.34',
      orderId: 'win-1',
      currencyIsoCode: 'USD',
      processorResponseCode: '1000',
      processorResponseText: 'Approved',
      processorResponseType: 'approved',
      paymentInstrumentType: 'credit_card',
    });
    expect(tx.id).toMatch(/^[a-z0-9]{8}$/);
    expect(tx.customer.id).toBe(CUSTOMER);
    expect(tx.creditCard?.token).toBe(TOKEN);
    expect(tx.creditCard?.maskedNumber).toBe('411111******1111');
    expect(tx.statusHistory?.map((e) => e.status)).toEqual(['authorized', 'submitted_for_settlement']);

    expect(sim.sales()).toEqual([expect.objectContaining({ id: tx.id, orderId: 'win-1', amount: '12.34', paymentMethodToken: TOKEN, status: 'submitted_for_settlement', fault: null })]);
    expect(sim.salesByOrderId().get('win-1')).toBe(1);
    expect(sim.approvedSalesByOrderId().get('win-1')).toBe(1);
    expect(sim.stats()).toMatchObject({ sales: 1, approved: 1 });
  });

  it('leaves a sale authorized without submitForSettlement, and settles it on request', async () => {
    const gw = gateway();
    const result = await gw.transaction.sale({ amount: '5', paymentMethodToken: TOKEN, orderId: 'auth-1' });
    expect(result.transaction.status).toBe('authorized');
    expect(result.transaction.amount).toBe('5.00');
    const submitted = await gw.transaction.submitForSettlement(result.transaction.id);
    expect(submitted.transaction.status).toBe('submitted_for_settlement');
    await gw.testing.settle(result.transaction.id);
    expect((await gw.transaction.find(result.transaction.id)).status).toBe('settled');
    expect(sim.transaction(result.transaction.id)?.status).toBe('settled');
  });

  it("charges the customer's default payment method when only customerId is given", async () => {
    sim.addPaymentMethod(CUSTOMER, 'pm_acme_second', { makeDefault: true });
    const result = await gateway().transaction.sale({ amount: '1.00', customerId: CUSTOMER, orderId: 'default-1', options: { submitForSettlement: true } });
    expect(result.success).toBe(true);
    expect(result.transaction.creditCard?.token).toBe('pm_acme_second');
  });

  it.each([
    ['pm_soft_decline', '2000', 'Do Not Honor', 'soft_declined'],
    ['pm_insufficient_funds', '2001', 'Insufficient Funds', 'soft_declined'],
    ['pm_hard_decline', '2004', 'Expired Card', 'hard_declined'],
    ['pm_decline_2057', '2057', 'Issuer or Cardholder has put a restriction on the card', 'soft_declined'],
  ])('declines token %s with %s as the SDK reports a processor decline', async (token, code, text, type) => {
    sim.addPaymentMethod(CUSTOMER, token);
    const result = await sale(gateway(), `decl-${code}`, { paymentMethodToken: token });
    expect(result.success).toBe(false);
    expect(result.message).toBe(text);
    expect(result.errors.deepErrors()).toEqual([]);
    expect(result.transaction).toMatchObject({
      status: 'processor_declined',
      processorResponseCode: code,
      processorResponseText: text,
      processorResponseType: type,
      orderId: `decl-${code}`,
      amount: '12.34',
    });
    expect(result.params.transaction.orderId).toBe(`decl-${code}`);
    // Declined transactions exist on Braintree: they are recorded and searchable.
    expect(sim.sales({ orderId: `decl-${code}` })).toEqual([expect.objectContaining({ status: 'processor_declined', processorResponseCode: code })]);
    expect(sim.approvedSalesByOrderId().get(`decl-${code}`)).toBeUndefined();
  });

  it('gateway-rejects tokens named gateway_rejected, with a reason', async () => {
    sim.addPaymentMethod(CUSTOMER, 'pm_gateway_rejected');
    sim.addPaymentMethod(CUSTOMER, 'pm_gateway_rejected_avs');
    const gw = gateway();
    const fraud = await sale(gw, 'rej-1', { paymentMethodToken: 'pm_gateway_rejected' });
    expect(fraud.success).toBe(false);
    expect(fraud.message).toBe('Gateway Rejected: fraud');
    expect(fraud.transaction).toMatchObject({ status: 'gateway_rejected', gatewayRejectionReason: 'fraud', processorResponseCode: null });
    const avs = await sale(gw, 'rej-2', { paymentMethodToken: 'pm_gateway_rejected_avs' });
    expect(avs.transaction.gatewayRejectionReason).toBe('avs');
    expect(sim.stats().gatewayRejected).toBe(2);
  });

  it("follows Braintree's sandbox amounts unless amount rules are off", async () => {
    const gw = gateway();
    const soft = await sale(gw, 'amt-1', { amount: '2001.00' });
    expect(soft.transaction).toMatchObject({ status: 'processor_declined', processorResponseCode: '2001', processorResponseType: 'soft_declined' });
    const hard = await sale(gw, 'amt-2', { amount: '2004.50' });
    expect(hard.transaction).toMatchObject({ status: 'processor_declined', processorResponseCode: '2004', processorResponseType: 'hard_declined' });
    const failed = await sale(gw, 'amt-3', { amount: '3000.00' });
    expect(failed.success).toBe(false);
    expect(failed.transaction).toMatchObject({ status: 'failed', processorResponseCode: '3000' });
    const rejected = await sale(gw, 'amt-4', { amount: '5001.00' });
    expect(rejected.transaction).toMatchObject({ status: 'gateway_rejected', gatewayRejectionReason: 'application_incomplete' });
    expect((await sale(gw, 'amt-5', { amount: '1999.99' })).success).toBe(true);

    sim.configure({ amountRules: false });
    expect((await sale(gw, 'amt-6', { amount: '2001.00' })).transaction.status).toBe('submitted_for_settlement');
  });

  it('answers validation failures with a 422 api-error-response and records nothing', async () => {
    const gw = gateway();
    const noMethod = await gw.transaction.sale({ amount: '10.00', orderId: 'v-1' });
    expect(noMethod.success).toBe(false);
    expect(noMethod.transaction).toBeUndefined();
    expect(errorsOn(noMethod, 'transaction', 'base')[0]).toMatchObject({ code: '91508', message: 'Cannot determine payment method.' });

    const bad = await gw.transaction.sale({ amount: '12.345', paymentMethodToken: 'pm_unknown', orderId: 'v-2' });
    expect(bad.errors.deepErrors().map((e) => e.code).sort()).toEqual(['81503', '91518']);
    expect(bad.message).toBe('Amount is an invalid format.\nPayment method token is invalid.');
    expect(errorsOn(bad, 'transaction', 'paymentMethodToken')[0]?.code).toBe('91518');

    const zero = await sale(gw, 'v-3', { amount: '0.00' });
    expect(errorsOn(zero, 'transaction', 'amount')[0]?.code).toBe('81531');
    const missing = await gw.transaction.sale({ paymentMethodToken: TOKEN, orderId: 'v-4' } as braintree.TransactionRequest);
    expect(errorsOn(missing, 'transaction', 'amount')[0]?.code).toBe('81502');

    sim.addCustomer('cust_empty');
    const empty = await gw.transaction.sale({ amount: '1.00', customerId: 'cust_empty', orderId: 'v-5' });
    expect(errorsOn(empty, 'transaction', 'customerId')[0]?.code).toBe('91511');
    const other = await gw.transaction.sale({ amount: '1.00', customerId: 'cust_empty', paymentMethodToken: TOKEN, orderId: 'v-6' });
    expect(errorsOn(other, 'transaction', 'base')[0]?.code).toBe('91516');

    expect(sim.sales()).toEqual([]);
    expect(sim.stats().validationErrors).toBe(6);
  });

  it('rejects a duplicate within the duplicate window when checking is on', async () => {
    sim.configure({ duplicateWindowMs: 30_000 });
    const gw = gateway();
    expect((await sale(gw, 'dup-1')).success).toBe(true);
    const dup = await sale(gw, 'dup-2');
    expect(dup.transaction).toMatchObject({ status: 'gateway_rejected', gatewayRejectionReason: 'duplicate' });
    sim.advanceClock(31_000);
    expect((await sale(gw, 'dup-3')).success).toBe(true);
  });
});

describe('vault through the SDK', () => {
  it('creates and finds customers and payment methods from fake nonces', async () => {
    const gw = gateway();
    const created = await gw.customer.create({ id: 'cust_sdk', firstName: 'Sdk', paymentMethodNonce: 'fake-valid-mastercard-nonce' });
    expect(created.success).toBe(true);
    expect(created.customer.id).toBe('cust_sdk');
    const first = created.customer.paymentMethods?.[0] as braintree.CreditCard;
    expect(first).toMatchObject({ cardType: 'MasterCard', default: true });

    // The SDK sends `token` (the gateway accepts it); @types/braintree leaves it out.
    const pm = await gw.paymentMethod.create({
      customerId: 'cust_sdk',
      paymentMethodNonce: 'fake-paypal-billing-agreement-nonce',
      token: 'pm_sdk_paypal',
      options: { makeDefault: true },
    } as braintree.PaymentMethodCreateRequest);
    expect(pm.success).toBe(true);
    expect(pm.paymentMethod).toMatchObject({ token: 'pm_sdk_paypal', default: true });

    const found = await gw.customer.find('cust_sdk');
    expect(found.paymentMethods?.map((m) => [m.token, (m as { default?: boolean }).default])).toEqual([
      [first.token, false],
      ['pm_sdk_paypal', true],
    ]);
    expect(sim.customer('cust_sdk')?.defaultPaymentMethodToken).toBe('pm_sdk_paypal');
    expect(((await gw.paymentMethod.find('pm_sdk_paypal')) as braintree.PayPalAccount).email).toBe('payer@example.com');

    const taken = await gw.customer.create({ id: 'cust_sdk' });
    expect(errorsOn(taken, 'customer', 'id')[0]?.code).toBe('91609');
    const unknownNonce = await gw.paymentMethod.create({ customerId: 'cust_sdk', paymentMethodNonce: 'not-a-nonce' });
    expect(unknownNonce.errors.deepErrors()[0]?.code).toBe('93108');

    await gw.paymentMethod.delete('pm_sdk_paypal');
    expect(sim.customer('cust_sdk')?.defaultPaymentMethodToken).toBe(first.token);
    expect((await rejection(gw.customer.find('cust_nobody'))).type).toBe('notFoundError');
  });
});

describe('Transaction.search and find', () => {
  it('finds sales by order id (declined ones too) and by id', async () => {
    sim.addPaymentMethod(CUSTOMER, 'pm_soft_decline');
    const gw = gateway();
    const declined = await sale(gw, 'srch-1', { paymentMethodToken: 'pm_soft_decline' });
    const approved = await sale(gw, 'srch-1');
    await sale(gw, 'srch-2');
    const found = await searchByOrderId(gw, 'srch-1');
    expect(found.map((t) => [t.id, t.status])).toEqual([
      [declined.transaction.id, 'processor_declined'],
      [approved.transaction.id, 'submitted_for_settlement'],
    ]);
    expect(await searchByOrderId(gw, 'srch-none')).toEqual([]);

    const byStatus: braintree.Transaction[] = [];
    for await (const t of gw.transaction.search((s) => {
      s.orderId().startsWith('srch-');
      s.status().in(['submitted_for_settlement']);
    })) {
      byStatus.push(t as braintree.Transaction);
    }
    expect(byStatus.map((t) => t.orderId).sort()).toEqual(['srch-1', 'srch-2']);

    const one = await gw.transaction.find(approved.transaction.id);
    expect(one).toMatchObject({ id: approved.transaction.id, orderId: 'srch-1', status: 'submitted_for_settlement', amount: '12.34' });
    expect((await rejection(gw.transaction.find('zzzzzzzz'))).type).toBe('notFoundError');
    expect(sim.stats().byOperation['transaction.search_ids']).toBe(3);
  });

  it('pages through more than one page of results (advanced_search_ids, then advanced_search per 50 ids)', async () => {
    const gw = gateway();
    for (let i = 0; i < 60; i++) await sale(gw, `page-${String(i).padStart(2, '0')}`, { amount: `${i + 1}.00` });
    const found: braintree.Transaction[] = [];
    for await (const t of gw.transaction.search((s) => s.orderId().startsWith('page-'))) found.push(t as braintree.Transaction);
    expect(found).toHaveLength(60);
    expect(new Set(found.map((t) => t.id)).size).toBe(60);
    expect(sim.stats().byOperation['transaction.search']).toBe(2);
  });

  it('answers an unsupported search criterion with an error, never with every transaction', async () => {
    await sale(gateway(), 'uns-1');
    const err = await rejection(
      (async () => {
        for await (const _ of gateway().transaction.search((s) => s.paypalPayerEmail().is('x'))) void _;
      })(),
    );
    expect(err.type).toBe('unexpectedError');
  });
});

describe('faults', () => {
  it('timeout_applied: the SDK times out, yet the sale is recorded once and found by order id', async () => {
    sim.addFault({ kind: 'timeout_applied', count: 1, match: { operation: 'transaction.sale', orderId: 'to-1' } });
    const gw = gateway(300);
    const started = Date.now();
    const err = await rejection(sale(gw, 'to-1'));
    expect(err.type).toBe('unexpectedError');
    expect(err.message).toBe('Request timed out');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(sim.sales({ orderId: 'to-1' })).toEqual([expect.objectContaining({ status: 'submitted_for_settlement', fault: 'timeout_applied' })]);

    const found = await searchByOrderId(gw, 'to-1');
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ orderId: 'to-1', status: 'submitted_for_settlement', amount: '12.34' });
    expect(sim.salesByOrderId().get('to-1')).toBe(1);
    expect(sim.stats().timeoutsHeld).toBe(1);
  });

  it('timeout_not_applied: the SDK times out and nothing is recorded', async () => {
    sim.addFault({ kind: 'timeout_not_applied', count: 1 });
    const gw = gateway(200);
    expect((await rejection(sale(gw, 'to-2'))).message).toBe('Request timed out');
    expect(await searchByOrderId(gw, 'to-2')).toEqual([]);
    expect(sim.sales()).toEqual([]);
  });

  it('reset_applied records the sale; reset_not_applied does not', async () => {
    const gw = gateway();
    sim.addFault({ kind: 'reset_applied', count: 1 });
    const applied = await rejection(sale(gw, 'rs-1'));
    expect(applied.type).toBe('unexpectedError');
    expect(applied.message).toMatch(/Unexpected request error/);
    sim.addFault({ kind: 'reset_not_applied', count: 1 });
    expect((await rejection(sale(gw, 'rs-2'))).type).toBe('unexpectedError');
    expect(sim.sales().map((s) => [s.orderId, s.fault])).toEqual([['rs-1', 'reset_applied']]);
    expect(sim.stats().connectionsReset).toBe(2);
  });

  it.each([
    [500, 'serverError'],
    [503, 'serviceUnavailableError'],
    [504, 'gatewayTimeoutError'],
  ])('server_error %i is thrown as %s and nothing is recorded', async (status, type) => {
    sim.addFault({ kind: 'server_error', status, count: 1 });
    expect((await rejection(sale(gateway(), `5xx-${status}`))).type).toBe(type);
    expect(sim.sales()).toEqual([]);
    expect(sim.stats().serverErrors).toBe(1);
  });

  it('rate_limit is thrown as tooManyRequestsError', async () => {
    sim.addFault({ kind: 'rate_limit', count: 1 });
    expect((await rejection(sale(gateway(), 'rl-1'))).type).toBe('tooManyRequestsError');
    expect((await sale(gateway(), 'rl-1')).success).toBe(true);
    expect(sim.stats().rateLimited).toBe(1);
  });

  it('slow delays the answer; saleLatencyMs delays every sale', async () => {
    sim.addFault({ kind: 'slow', delayMs: 150, count: 1 });
    let started = performance.now();
    expect((await sale(gateway(), 'slow-1')).success).toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    sim.configure({ saleLatencyMs: 100 });
    started = performance.now();
    await sale(gateway(), 'slow-2');
    expect(performance.now() - started).toBeGreaterThanOrEqual(90);
  });

  it('matches by order id, token, customer and amount, and honours count', async () => {
    const gw = gateway();
    sim.addFault({ kind: 'server_error', count: 1, match: { orderId: 'm-target' } });
    expect((await sale(gw, 'm-other')).success).toBe(true);
    expect((await rejection(sale(gw, 'm-target'))).type).toBe('serverError');
    expect((await sale(gw, 'm-target')).success).toBe(true);

    sim.addFault({ kind: 'server_error', match: { token: TOKEN, amount: '7.00', customerId: CUSTOMER } });
    expect((await sale(gw, 'm-amt', { amount: '8.00' })).success).toBe(true);
    expect((await rejection(sale(gw, 'm-amt', { amount: '7' }))).type).toBe('serverError');
    // The customer's default token is the token matched when only customerId is given.
    expect((await rejection(gw.transaction.sale({ amount: '7.00', customerId: CUSTOMER, orderId: 'm-cust' }))).type).toBe('serverError');
    sim.clearFaults();
    // Order-id matching applies to sales only: a search for that order id is not hit.
    sim.addFault({ kind: 'server_error', match: { orderId: 'm-target' } });
    expect(await searchByOrderId(gw, 'm-target')).toHaveLength(1);
  });

  it('processor_declined and gateway_rejected faults decide a sale, then let the next one through', async () => {
    const gw = gateway();
    sim.addFault({ kind: 'processor_declined', responseCode: '2001', count: 1, match: { orderId: 'retry-1' } });
    const first = await sale(gw, 'retry-1');
    expect(first.transaction).toMatchObject({ status: 'processor_declined', processorResponseCode: '2001', processorResponseType: 'soft_declined' });
    expect((await sale(gw, 'retry-1')).success).toBe(true);
    expect(sim.salesByOrderId().get('retry-1')).toBe(2);
    expect(sim.approvedSalesByOrderId().get('retry-1')).toBe(1);

    sim.addFault({ kind: 'processor_declined', responseCode: '2046', responseType: 'hard_declined', count: 1 });
    expect((await sale(gw, 'retry-2')).transaction.processorResponseType).toBe('hard_declined');
    sim.addFault({ kind: 'gateway_rejected', reason: 'risk_threshold', count: 1 });
    expect((await sale(gw, 'retry-3')).transaction.gatewayRejectionReason).toBe('risk_threshold');
  });

  it('replays probabilistic faults from a seed', async () => {
    async function pattern(): Promise<string> {
      const s = await startBraintreeSimulator({ seed: 42 });
      try {
        s.addCustomer(CUSTOMER);
        s.addPaymentMethod(CUSTOMER, TOKEN);
        s.addFault({ kind: 'server_error', probability: 0.5 });
        const gw = gatewayFor(s.gatewayTarget);
        let out = '';
        for (let i = 0; i < 16; i++) out += await sale(gw, `p-${i}`).then(() => 'o', () => 'x');
        return out;
      } finally {
        await s.stop();
      }
    }
    const a = await pattern();
    expect(a).toMatch(/o/);
    expect(a).toMatch(/x/);
    expect(await pattern()).toBe(a);
  });

  it('refuses wrong keys (401) and another merchant id (403) as the SDK maps them', async () => {
    const wrongKey = gatewayFor({ ...sim.gatewayTarget, privateKey: 'nope' });
    expect((await rejection(sale(wrongKey, 'auth-1'))).type).toBe('authenticationError');
    const wrongMerchant = gatewayFor({ ...sim.gatewayTarget, merchantId: 'someone_else' });
    expect((await rejection(sale(wrongMerchant, 'auth-2'))).type).toBe('authorizationError');
    expect(sim.sales()).toEqual([]);
  });

  it('answers XML, gzipped when asked, to the environment built from the six Environment arguments', async () => {
    const gw = new braintree.BraintreeGateway({
      environment: new braintree.Environment(...sim.environmentArgs),
      merchantId: sim.merchantId,
      publicKey: sim.publicKey,
      privateKey: sim.privateKey,
    });
    const { transaction } = await sale(gw, 'raw-1');
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const req = httpRequest(
        `${sim.url}/merchants/${sim.merchantId}/transactions/${transaction.id}`,
        { headers: { authorization: `Basic ${Buffer.from(`${sim.publicKey}:${sim.privateKey}`).toString('base64')}`, 'accept-encoding': 'gzip' } },
        (res) => {
          res.resume();
          resolve({ status: res.statusCode, ...res.headers });
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(headers).toMatchObject({ status: 200, 'content-type': 'application/xml; charset=utf-8', 'content-encoding': 'gzip' });
  });
});

describe('webhooks', () => {
  const subscription = { id: 'sub_acme', planId: 'business', price: '0.00', billingPeriodStartDate: '2026-04-01', billingPeriodEndDate: '2026-04-30' };

  it('builds bt_signature / bt_payload pairs that the SDK parses', async () => {
    const gw = gateway();
    const hook = sim.buildWebhook('subscription_charged_successfully', { subscription });
    expect(hook.bt_payload).toMatch(/^[A-Za-z0-9+/=\n]+$/);
    expect(hook.bt_signature.startsWith(`${sim.publicKey}|`)).toBe(true);
    const notification = await gw.webhookNotification.parse(hook.bt_signature, hook.bt_payload);
    expect(notification.kind).toBe('subscription_charged_successfully');
    expect(typeof notification.timestamp).toBe('string');
    expect(subscriptionOf(notification)).toMatchObject({
      id: 'sub_acme',
      status: 'Active',
      planId: 'business',
      billingPeriodStartDate: '2026-04-01',
      billingPeriodEndDate: '2026-04-30',
      currentBillingCycle: 1,
    });
    expect(subscriptionOf(notification).transactions).toHaveLength(1);
    expect(subscriptionOf(notification).transactions?.[0]?.status).toBe('submitted_for_settlement');

    const active = sim.buildWebhook('subscription_went_active', { subscription: { ...subscription, id: 'sub_new' } });
    const parsed = await gw.webhookNotification.parse(active.bt_signature, active.bt_payload.trim());
    expect(parsed.kind).toBe('subscription_went_active');
    expect(subscriptionOf(parsed).id).toBe('sub_new');
    expect(subscriptionOf(parsed).transactions).toEqual([]);
  });

  it('refuses a tampered payload and a pair signed with other keys', async () => {
    const gw = gateway();
    const hook = sim.buildWebhook('subscription_went_active', { subscription });
    const tampered = Buffer.from(Buffer.from(hook.bt_payload, 'base64').toString('utf8').replace('sub_acme', 'sub_evil')).toString('base64');
    expect((await rejection(gw.webhookNotification.parse(hook.bt_signature, tampered))).type).toBe('invalidSignatureError');
    const other = gatewayFor({ ...sim.gatewayTarget, privateKey: 'other_private' });
    expect((await rejection(other.webhookNotification.parse(hook.bt_signature, hook.bt_payload))).type).toBe('invalidSignatureError');
  });

  it('POSTs signed webhooks form-encoded to the configured URL and records deliveries', async () => {
    const result = await sim.sendWebhook('subscription_charged_successfully', { subscription });
    expect(result).toMatchObject({ status: 200, ok: true });
    const hook = await waitFor(() => received[0]);
    expect(hook.contentType).toBe('application/x-www-form-urlencoded');
    const notification = await gateway().webhookNotification.parse(hook.form.get('bt_signature')!, hook.form.get('bt_payload')!);
    expect(subscriptionOf(notification).billingPeriodEndDate).toBe('2026-04-30');
    expect(sim.webhookDeliveries()).toEqual([expect.objectContaining({ kind: 'subscription_charged_successfully', status: 200, ok: true })]);

    sim.configure({ webhookUrl: 'http://127.0.0.1:9/unreachable' });
    try {
      expect((await sim.sendWebhook('check', {})).ok).toBe(false);
      expect(sim.stats()).toMatchObject({ webhooksSent: 1, webhooksFailed: 1 });
    } finally {
      sim.configure({ webhookUrl: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks/braintree` });
    }
  });
});

describe('HTTP control API', () => {
  async function control<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${sim.url}/__simulator/${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as T;
  }

  it('drives customers, payment methods, faults, sales, settlement, webhooks, stats and reset over HTTP', async () => {
    expect((await control<{ id: string }>('POST', 'customers', { id: 'cust_http' })).id).toBe('cust_http');
    expect((await control<{ token: string }>('POST', 'payment_methods', { customer_id: 'cust_http', token: 'pm_http' })).token).toBe('pm_http');
    expect(await control('GET', 'customers/cust_http')).toMatchObject({ defaultPaymentMethodToken: 'pm_http' });
    const { data: rules } = await control<{ data: FaultRule[] }>('POST', 'faults', { kind: 'timeout_applied', count: 1, match: { orderId: 'http-1' } });
    expect(rules[0]).toMatchObject({ kind: 'timeout_applied', count: 1 });

    const gw = gateway(300);
    await rejection(gw.transaction.sale({ amount: '3.00', paymentMethodToken: 'pm_http', orderId: 'http-1', options: { submitForSettlement: true } }));
    await gw.transaction.sale({ amount: '4.00', paymentMethodToken: 'pm_http', orderId: 'http-2', options: { submitForSettlement: true } });

    const sales = await control<{ data: Array<{ id: string; orderId: string; status: string; fault: string | null }>; counts: Record<string, number>; approved_counts: Record<string, number> }>('GET', 'sales');
    expect(sales.data.map((s) => [s.orderId, s.status, s.fault])).toEqual([
      ['http-1', 'submitted_for_settlement', 'timeout_applied'],
      ['http-2', 'submitted_for_settlement', null],
    ]);
    expect(sales.counts).toEqual({ 'http-1': 1, 'http-2': 1 });
    expect(sales.approved_counts).toEqual({ 'http-1': 1, 'http-2': 1 });
    expect((await control<{ data: unknown[] }>('GET', 'sales?order_id=http-2')).data).toHaveLength(1);
    expect(await control('GET', `sales/${sales.data[0]!.id}`)).toMatchObject({ orderId: 'http-1' });
    expect((await control<{ settled: number }>('POST', 'settle', {})).settled).toBe(2);
    expect((await gw.transaction.find(sales.data[1]!.id)).status).toBe('settled');

    await control('POST', 'faults', [{ kind: 'rate_limit' }, { kind: 'slow', delayMs: 1 }]);
    expect((await control<{ data: unknown[] }>('GET', 'faults')).data).toHaveLength(2);
    await control('DELETE', 'faults');
    expect((await control<{ data: unknown[] }>('GET', 'faults')).data).toHaveLength(0);
    const bad = await fetch(`${sim.url}/__simulator/faults`, { method: 'POST', body: JSON.stringify({ kind: 'meteor_strike' }) });
    expect(bad.status).toBe(400);

    const sent = await control<{ ok: boolean; bt_signature: string; bt_payload: string }>('POST', 'webhooks', {
      kind: 'subscription_went_active',
      subscription: { id: 'sub_http', billingPeriodStartDate: '2026-05-01', billingPeriodEndDate: '2026-05-31' },
    });
    expect(sent.ok).toBe(true);
    expect(subscriptionOf(await gw.webhookNotification.parse(sent.bt_signature, sent.bt_payload)).id).toBe('sub_http');

    const config = await control<{ amount_rules: boolean; sale_latency_ms: number }>('POST', 'config', { amount_rules: false, sale_latency_ms: 5 });
    expect(config).toMatchObject({ amount_rules: false, sale_latency_ms: 5 });
    const stats = await control<{ sales: number; timeoutsHeld: number; faultsApplied: Record<string, number>; byStatus: Record<string, number> }>('GET', 'stats');
    expect(stats).toMatchObject({ sales: 2, timeoutsHeld: 1 });
    expect(stats.faultsApplied.timeout_applied).toBe(1);
    expect(stats.byStatus['201']).toBe(1);

    await control('POST', 'reset');
    expect((await control<{ data: unknown[] }>('GET', 'sales')).data).toHaveLength(0);
    // The vault survives a plain reset.
    expect((await gw.transaction.sale({ amount: '1.00', paymentMethodToken: 'pm_http', orderId: 'http-3' })).success).toBe(true);
    await control('POST', 'reset', { all: true });
    expect((await fetch(`${sim.url}/__simulator/customers/cust_http`)).status).toBe(404);
  });
});

describe('out of process', () => {
  it('starts from the command line, prints one JSON line and serves the SDK', async () => {
    const entry = fileURLToPath(new URL('./simulator.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', entry, '--port', '0', '--merchant-id', 'cli_merchant'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        let err = '';
        const timer = setTimeout(() => reject(new Error(`no output: ${err}`)), 20_000);
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString('utf8');
          const nl = out.indexOf('\n');
          if (nl !== -1) {
            clearTimeout(timer);
            resolve(out.slice(0, nl));
          }
        });
        child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
      });
      const info = JSON.parse(line) as { url: string; merchantId: string; publicKey: string; privateKey: string };
      expect(info.merchantId).toBe('cli_merchant');
      const gw = gatewayFor(info);
      const created = await gw.customer.create({ id: 'cli_customer', paymentMethodNonce: 'fake-valid-nonce' });
      const result = await gw.transaction.sale({ amount: '9.99', customerId: created.customer.id, orderId: 'cli-1', options: { submitForSettlement: true } });
      expect(result.success).toBe(true);
      const sales = (await (await fetch(`${info.url}/__simulator/sales`)).json()) as { counts: Record<string, number> };
      expect(sales.counts).toEqual({ 'cli-1': 1 });
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
    }
  });
});
