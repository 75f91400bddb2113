-- pg_temp.try(stmt): run one statement, and say what became of it:
-- 'allowed', or the SQLSTATE and message it was refused with.  Included
-- (\i) by the regression tests that try statements expected to fail.
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'allowed';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
