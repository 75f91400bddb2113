-- The extension's public surface: objects, comments, privileges.
BEGIN;
SELECT plan(22);

SELECT has_schema('trialvault');
SELECT has_extension('trialvault');
SELECT has_extension('pgcrypto');
SELECT has_function('trialvault', 'protect', ARRAY['regclass']);
SELECT has_function('trialvault', 'verify', ARRAY['regclass']);
SELECT has_function('trialvault', 'guard', ARRAY[]::text[]);
SELECT function_returns('trialvault', 'protect', ARRAY['regclass'], 'void');
SELECT function_returns('trialvault', 'guard', ARRAY[]::text[], 'trigger');
SELECT has_view('trialvault', 'protected_tables', 'protected_tables view exists');

-- verify() returns the columns an auditor relies on.
SELECT is(
	(SELECT proargnames::text FROM pg_proc WHERE oid = 'trialvault.verify(regclass)'::regprocedure),
	'{tbl,ok,rows_checked,first_bad,bad_rows,heads,head_digest,guard}',
	'verify() returns ok, rows_checked, first_bad, bad_rows, heads, head_digest, guard');

-- Every public object carries a comment.
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text FROM pg_proc p
	  WHERE p.pronamespace = 'trialvault'::regnamespace
	    AND obj_description(p.oid, 'pg_proc') IS NULL$$,
	'every trialvault function has a COMMENT');
SELECT is_empty(
	$$SELECT c.relname FROM pg_class c
	  WHERE c.relnamespace = 'trialvault'::regnamespace AND c.relkind IN ('r', 'v')
	    AND obj_description(c.oid, 'pg_class') IS NULL$$,
	'every trialvault table and view has a COMMENT');

-- Privileges: protect() is the owner's business, not PUBLIC's.
SELECT function_privs_are('trialvault', 'protect', ARRAY['regclass'], 'public', ARRAY[]::text[],
	'PUBLIC cannot execute protect()');
SELECT function_privs_are('trialvault', 'verify', ARRAY['regclass'], 'public', ARRAY['EXECUTE'],
	'PUBLIC may execute verify() (it still needs SELECT on the table)');
SELECT function_privs_are('trialvault', '_require_preload', ARRAY[]::text[], 'public', ARRAY[]::text[],
	'PUBLIC cannot execute _require_preload()');
SELECT schema_privs_are('trialvault', 'public', ARRAY['USAGE'], 'PUBLIC has only USAGE on schema trialvault');

-- The extension is not relocatable and lives in its own schema.
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'trialvault'), false,
	'extension is not relocatable');
SELECT is((SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'trialvault'),
	'trialvault', 'extension lives in schema trialvault');

-- The library is preloaded: the GUC is registered and reserved.
SELECT is(current_setting('trialvault.max_protected_tables'), '1000',
	'trialvault.max_protected_tables defaults to 1000');
SELECT throws_ok($$SET trialvault.no_such_setting = 'x'$$, '42602', NULL,
	'unknown trialvault.* settings are refused (prefix reserved)');
SELECT throws_ok($$SET trialvault.max_protected_tables = 5$$, '55P02', NULL,
	'max_protected_tables can only be set at server start');

-- Functions called with a wrong type are rejected by the parser, not the C code.
SELECT throws_ok($$SELECT trialvault.protect(true)$$, '42883', NULL,
	'protect(boolean) does not exist');

SELECT * FROM finish();
ROLLBACK;
