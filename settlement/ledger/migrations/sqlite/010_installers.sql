-- Installer API keys and who issued each enrollment code (issue 18). Mirrored column for column
-- by migrations/postgres/010_installers.sql.

-- An installer key serves a list of customer accounts: it issues enrollment codes for them and
-- sees their gateways and meters, nothing of anyone else's. No foreign key to accounts: an
-- installer is often bound to a customer before the customer's first code creates the account.
CREATE TABLE api_key_customers (
  key_id  TEXT NOT NULL REFERENCES api_keys(id),
  account TEXT NOT NULL,
  PRIMARY KEY (key_id, account)
) WITHOUT ROWID;

-- Who issued each enrollment code through the API: the key id ('admin-key' for the configured
-- admin key). Codes from the CLI or earlier releases have no row. An installer lists the codes it
-- issued. A table of its own rather than a column, so the registry's code rows keep their shape.
CREATE TABLE enrollment_code_issuers (
  code_hash TEXT PRIMARY KEY REFERENCES enrollment_codes(code_hash),
  issued_by TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX enrollment_code_issuers_by ON enrollment_code_issuers (issued_by);

-- A meter's rejections are found through its gateways; samples are rate-limited, so the index
-- costs nothing on the ingest path.
CREATE INDEX rejections_gateway ON rejections (gateway, id);
