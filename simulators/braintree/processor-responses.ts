// Braintree's authorization responses: code, text and decline type, transcribed from
// https://developer.paypal.com/braintree/docs/reference/general/processor-responses/authorization-responses
// (1000-class approved; 2000-2999 processor declined, each Soft or Hard; 3000 a processor network problem, Soft;
// codes 2109-2999 not listed one by one are "Processor Declined", Soft). ASCII texts. The product keeps its own
// copy of the hard codes (app/billing/processors/braintree/processor.ts); a test holds the two together.
import type { ProcessorResponseType } from './wire';

export interface ProcessorResponse {
  text: string;
  type: ProcessorResponseType;
}

const S = 'soft_declined' as const;
const H = 'hard_declined' as const;

const DECLINES: Array<[code: number, text: string, type: typeof S | typeof H]> = [
  [2000, 'Do Not Honor', S],
  [2001, 'Insufficient Funds', S],
  [2002, 'Limit Exceeded', S],
  [2003, "Cardholder's Activity Limit Exceeded", S],
  [2004, 'Expired Card', H],
  [2005, 'Invalid Credit Card Number', H],
  [2006, 'Invalid Expiration Date', H],
  [2007, 'No Account', H],
  [2008, 'Card Account Length Error', H],
  [2009, 'No Such Issuer', H],
  [2010, 'Card Issuer Declined CVV', H],
  [2011, 'Voice Authorization Required', H],
  [2012, 'Processor Declined - Possible Lost Card', H],
  [2013, 'Processor Declined - Possible Stolen Card', H],
  [2014, 'Processor Declined - Fraud Suspected', H],
  [2015, 'Transaction Not Allowed', H],
  [2016, 'Duplicate Transaction', S],
  [2017, 'Cardholder Stopped Billing', H],
  [2018, 'Cardholder Stopped All Billing', H],
  [2019, 'Invalid Transaction', H],
  [2020, 'Violation', H],
  [2021, 'Security Violation', H],
  [2022, 'Declined - Updated Cardholder Available', H],
  [2023, 'Processor Does Not Support This Feature', H],
  [2024, 'Card Type Not Enabled', H],
  [2025, 'Set Up Error - Merchant', S],
  [2026, 'Invalid Merchant ID', S],
  [2027, 'Set Up Error - Amount', H],
  [2028, 'Set Up Error - Hierarchy', H],
  [2029, 'Set Up Error - Card', H],
  [2030, 'Set Up Error - Terminal', H],
  [2031, 'Encryption Error', H],
  [2032, 'Surcharge Not Permitted', H],
  [2033, 'Inconsistent Data', H],
  [2034, 'No Action Taken', S],
  [2035, 'Partial Approval For Amount In Group III Version', S],
  [2036, 'Authorization could not be found', H],
  [2037, 'Already Reversed', H],
  [2038, 'Processor Declined', S],
  [2039, 'Invalid Authorization Code', H],
  [2040, 'Invalid Store', S],
  [2041, 'Declined - Call For Approval', H],
  [2042, 'Invalid Client ID', S],
  [2043, 'Error - Do Not Retry, Call Issuer', H],
  [2044, 'Declined - Call Issuer', H],
  [2045, 'Invalid Merchant Number', H],
  [2046, 'Declined', S],
  [2047, 'Call Issuer. Pick Up Card', H],
  [2048, 'Invalid Amount', S],
  [2049, 'Invalid SKU Number', H],
  [2050, 'Invalid Credit Plan', H],
  [2051, 'Credit Card Number does not match method of payment', H],
  [2052, 'Invalid Level III Purchase', H],
  [2053, 'Card reported as lost or stolen', H],
  [2054, 'Reversal amount does not match authorization amount', H],
  [2055, 'Invalid Transaction Division Number', H],
  [2056, 'Transaction amount exceeds the transaction division limit', H],
  [2057, 'Issuer or Cardholder has put a restriction on the card', S],
  [2058, 'Merchant not Mastercard SecureCode enabled', H],
  [2059, 'Address Verification Failed', H],
  [2060, 'Address Verification and Card Security Code Failed', H],
  [2061, 'Invalid Transaction Data', H],
  [2062, 'Invalid Tax Amount', S],
  [2063, 'PayPal Business Account preference resulted in the transaction failing', H],
  [2064, 'Invalid Currency Code', H],
  [2065, 'Refund Time Limit Exceeded', H],
  [2066, 'PayPal Business Account Restricted', H],
  [2067, 'Authorization Expired', H],
  [2068, 'PayPal Business Account Locked or Closed', H],
  [2069, 'PayPal Blocking Duplicate Order IDs', H],
  [2070, 'PayPal Buyer Revoked Pre-Approved Payment Authorization', H],
  [2071, 'PayPal Payee Account Invalid Or Does Not Have a Confirmed Email', H],
  [2072, 'PayPal Payee Email Incorrectly Formatted', H],
  [2073, 'PayPal Validation Error', H],
  [2074, 'Funding Instrument In The PayPal Account Was Declined By The Processor Or Bank', H],
  [2075, 'Payer Account Is Locked Or Closed', H],
  [2076, 'Payer Cannot Pay For This Transaction With PayPal', H],
  [2077, 'Transaction Refused Due To PayPal Risk Model', H],
  [2078, 'Invalid Secure Payment Data', S],
  [2079, 'PayPal Merchant Account Configuration Error', H],
  [2080, 'Invalid user credentials', S],
  [2081, 'PayPal pending payments are not supported', H],
  [2082, 'PayPal Domestic Transaction Required', H],
  [2083, 'PayPal Phone Number Required', H],
  [2084, 'PayPal Tax Info Required', H],
  [2085, 'PayPal Payee Blocked Transaction', H],
  [2086, 'PayPal Transaction Limit Exceeded', H],
  [2087, 'PayPal reference transactions not enabled for your account', H],
  [2088, 'Currency not enabled for your PayPal seller account', H],
  [2089, 'PayPal payee email permission denied for this request', H],
  [2090, 'PayPal or Venmo account not configured to refund more than settled amount', H],
  [2091, 'Currency of this transaction must match currency of your PayPal account', H],
  [2092, 'No Data Found - Try Another Verification Method', S],
  [2093, 'PayPal payment method is invalid', H],
  [2094, 'PayPal payment has already been completed', H],
  [2095, 'PayPal refund is not allowed after partial refund', H],
  [2096, "PayPal buyer account can't be the same as the seller account", H],
  [2097, 'PayPal authorization amount limit exceeded', H],
  [2098, 'PayPal authorization count limit exceeded', H],
  [2099, 'Cardholder Authentication Required', S],
  [2100, 'PayPal channel initiated billing not enabled for your account', H],
  [2101, 'Additional authorization required', S],
  [2102, 'Incorrect PIN', S],
  [2103, 'PIN try exceeded', S],
  [2104, 'Offline Issuer Declined', S],
  [2105, 'Cannot Authorize at this time (Life cycle)', S],
  [2106, 'Cannot Authorize at this time (Policy)', S],
  [2107, 'Card Not Activated', H],
  [2108, 'Closed Card', H],
];

export const PROCESSOR_RESPONSES: ReadonlyMap<string, ProcessorResponse> = new Map<string, ProcessorResponse>([
  ['1000', { text: 'Approved', type: 'approved' }],
  ['1001', { text: 'Approved, check customer ID', type: 'approved' }],
  ['1002', { text: 'Processed', type: 'approved' }],
  ['1003', { text: 'Approved with Risk', type: 'approved' }],
  ['1004', { text: 'Approved for Partial Amount', type: 'approved' }],
  ...DECLINES.map(([code, text, type]): [string, ProcessorResponse] => [String(code), { text, type }]),
  ['3000', { text: 'Processor Network Unavailable - Try Again', type: 'soft_declined' }],
]);

/** The response for a code: listed ones as documented; any other 2000-2999 code is a soft "Processor Declined". */
export function processorResponse(code: string): ProcessorResponse {
  return PROCESSOR_RESPONSES.get(code) ?? { text: 'Processor Declined', type: 'soft_declined' };
}

/** The documented hard declines (what a retry of the same card cannot cure). */
export function hardDeclineCodes(): string[] {
  return [...PROCESSOR_RESPONSES].filter(([, r]) => r.type === 'hard_declined').map(([code]) => code);
}
