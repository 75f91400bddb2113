-- trialvault 0.10 -> 0.11: verify only the rows added since a signed digest.
\echo Use "ALTER EXTENSION trialvault UPDATE TO '0.11'" to load this file. \quit

CREATE FUNCTION trialvault.verify(tbl regclass, since text,
	OUT ok boolean,
	OUT rows_checked bigint,
	OUT first_bad text,
	OUT bad_rows bigint,
	OUT heads bigint,
	OUT head_digest bytea,
	OUT guard text,
	OUT rows_not_rehashed bigint,
	OUT scope text)
	LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_verify_since';
COMMENT ON FUNCTION trialvault.verify(regclass, text) IS
	'Verifies only the rows added since a signed digest (trialvault.signed_digest(), version 2): each rehashed and its links checked down to the rows the digest covered, whose heads must be there unchanged. rows_checked counts the new rows; the rows_not_rehashed rows the digest covered were not rehashed, as scope says: a full verify(tbl) does that. heads and head_digest are those of the whole chain now.';

-- Seal what this update created or changed (see catalog_seal).
SELECT trialvault._seal_catalog();
