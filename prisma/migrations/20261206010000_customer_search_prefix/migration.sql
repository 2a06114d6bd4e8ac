-- Customer search by prefix of the external id, the name or the email (case-insensitive): one B-tree range per probe.
-- text_pattern_ops makes `LIKE 'prefix%'` an index range whatever the database's collation.
CREATE INDEX "customers_external_id_prefix_idx" ON "customers" (lower("external_id") text_pattern_ops);
CREATE INDEX "customers_name_prefix_idx" ON "customers" (lower("name") text_pattern_ops);
CREATE INDEX "customers_email_prefix_idx" ON "customers" (lower("email") text_pattern_ops);
