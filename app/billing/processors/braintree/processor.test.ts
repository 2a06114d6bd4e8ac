// How BraintreeProcessor classifies a declined sale, against Braintree's documented authorization responses
// (https://developer.paypal.com/braintree/docs/reference/general/processor-responses/authorization-responses,
// transcribed in simulators/braintree/processor-responses.ts) and through the real SDK against the simulator.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROCESSOR_RESPONSES, hardDeclineCodes } from '../../../../simulators/braintree/processor-responses';
import { startBraintreeSimulator, type BraintreeSimulator } from '../../../../simulators/braintree/simulator';
import { BraintreeProcessor, HARD_DECLINE_CODES, isHardDecline } from './processor';

describe('the documented decline ranges', () => {
  it('HARD_DECLINE_CODES is exactly the set Braintree documents as Hard', () => {
    expect([...HARD_DECLINE_CODES].sort()).toEqual(hardDeclineCodes().sort());
  });

  it('the codes it used to call hard are Soft in the documentation and retried (2057 restriction, 2048 invalid amount, 2099 authentication required ...)', () => {
    for (const code of ['2025', '2026', '2034', '2035', '2040', '2042', '2048', '2057', '2062', '2078', '2080', '2092', '2099', '2101', '2102', '2103', '2104', '2105', '2106']) {
      expect(PROCESSOR_RESPONSES.get(code)?.type, code).toBe('soft_declined');
      expect(isHardDecline(code, null), code).toBe(false);
    }
    // And the one it missed: 2052 Invalid Level III Purchase is Hard.
    expect(isHardDecline('2052', null)).toBe(true);
  });

  it('2000-2999 codes not listed are the generic Soft "Processor Declined"; 3000 is not a hard decline', () => {
    for (const code of ['2109', '2500', '2999', '3000']) expect(isHardDecline(code, null), code).toBe(false);
  });

  it("the gateway's processorResponseType wins over the code list", () => {
    expect(isHardDecline('2000', 'hard_declined')).toBe(true);
    expect(isHardDecline('2004', 'soft_declined')).toBe(false);
  });
});

describe('BraintreeProcessor.sale against the simulator (sandbox test amounts)', () => {
  let sim: BraintreeSimulator;
  let processor: BraintreeProcessor;

  beforeAll(async () => {
    sim = await startBraintreeSimulator();
    sim.addPaymentMethod('cust_1', 'pm_visa');
    processor = new BraintreeProcessor({ merchantId: sim.merchantId, publicKey: sim.publicKey, privateKey: sim.privateKey, apiBase: sim.url, timeoutMs: 5000 });
  });

  afterAll(async () => {
    await sim.stop();
  });

  const sale = (amountMinor: bigint, orderId: string) => processor.sale({ amountMinor, currency: 'usd', orderId, customerId: 'cust_1', paymentMethodToken: 'pm_visa' });

  it.each([
    [200000n, 'soft_declined', '2000'],
    [200400n, 'hard_declined', '2004'],
    [205200n, 'hard_declined', '2052'],
    [205700n, 'soft_declined', '2057'],
    [250000n, 'soft_declined', '2500'],
  ])('%s minor units -> %s (%s)', async (amountMinor, outcome, code) => {
    const result = await sale(amountMinor, `order_${code}`);
    expect(result.outcome).toBe(outcome);
    expect(result.outcome === 'soft_declined' || result.outcome === 'hard_declined' ? result.responseCode : null).toBe(code);
  });

  it('3000 (processor network unavailable: a `failed` sale) is an error to retry, not a decline and not ambiguous', async () => {
    const result = await sale(300000n, 'order_3000');
    expect(result.outcome).toBe('error');
    expect(result.outcome === 'error' ? result.message : '').toMatch(/Processor Network Unavailable/);
    expect(sim.sales({ orderId: 'order_3000' }).map((s) => [s.status, s.processorResponseCode])).toEqual([['failed', '3000']]);
  });
});
