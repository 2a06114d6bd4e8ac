// Pointing the real braintree SDK at a base URL (the simulator, or anything speaking the gateway protocol).
// The SDK builds requests from Environment.server / .port / .ssl only (http.js), so a base URL's path is ignored.
import braintree from 'braintree';

/** `http://127.0.0.1:4010` -> an Environment whose six constructor arguments all point there. */
export function environmentFromBaseUrl(baseUrl: string): braintree.Environment {
  const url = new URL(baseUrl);
  const ssl = url.protocol === 'https:';
  const port = url.port || (ssl ? '443' : '80');
  return new braintree.Environment(url.hostname, port, `${url.protocol}//${url.host}`, ssl, url.hostname, port);
}

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
