/*-------------------------------------------------------------------------
 *
 * auth.c
 *		Authentication, first part: the password rules, through
 *		check_password_hook.
 *
 * PostgreSQL calls the hook for CREATE ROLE and ALTER ROLE ... PASSWORD, in
 * any database, with the password as the client sent it: in plain text, or
 * already hashed (a SCRAM or MD5 verifier, as psql's \password sends it),
 * whose strength cannot be known.  A plain-text password must have
 * trialvault.password_min_length characters or more, an upper-case and a
 * lower-case letter, a digit and another character, and must not contain
 * the role's name; a hashed one is refused unless
 * trialvault.password_accept_hashed is on, and then accepted with an event.
 * The settings can only be changed in the server's configuration, so that
 * a role cannot relax them for its own session before changing its own
 * password.
 *
 * Every refusal names the rules that failed, never the password, and is put
 * on record through the log writer; the statement that carried the
 * password is kept out of the server log with the error (errhidestmt).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/user.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "trialvault.h"

static int	tv_password_min_length = 8;
static bool tv_password_accept_hashed = false;
static check_password_hook_type prev_check_password_hook = NULL;

/* Whether haystack contains needle, ignoring ASCII case. */
static bool
tv_contains_ci(const char *haystack, const char *needle)
{
	size_t		n = strlen(needle);
	const char *p;

	if (n == 0)
		return false;
	for (p = haystack; *p; p++)
		if (pg_strncasecmp(p, needle, n) == 0)
			return true;
	return false;
}

static void
tv_check_password(const char *username, const char *shadow_pass,
				  PasswordType password_type, Datum validuntil_time,
				  bool validuntil_null)
{
	StringInfoData failed;
	const char *requester;
	const char *p;
	bool		upper = false,
				lower = false,
				digit = false,
				other = false;

	if (prev_check_password_hook)
		prev_check_password_hook(username, shadow_pass, password_type,
								 validuntil_time, validuntil_null);

	requester = GetUserNameFromId(GetUserId(), false);
	if (password_type != PASSWORD_TYPE_PLAINTEXT)
	{
		if (tv_password_accept_hashed)
		{
			tv_record_refusal("password_accepted_hashed", requester, NULL, NULL, 0,
							  psprintf("role %s: a password sent already hashed was accepted unchecked (trialvault.password_accept_hashed)",
									   username));
			return;
		}
		tv_record_refusal("password_refused", requester, NULL, NULL, 0,
						  psprintf("role %s: the password was sent already hashed", username));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the password for role \"%s\" was sent already hashed, so its strength cannot be checked", username),
				 errdetail("The attempt is recorded in the audit trail; the password is not."),
				 errhint("Send it in plain text over an encrypted connection (ALTER ROLE ... PASSWORD), or have a superuser set trialvault.password_accept_hashed."),
				 errhidestmt(true)));
	}

	initStringInfo(&failed);
	if (pg_mbstrlen(shadow_pass) < tv_password_min_length)
		appendStringInfo(&failed, ", shorter than %d characters", tv_password_min_length);
	for (p = shadow_pass; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c >= 'A' && c <= 'Z')
			upper = true;
		else if (c >= 'a' && c <= 'z')
			lower = true;
		else if (c >= '0' && c <= '9')
			digit = true;
		else
			other = true;
	}
	if (!upper)
		appendStringInfoString(&failed, ", no upper-case letter");
	if (!lower)
		appendStringInfoString(&failed, ", no lower-case letter");
	if (!digit)
		appendStringInfoString(&failed, ", no digit");
	if (!other)
		appendStringInfoString(&failed, ", no character other than letters and digits");
	if (tv_contains_ci(shadow_pass, username))
		appendStringInfoString(&failed, ", contains the role's name");
	if (failed.len == 0)
		return;

	tv_record_refusal("password_refused", requester, NULL, NULL, 0,
					  psprintf("role %s: %s", username, failed.data + 2));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the password for role \"%s\" breaks the password rules: %s", username, failed.data + 2),
			 errdetail("The attempt is recorded in the audit trail; the password is not."),
			 errhint("A password has at least %d characters, an upper-case and a lower-case letter, a digit and another character, and does not contain the role's name.",
					 tv_password_min_length),
			 errhidestmt(true)));
}

/*
 * tv_auth_init: the settings, and the hook.
 */
void
tv_auth_init(void)
{
	DefineCustomIntVariable("trialvault.password_min_length",
							"Fewest characters a password may have.",
							"Passwords also need an upper-case and a lower-case letter, a digit and another character, and must not contain the role's name.",
							&tv_password_min_length,
							8, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("trialvault.password_accept_hashed",
							 "Accept passwords sent already hashed (SCRAM or MD5), whose strength cannot be checked.",
							 "Off: they are refused. On: they are accepted, and each is an audit event.",
							 &tv_password_accept_hashed,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	prev_check_password_hook = check_password_hook;
	check_password_hook = tv_check_password;
}
