// Braintree through the real `braintree` SDK: one `transaction.sale` per window charge (submitted for
// settlement), `transaction.search` by order id after an ambiguous failure, and webhook verification. Every
// answer, thrown or returned, becomes a typed outcome; retrying is the settlement's decision, never made here.
import braintree from 'braintree';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { formatMinor, parseMinor } from '../../windows/invoice-math';
import type { ChargeProcessor, FindSaleResult, FoundSale, SaleRequest, SaleResult } from '../types';

export interface BraintreeProcessorConfig {
  merchantId: string;
  publicKey: string;
  privateKey: string;
  /** A gateway-compatible base URL (the simulator); absent = Braintree's own `environment`. Scheme, host, port only. */
  apiBase?: string;
  /** Used when `apiBase` is absent. Default sandbox. */
  environment?: 'sandbox' | 'production';
  /**
   * Per HTTP call. Braintree's gateway gives up on a sale after 60 s, so the default (65 s) waits that out:
   * a shorter timeout only makes more outcomes ambiguous.
   */
  timeoutMs?: number;
  /** Currency (ISO, any case) -> merchant account id; the currency of a sale is its merchant account's. */
  merchantAccountIds?: Record<string, string>;
}

/**
 * The authorization responses Braintree documents as Hard declines (retrying the same payment method will likely not
 * succeed): https://developer.paypal.com/braintree/docs/reference/general/processor-responses/authorization-responses.
 * Every other 2000-2999 code is Soft there (2109-2999 are the generic, Soft "Processor Declined"), and 3000
 * (processor network unavailable) arrives as a `failed` sale, retried as an error. A transaction that carries
 * `processorResponseType` is classified by it instead (isHardDecline).
 */
export const HARD_DECLINE_CODES: ReadonlySet<string> = new Set([
  '2004', '2005', '2006', '2007', '2008', '2009', '2010', '2011', '2012', '2013', '2014', '2015', '2017', '2018',
  '2019', '2020', '2021', '2022', '2023', '2024', '2027', '2028', '2029', '2030', '2031', '2032', '2033', '2036',
  '2037', '2039', '2041', '2043', '2044', '2045', '2047', '2049', '2050', '2051', '2052', '2053', '2054', '2055',
  '2056', '2058', '2059', '2060', '2061', '2063', '2064', '2065', '2066', '2067', '2068', '2069', '2070', '2071',
  '2072', '2073', '2074', '2075', '2076', '2077', '2079', '2081', '2082', '2083', '2084', '2085', '2086', '2087',
  '2088', '2089', '2090', '2091', '2093', '2094', '2095', '2096', '2097', '2098', '2100', '2107', '2108',
]);

/** A processor decline is hard when the gateway says so (`processorResponseType`), else when its code is documented hard. */
export function isHardDecline(code: string, responseType: string | null | undefined): boolean {
  return responseType ? responseType === 'hard_declined' : HARD_DECLINE_CODES.has(code);
}

/** "Duplicate Transaction": the issuer saw this sale already, so ours may exist. */
const DUPLICATE_DECLINE = '2016';

/** Statuses of a transaction that took (or will take) the money. */
export const APPROVED_SALE_STATUSES: ReadonlySet<string> = new Set([
  'authorized',
  'authorizing',
  'submitted_for_settlement',
  'settling',
  'settlement_pending',
  'settled',
  'settlement_confirmed',
]);

const tracer = trace.getTracer('meterdesk.braintree');

type Tx = braintree.Transaction & { processorResponseType?: string; gatewayRejectionReason?: string; orderId?: string; createdAt?: string | Date };

export class BraintreeProcessor implements ChargeProcessor {
  readonly processor = 'braintree' as const;
  readonly gateway: braintree.BraintreeGateway;
  private readonly merchantAccountIds: Map<string, string>;

  constructor(config: BraintreeProcessorConfig) {
    const environment = config.apiBase
      ? environmentFromBaseUrl(config.apiBase)
      : config.environment === 'production'
        ? braintree.Environment.Production
        : braintree.Environment.Sandbox;
    this.gateway = new braintree.BraintreeGateway({
      environment,
      merchantId: config.merchantId,
      publicKey: config.publicKey,
      privateKey: config.privateKey,
    });
    // The SDK has no constructor option for it; its http layer reads config.timeout on every call.
    (this.gateway.config as { timeout: number }).timeout = config.timeoutMs ?? 65_000;
    this.merchantAccountIds = new Map(Object.entries(config.merchantAccountIds ?? {}).map(([c, id]) => [c.toLowerCase(), id]));
  }

  async sale(request: SaleRequest): Promise<SaleResult> {
    return tracer.startActiveSpan('BraintreeProcessor.sale', async (span): Promise<SaleResult> => {
      try {
        const result = await this.saleOnce(request);
        span.setAttribute('meterdesk.sale.outcome', result.outcome);
        if (result.outcome === 'error' || result.outcome === 'ambiguous') span.setStatus({ code: SpanStatusCode.ERROR, message: result.code });
        return result;
      } finally {
        span.end();
      }
    });
  }

  private async saleOnce(request: SaleRequest): Promise<SaleResult> {
    if (request.amountMinor <= 0n) {
      return { outcome: 'validation_error', code: 'amount', message: 'a sale needs a positive amount', response: null };
    }
    const merchantAccountId = this.merchantAccountIds.get(request.currency.toLowerCase());
    const attributes: braintree.TransactionRequest = {
      amount: formatMinor(request.amountMinor, request.currency),
      orderId: request.orderId,
      paymentMethodToken: request.paymentMethodToken,
      customerId: request.customerId,
      options: { submitForSettlement: true },
      ...(merchantAccountId ? { merchantAccountId } : {}),
    };
    let result: braintree.ValidatedResponse<braintree.Transaction>;
    try {
      result = await this.gateway.transaction.sale(attributes);
    } catch (error) {
      return classifyThrown(error);
    }
    const tx = result.transaction as Tx | undefined;
    const response = summarize(result);
    if (result.success && tx) {
      return { outcome: 'succeeded', transactionId: tx.id, status: tx.status, responseCode: tx.processorResponseCode ?? null, response };
    }
    if (tx) {
      if (tx.status === 'processor_declined') {
        const code = tx.processorResponseCode ?? '';
        const message = tx.processorResponseText || result.message || 'processor declined';
        if (code === DUPLICATE_DECLINE) return { outcome: 'ambiguous', code: `processor_declined_${code}`, message: `${message}: an earlier sale may exist`, error: response };
        const hard = isHardDecline(code, tx.processorResponseType);
        return { outcome: hard ? 'hard_declined' : 'soft_declined', transactionId: tx.id, status: tx.status, responseCode: code, message, response };
      }
      if (tx.status === 'gateway_rejected') {
        const reason = tx.gatewayRejectionReason ?? 'unknown';
        if (reason === 'duplicate') return { outcome: 'ambiguous', code: 'gateway_rejected_duplicate', message: 'Braintree rejected the sale as a duplicate: an earlier sale may exist', error: response };
        return { outcome: 'gateway_rejected', transactionId: tx.id, reason, message: result.message || `gateway rejected: ${reason}`, response };
      }
      // `failed`: the processor could not be reached; nothing was charged, another try may work.
      return { outcome: 'error', code: `transaction_${tx.status}`, message: result.message || `transaction ${tx.status}`, error: response };
    }
    const first = result.errors?.deepErrors?.()[0];
    return { outcome: 'validation_error', code: first?.code ?? 'validation_error', message: first?.message ?? result.message ?? 'validation error', response };
  }

  async findByOrderId(orderId: string): Promise<FindSaleResult> {
    return tracer.startActiveSpan('BraintreeProcessor.findByOrderId', async (span): Promise<FindSaleResult> => {
      try {
        const found = await new Promise<Tx[]>((resolve, reject) => {
          const out: Tx[] = [];
          const stream = this.gateway.transaction.search((search) => {
            search.orderId().is(orderId);
          });
          stream.on('data', (tx: Tx) => out.push(tx));
          stream.on('error', reject);
          stream.on('end', () => resolve(out));
        });
        // The search is exact on Braintree's side too, but the order id is the key to money: check it here.
        const sales = found
          .filter((tx) => tx.orderId === orderId)
          .map(toFoundSale)
          .sort((a, b) => (a.createdAt?.getTime() ?? 0) - (b.createdAt?.getTime() ?? 0));
        span.setAttribute('meterdesk.sale.found', sales.length);
        return sales.length > 0 ? { outcome: 'found', sales } : { outcome: 'not_found' };
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR });
        const c = classifyThrown(error);
        return { outcome: 'error', code: c.code, message: c.message, error };
      } finally {
        span.end();
      }
    });
  }

  /** Answers Braintree's destination check (`GET ?bt_challenge=...`): `<public key>|<signature>`; throws on a bad challenge. */
  verifyChallenge(challenge: string): string {
    // The SDK has it (webhook_notification_gateway.js); @types/braintree does not declare it.
    const gateway = this.gateway.webhookNotification as unknown as { verify(challenge: string): string };
    return gateway.verify(challenge);
  }

  /** Verifies a webhook (bt_signature / bt_payload) with the SDK; throws the SDK's InvalidSignatureError. */
  parseWebhook(signature: string, payload: string): Promise<braintree.WebhookNotification> {
    return this.gateway.webhookNotification.parse(signature, payload);
  }
}

export function createBraintreeProcessor(config: BraintreeProcessorConfig): BraintreeProcessor {
  return new BraintreeProcessor(config);
}

/** `http://127.0.0.1:4010` -> an Environment whose six constructor arguments all point there. */
export function environmentFromBaseUrl(baseUrl: string): braintree.Environment {
  const url = new URL(baseUrl);
  const ssl = url.protocol === 'https:';
  const port = url.port || (ssl ? '443' : '80');
  return new braintree.Environment(url.hostname, port, `${url.protocol}//${url.host}`, ssl, url.hostname, port);
}

function toFoundSale(tx: Tx): FoundSale {
  return {
    transactionId: tx.id,
    orderId: tx.orderId ?? '',
    status: tx.status,
    amountMinor: parseMinor(String(tx.amount ?? '0'), tx.currencyIsoCode ?? 'usd'),
    currency: (tx.currencyIsoCode ?? '').toLowerCase(),
    responseCode: tx.processorResponseCode ?? null,
    responseType: tx.processorResponseType ?? null,
    gatewayRejectionReason: tx.gatewayRejectionReason ?? null,
    createdAt: tx.createdAt ? new Date(tx.createdAt) : null,
  };
}


// Errors thrown before the request reached the gateway: nothing can have been applied.
const NOT_SENT = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ERR_INVALID_URL|certificate/i;
const NOT_APPLIED_TYPES = new Set(['authenticationError', 'authorizationError', 'tooManyRequestsError', 'upgradeRequired', 'notFoundError', 'invalidKeysError']);

/**
 * A thrown SDK error as an outcome. 401/403/404/426/429 and connection failures before sending are `error` (not
 * applied); timeouts, 5xx, resets and unreadable answers are `ambiguous` (the gateway may have applied the sale).
 */
export function classifyThrown(error: unknown): Extract<SaleResult, { outcome: 'error' | 'ambiguous' }> {
  const e = error as { type?: string; name?: string; message?: string } | null;
  const type = e?.type ?? e?.name ?? 'error';
  const message = (e?.message ?? String(error)).split('\n')[0]!.slice(0, 300);
  if (NOT_APPLIED_TYPES.has(type)) return { outcome: 'error', code: type, message, error };
  if (type === 'unexpectedError') {
    if (/timed out/i.test(message)) return { outcome: 'ambiguous', code: 'timeout', message, error };
    const http = /Unexpected HTTP response: (\d{3})/.exec(message);
    if (http) return Number(http[1]) >= 500 ? { outcome: 'ambiguous', code: `http_${http[1]}`, message, error } : { outcome: 'error', code: `http_${http[1]}`, message, error };
    if (/request error/i.test(message) && NOT_SENT.test(message)) return { outcome: 'error', code: 'connection_refused', message, error };
    return { outcome: 'ambiguous', code: /ECONNRESET|hang up|EPIPE/i.test(message) ? 'connection_reset' : 'unexpected', message, error };
  }
  // serverError, serviceUnavailableError, gatewayTimeoutError, requestTimeoutError, parse failures, anything else.
  return { outcome: 'ambiguous', code: type, message, error };
}

/** A small, loggable view of the SDK's answer (never the whole gateway object). */
function summarize(result: braintree.ValidatedResponse<braintree.Transaction>): Record<string, unknown> {
  const tx = result.transaction as Tx | undefined;
  return {
    success: result.success,
    message: result.message ?? null,
    transaction: tx
      ? {
          id: tx.id,
          status: tx.status,
          amount: tx.amount,
          currency: tx.currencyIsoCode,
          order_id: tx.orderId ?? null,
          processor_response_code: tx.processorResponseCode ?? null,
          processor_response_text: tx.processorResponseText ?? null,
          processor_response_type: tx.processorResponseType ?? null,
          gateway_rejection_reason: tx.gatewayRejectionReason ?? null,
        }
      : null,
    errors: result.success ? [] : (result.errors?.deepErrors?.() ?? []).map((d) => ({ code: d.code, attribute: d.attribute, message: d.message })),
  };
}
