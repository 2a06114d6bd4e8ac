// The one place Meterdesk names the Stripe API version. Every client it builds sends it (stripeClientConfig), so an
// SDK upgrade cannot silently change webhook and object shapes under us: bumping the SDK fails the version test
// (test/stripe-api-version.test.ts) until this line, the simulator's SIMULATOR_API_VERSION and the README move
// together, after reading Stripe's changelog for what changed between the two versions.
export const STRIPE_API_VERSION = '2026-10-28.endive';
