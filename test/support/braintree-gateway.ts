// A real braintree SDK gateway pointed at a base URL (the simulator, or anything speaking the gateway protocol), for
// tests that talk to the simulator directly rather than through the processor.
import braintree from 'braintree';
import { environmentFromBaseUrl } from '../../app/billing/processors/braintree/processor';

export interface GatewayTarget {
  url: string;
  merchantId: string;
  publicKey: string;
  privateKey: string;
}

/**
 * A real BraintreeGateway for the target. `timeoutMs` sets `gateway.config.timeout` (the SDK's socket idle
 * timeout, 60 s by default), after which a call rejects with an `unexpectedError` "Request timed out".
 */
export function gatewayFor(target: GatewayTarget, opts: { timeoutMs?: number } = {}): braintree.BraintreeGateway {
  const gateway = new braintree.BraintreeGateway({
    environment: environmentFromBaseUrl(target.url),
    merchantId: target.merchantId,
    publicKey: target.publicKey,
    privateKey: target.privateKey,
  });
  if (opts.timeoutMs !== undefined) (gateway.config as { timeout: number }).timeout = opts.timeoutMs;
  return gateway;
}
