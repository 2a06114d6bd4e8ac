// The alerts page's server side: the domain's changes and the presenter, kept out of the page's client bundle
// (channels.ts signs with node:crypto).
export { createChannel, sendTestNotification } from '../billing/alerts/channels';
export { createRule, setRuleEnabled } from '../billing/alerts/rules';
export { readAlertsPage } from '../presenters/alerts';
