-- test/pgtap/include/step_up.sql: pg_temp.step_up_as(member) enrols the
-- member's second factor and steps this session up as that member, with
-- codes computed by oathtool (the OATH Toolkit's command, apart from the
-- liboath that checks them), run through COPY FROM PROGRAM: the suites run
-- as a superuser.  Monitors must step up before open_document shows them
-- PHI; the suites that open documents as monitors include this.
CREATE FUNCTION pg_temp.step_up_as(member name) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	uri text;
	secret text;
	t bigint;
	previous text;
	current text;
BEGIN
	EXECUTE format('SET ROLE %I', member);
	uri := trialvault.enroll_second_factor();
	RESET ROLE;
	secret := substring(uri FROM 'secret=([A-Z2-7]+)');
	-- Not in the last seconds of a 30-second step: the server must see the
	-- step the codes were computed for.
	WHILE extract(epoch FROM clock_timestamp())::bigint % 30 > 25 LOOP
		PERFORM pg_sleep(0.5);
	END LOOP;
	t := extract(epoch FROM clock_timestamp())::bigint;
	CREATE TEMP TABLE IF NOT EXISTS step_up_codes (code text);
	DELETE FROM step_up_codes;
	EXECUTE format('COPY step_up_codes FROM PROGRAM %L',
				   format('oathtool --totp -b -N @%s %s', t - 30, secret));
	SELECT code INTO previous FROM step_up_codes;
	DELETE FROM step_up_codes;
	EXECUTE format('COPY step_up_codes FROM PROGRAM %L',
				   format('oathtool --totp -b -N @%s %s', t, secret));
	SELECT code INTO current FROM step_up_codes;
	EXECUTE format('SET ROLE %I', member);
	PERFORM trialvault.confirm_second_factor(previous);
	PERFORM trialvault.step_up(current);
	RESET ROLE;
END
$$;
