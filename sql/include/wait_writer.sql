-- Wait (30 s at most) until the log writer runs: the regression cluster's
-- writer serves this database (trialvault.database) and connects within
-- seconds of its creation.  Included (\i) by the tests that need it.
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		EXIT WHEN (SELECT pid FROM trialvault.log_writer_status()) IS NOT NULL;
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
