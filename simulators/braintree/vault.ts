// The simulator's vault: customers and their payment methods, set up directly by tests and the demo or created over
// the wire (`Customer.create` / `find` / `delete`, `PaymentMethod.create` / `find` / `delete`).
import { invalid, truthy, type Core, type Outcome, type RequestContext } from './exchange';
import { cardFromParams } from './cards';
import { CARD_BRANDS, nonceInfo, type NonceInfo } from './sandbox';
import type { CustomerDetails, CustomerView, PaymentMethodOptions } from './types';
import { isObject, str } from '../kit/server';
import { PATH_SAFE_ID, customerXml, paymentMethodXml, randomId, type CustomerRecord, type PaymentMethodRecord, type ValidationError } from './wire';

/** The contact details of `customer` params (first_name, last_name, email, company, phone, fax, website). */
export function customerDetails(c: Record<string, unknown>): CustomerDetails {
  const details: CustomerDetails = {};
  const fields = { firstName: 'first_name', lastName: 'last_name', email: 'email', company: 'company', phone: 'phone', fax: 'fax', website: 'website' } as const;
  for (const [key, wire] of Object.entries(fields) as Array<[keyof CustomerDetails, string]>) {
    const v = str(c[wire]);
    if (v !== undefined) details[key] = v;
  }
  return details;
}

const ONE_TIME_PAYPAL = (scope: string[]): ValidationError => ({ scope, attribute: 'base', code: '82902', message: 'Cannot vault one-time-use PayPal account.' });

export class Vault {
  readonly customers = new Map<string, CustomerRecord>();
  readonly methods = new Map<string, PaymentMethodRecord>();

  constructor(private readonly core: Core) {}

  clear(): void {
    this.customers.clear();
    this.methods.clear();
  }

  addCustomer(id?: string, details: CustomerDetails = {}): string {
    const customerId = id ?? randomId(9, '0123456789');
    if (!PATH_SAFE_ID.test(customerId)) throw new Error(`customer id ${JSON.stringify(customerId)} must match ${PATH_SAFE_ID} (Braintree's rule)`);
    const existing = this.customers.get(customerId);
    if (existing) {
      if (details.firstName !== undefined) existing.firstName = details.firstName;
      if (details.lastName !== undefined) existing.lastName = details.lastName;
      if (details.email !== undefined) existing.email = details.email;
      if (details.company !== undefined) existing.company = details.company;
      if (details.phone !== undefined) existing.phone = details.phone;
      if (details.fax !== undefined) existing.fax = details.fax;
      if (details.website !== undefined) existing.website = details.website;
      return customerId;
    }
    const now = this.core.now();
    this.customers.set(customerId, {
      id: customerId,
      firstName: details.firstName ?? null,
      lastName: details.lastName ?? null,
      email: details.email ?? null,
      company: details.company ?? null,
      phone: details.phone ?? null,
      fax: details.fax ?? null,
      website: details.website ?? null,
      createdAt: now,
      updatedAt: now,
      tokens: [],
      defaultToken: null,
    });
    return customerId;
  }

  addPaymentMethod(customerId: string, token?: string, opts: PaymentMethodOptions = {}): string {
    const pmToken = token ?? randomId(7);
    if (!PATH_SAFE_ID.test(pmToken)) throw new Error(`payment method token ${JSON.stringify(pmToken)} must match ${PATH_SAFE_ID} (Braintree's rule)`);
    const existing = this.methods.get(pmToken);
    if (existing && existing.customerId !== customerId) throw new Error(`payment method token ${pmToken} already belongs to customer ${existing.customerId}`);
    this.addCustomer(customerId);
    const customer = this.customers.get(customerId)!;
    if (!existing) {
      const kind = opts.kind ?? 'credit_card';
      const now = this.core.now();
      this.methods.set(pmToken, {
        token: pmToken,
        customerId,
        kind,
        card: kind === 'credit_card' ? { ...CARD_BRANDS.visa!, ...opts.card } : null,
        paypalEmail: kind === 'paypal_account' ? (opts.paypalEmail ?? 'payer@example.com') : null,
        createdAt: now,
        updatedAt: now,
      });
      customer.tokens.push(pmToken);
    }
    if (opts.makeDefault === true || (opts.makeDefault === undefined && customer.defaultToken === null)) customer.defaultToken = pmToken;
    return pmToken;
  }

  removePaymentMethod(token: string): boolean {
    const pm = this.methods.get(token);
    if (!pm) return false;
    this.methods.delete(token);
    const customer = this.customers.get(pm.customerId);
    if (customer) {
      customer.tokens = customer.tokens.filter((t) => t !== token);
      // Simulator choice: another vaulted method (the oldest) takes over as default, if any remains.
      if (customer.defaultToken === token) customer.defaultToken = customer.tokens[0] ?? null;
    }
    return true;
  }

  setDefaultPaymentMethod(token: string): void {
    const pm = this.methods.get(token);
    if (!pm) throw new Error(`no payment method ${token}`);
    this.customers.get(pm.customerId)!.defaultToken = token;
  }

  customer(id: string): CustomerView | undefined {
    const c = this.customers.get(id);
    if (!c) return undefined;
    return {
      id: c.id,
      firstName: c.firstName,
      lastName: c.lastName,
      email: c.email,
      company: c.company,
      defaultPaymentMethodToken: c.defaultToken,
      paymentMethods: c.tokens.map((t) => ({ token: t, kind: this.methods.get(t)!.kind, default: t === c.defaultToken })),
    };
  }

  methodsOf(c: CustomerRecord): PaymentMethodRecord[] {
    return c.tokens.map((t) => this.methods.get(t)!).filter(Boolean);
  }

  private deleteCustomer(id: string): boolean {
    const c = this.customers.get(id);
    if (!c) return false;
    for (const t of c.tokens) this.methods.delete(t);
    this.customers.delete(id);
    return true;
  }

  private vaultNonce(customerId: string, info: NonceInfo, token: string | undefined, makeDefault: boolean | undefined): string {
    const opts: PaymentMethodOptions = { kind: info.kind };
    if (info.card) opts.card = info.card;
    if (info.paypalEmail) opts.paypalEmail = info.paypalEmail;
    if (makeDefault !== undefined) opts.makeDefault = makeDefault;
    return this.addPaymentMethod(customerId, token, opts);
  }

  // ---------------------------------------------------------------- over the wire

  createCustomer(ctx: RequestContext): Outcome {
    const c = isObject(ctx.params.customer) ? ctx.params.customer : {};
    const customerError = (attribute: string, code: string, message: string): ValidationError => ({ scope: ['customer'], attribute, code, message });
    const id = str(c.id);
    const errors: ValidationError[] = [];
    if (id !== undefined) {
      if (id.length > 36) errors.push(customerError('id', '91612', 'Customer ID has a maximum length of 36 characters.'));
      else if (!PATH_SAFE_ID.test(id)) errors.push(customerError('id', '91610', 'Customer ID is invalid (use only letters, numbers, "-", and "_").'));
      else if (this.customers.has(id)) errors.push(customerError('id', '91609', 'Customer ID has already been taken.'));
    }
    const nonce = str(c.payment_method_nonce);
    const info = nonce === undefined ? undefined : nonceInfo(nonce);
    if (info === 'consumed') errors.push({ scope: ['customer', 'credit_card'], attribute: 'payment_method_nonce', code: '91731', message: 'Cannot use a payment_method_nonce more than once.' });
    if (info === 'unknown') errors.push({ scope: ['customer', 'credit_card'], attribute: 'payment_method_nonce', code: '91732', message: 'Unknown payment_method_nonce.' });
    if (info && typeof info === 'object' && info.oneTime) errors.push(ONE_TIME_PAYPAL(['customer', 'paypal_account']));
    const card = isObject(c.credit_card) ? cardFromParams(c.credit_card, ['customer', 'credit_card'], id ?? null) : undefined;
    if (card && !card.ok) errors.push(...card.errors);
    if (card?.ok && card.token !== undefined) {
      if (!PATH_SAFE_ID.test(card.token)) errors.push({ scope: ['customer', 'credit_card'], attribute: 'token', code: '91718', message: 'Token is invalid (use only letters, numbers, "-", and "_").' });
      else if (this.methods.has(card.token)) errors.push({ scope: ['customer', 'credit_card'], attribute: 'token', code: '91719', message: 'Token is already in use.' });
    }
    if (errors.length > 0) return invalid(this.core, errors, ctx.params);
    const customerId = this.addCustomer(id, customerDetails(c));
    if (card?.ok) {
      if (card.card.billingAddress) card.card.billingAddress.customerId = customerId;
      this.addPaymentMethod(customerId, card.token, { kind: 'credit_card', card: card.card, makeDefault: true });
    }
    if (info && typeof info === 'object') this.vaultNonce(customerId, info, undefined, true);
    const customer = this.customers.get(customerId)!;
    return { response: { status: 201, xml: customerXml(customer, this.methodsOf(customer)) } };
  }

  findCustomer(ctx: RequestContext): Outcome {
    const c = this.customers.get(ctx.pathId ?? '');
    return { response: c ? { status: 200, xml: customerXml(c, this.methodsOf(c)) } : { status: 404 } };
  }

  deleteCustomerOverWire(ctx: RequestContext): Outcome {
    return { response: { status: this.deleteCustomer(ctx.pathId ?? '') ? 200 : 404 } };
  }

  createPaymentMethod(ctx: RequestContext): Outcome {
    const p = isObject(ctx.params.payment_method) ? ctx.params.payment_method : {};
    const pmError = (attribute: string, code: string, message: string, scope = ['payment_method']): ValidationError => ({ scope, attribute, code, message });
    const customerId = str(p.customer_id);
    const nonce = str(p.payment_method_nonce);
    const token = str(p.token);
    const errors: ValidationError[] = [];
    if (customerId === undefined) errors.push(pmError('customer_id', '93104', 'Customer ID is required.'));
    else if (!this.customers.has(customerId)) errors.push(pmError('customer_id', '93105', 'Customer ID is invalid.'));
    let info: NonceInfo | undefined;
    if (nonce === undefined) errors.push(pmError('payment_method_nonce', '93103', 'A payment method nonce is required.'));
    else {
      const n = nonceInfo(nonce);
      if (n === 'consumed') errors.push(pmError('payment_method_nonce', '93107', 'Cannot use a payment_method_nonce more than once.'));
      else if (n === 'unknown') errors.push(pmError('payment_method_nonce', '93108', 'Unknown or expired payment_method_nonce.'));
      else if (n.oneTime) errors.push(ONE_TIME_PAYPAL(['paypal_account']));
      else info = n;
    }
    if (token !== undefined) {
      if (!PATH_SAFE_ID.test(token)) errors.push(pmError('token', '91718', 'Token is invalid (use only letters, numbers, "-", and "_").', ['credit_card']));
      else if (this.methods.has(token)) errors.push(pmError('token', '91719', 'Token is already in use.', ['credit_card']));
    }
    if (errors.length > 0 || customerId === undefined || !info) return invalid(this.core, errors, ctx.params);
    const options = isObject(p.options) ? p.options : {};
    const created = this.vaultNonce(customerId, info, token, options.make_default === undefined ? undefined : truthy(options.make_default));
    const pm = this.methods.get(created)!;
    return { response: { status: 201, xml: paymentMethodXml(pm, this.customers.get(customerId)!.defaultToken === created) } };
  }

  findPaymentMethod(ctx: RequestContext): Outcome {
    const pm = this.methods.get(ctx.pathId ?? '');
    return { response: pm ? { status: 200, xml: paymentMethodXml(pm, this.customers.get(pm.customerId)?.defaultToken === pm.token) } : { status: 404 } };
  }

  deletePaymentMethod(ctx: RequestContext): Outcome {
    return { response: { status: this.removePaymentMethod(ctx.pathId ?? '') ? 200 : 404 } };
  }
}
