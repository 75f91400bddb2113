/*-------------------------------------------------------------------------
 *
 * trialvault.h
 *		Declarations shared by the trialvault extension's components.
 *
 * trialvault makes ordinary tables insert-only and hash-chained, keeps
 * clinical-trial documents with XML metadata, encrypts what holds PHI per
 * study, and logs every decryption.  One C file per component:
 *
 *	trialvault.c	module load: each component's Init, shared memory
 *	canon.c			canonical, dump-stable encoding of a row's values
 *	chain.c			the chain columns, the per-table chain state in shared
 *					memory, hashing on INSERT, and the transaction callbacks
 *					that publish it
 *	guard.c			the guard trigger, what a protected table looks like,
 *					ON CONFLICT and drops
 *	ddlguard.c		deny by default: what DDL may do to protected tables,
 *					their types and the extension's own objects
 *	protect.c		trialvault.protect(): turning a table into a protected one
 *	verify.c		trialvault.verify(): recomputing and checking a chain
 *	toastscan.c		reading out-of-line values in storage order, for verify()
 *	catalog.c		the extension's own objects described and sealed, for
 *					verify() and the upgrade test
 *	owner.c			running as the extension's owner for the real caller
 *					(every management function), SPI and kept plans
 *	rules.c			the access rules, each written once: who may open,
 *					load, list and read what in a study
 *	crypto.c		master key, per-study data keys, field encryption
 *	factor.c		the second factor: one-time codes and the step-up
 *	certify.c		certification: members' signing keys, the statement
 *					they sign, signature checks, the server's key and its
 *					countersignature, verify_document and certificates
 *	digest.c		signed digests of protected tables
 *	auth.c			authentication: the password rules
 *	access.c		open_document and emergency_open
 *	load.c			load_document
 *	session.c		the session's open study, and what the views ask about
 *					the current user in it
 *	xmldoc.c, xmlschema.c, xmlscreen.c, c14n.c, xmlextract.c, inspect.c
 *					XML metadata (see xmlmeta.h): safe parsing, XSD
 *					validation, PHI screening, the canonical form, typed
 *					extraction, and inspect_metadata() doing it all in one
 *					pass for document loading
 *	../worker/logwriter.c	the log writer background worker and its queue
 *	../worker/shipper.c		encrypted incremental backups: the launcher, the
 *					shippers and backup_status
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRIALVAULT_H
#define TRIALVAULT_H

#include "postgres.h"

#include <openssl/evp.h>

#include "access/htup.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

#define TV_HASH_LEN 32

/* Names of the chain columns protect() adds to every protected table. */
#define TV_COL_SEQ			"tv_seq"
#define TV_COL_PREV_SEQS	"tv_prev_seqs"
#define TV_COL_PREV_HASH	"tv_prev_hash"
#define TV_COL_HASH			"tv_hash"

/* Names of the guard triggers; the chain trigger must sort last (see guard.c). */
#define TV_TRIG_STMT		"trialvault_guard"
#define TV_TRIG_ROW			"trialvault_guard_row"
#define TV_TRIG_CHAIN		"zz_trialvault_chain"

/* C symbol of the one trigger function all guard triggers call. */
#define TV_GUARD_SYMBOL		"tv_guard"

/* Attribute numbers of the chain columns in one relation. */
typedef struct TvChainCols
{
	AttrNumber	seq;
	AttrNumber	prev_seqs;
	AttrNumber	prev_hash;
	AttrNumber	hash;
} TvChainCols;

/* One end of a chain: a committed row no committed row refers to yet. */
typedef struct TvHead
{
	int64		seq;
	uint8		hash[TV_HASH_LEN];
} TvHead;

/*
 * tv_name_datum: a parameter of type name as SPI expects it, NAMEDATALEN
 * bytes: a short C string would be read past its end (buf must live as
 * long as the Datum is used).
 */
static inline Datum
tv_name_datum(NameData *buf, const char *s)
{
	namestrcpy(buf, s);
	return NameGetDatum(buf);
}

/* trialvault.c */
extern bool tv_loaded_at_preload;
extern void tv_require_preload(void);
extern void tv_require_schema(void);

/* canon.c */
#define TV_SHA_CONTENT	0
#define TV_SHA_SMALL	1
#define TV_SHA_NCTX		2
extern EVP_MD_CTX *tv_sha_begin(int which);
extern void tv_sha_update(EVP_MD_CTX *ctx, const void *data, size_t len);
extern void tv_sha_end(EVP_MD_CTX *ctx, uint8 *out);
typedef enum TvDigestMode
{
	TV_DIGEST_VERIFY,			/* the current encoding, for checking a row */
	TV_DIGEST_LEGACY,			/* the 0.5 encoding, for checking a row */
	TV_DIGEST_INSERT			/* the current encoding; a mistyped value is an error */
} TvDigestMode;
extern void tv_row_content_digest(TupleDesc tupdesc, HeapTuple tuple,
								  const TvChainCols *cols, uint8 *digest,
								  TvDigestMode mode);
typedef struct TvRowColumn
{
	AttrNumber	attnum;
	Oid			typid;
	char	   *name;
	uint32		namelen;
} TvRowColumn;
typedef struct TvToastScan TvToastScan;

typedef struct TvRowLayout
{
	int			ncols;
	TvRowColumn *cols;			/* the hashed columns, in the encoding's order */
	TvToastScan *toast;			/* out-of-line values read in step, or NULL */
} TvRowLayout;
extern TvRowLayout *tv_row_layout(TupleDesc tupdesc, const TvChainCols *cols);
extern void tv_row_values_digest(const TvRowLayout *layout, const Datum *values,
								 const bool *isnull, uint8 *digest,
								 TvDigestMode mode);

/* toastscan.c */
extern TvToastScan *tv_toast_scan_begin(Relation rel, Snapshot snap, bool find_start);
extern struct varlena *tv_toast_scan_value(TvToastScan *ts, struct varlena *attr);
extern void tv_toast_scan_end(TvToastScan *ts, uint64 *taken, uint64 *patched,
							  uint64 *missed);

/* chain.c */
extern bool tv_find_chain_cols(TupleDesc tupdesc, TvChainCols *cols);
extern bool tv_is_chain_column(const char *attname);
extern bytea *tv_hash_bytea(const uint8 *hash);
extern Size tv_chain_shmem_size(void);
extern void tv_chain_shmem_init(void);
extern void tv_chain_init(void);
extern HeapTuple tv_chain_insert(Relation rel, HeapTuple tuple);
extern void tv_chain_forget(Oid relid);
extern bool tv_chain_generation(Oid relid, uint64 *gen);
extern int64 tv_chain_floor(Oid relid);
extern bool tv_tables_generation(const char *const *tables, int ntables, uint64 *gens);
extern bool tv_get_prev_seqs(TupleTableSlot *slot, AttrNumber att,
							 int64 **seqs, int *n);
extern void tv_prev_digest(const TvHead *refs, int nrefs, uint8 *digest);
extern int	tv_head_cmp(const void *a, const void *b);
extern void tv_row_hash(int64 seq, const uint8 *prev_digest,
						const uint8 *content_digest, uint8 *hash);
extern bool tv_row_hash_matches(TupleDesc tupdesc, HeapTuple tuple,
								const TvChainCols *cols, int64 seq,
								const uint8 *prev_digest, const uint8 *stored_hash);
extern bool tv_row_values_match(const TvRowLayout *layout, const Datum *values,
								const bool *isnull, int64 seq,
								const uint8 *prev_digest, const uint8 *stored_hash);

/* inspect.c: metadata screened, validated and hashed for document loading */
typedef struct TvInspection
{
	char	   *schema;			/* the schema checked against; NULL: none */
	int32		version;		/* its version */
	uint8		hash[TV_HASH_LEN];	/* SHA-256 of the canonical form */
} TvInspection;

extern void tv_inspect(text *study, struct varlena *doc, text *schema_name,
					   TvInspection *out);

/* xmldoc.c (the XML metadata files: xmlmeta.h) */
extern int	tv_max_metadata_size;
extern void tv_xmldoc_init(void);

/* crypto.c */
extern void tv_crypto_init(void);
extern bytea *tv_encrypt_field(int32 study_id, const char *study, int64 doc_id,
							   const char *field, const uint8 *data, Size len);
extern bytea *tv_decrypt_field(int32 study_id, const char *study, int64 doc_id,
							   const char *field, bytea *ct,
							   const char **reason, const char **problem);
extern bytea *tv_wrap_secret(const char *purpose, int64 id, const char *owner,
							 const uint8 *secret, int len, const char **master_id);
extern uint8 *tv_unwrap_secret(const char *purpose, int64 id, const char *owner,
							   bytea *wrapped, const char *master_id, int *len,
							   const char **problem);

/* factor.c: the second factor */
extern int	tv_step_up_duration;
extern int	tv_step_up_max_failures;
extern int	tv_activation_ttl;
extern void tv_factor_init(void);
extern Size tv_factor_shmem_size(void);
extern void tv_factor_shmem_init(void);
extern bool tv_stepped_up(Oid role);
extern bool tv_second_factor_required(const char *study, const char *grant);

/* worker/logwriter.c: records the log writer makes durable */
#define TV_LOG_DECRYPTION	1
#define TV_LOG_AUDIT		2
#define TV_LOG_SECURITY		3	/* an audit record from any database (logins,
								 * account changes); dropped while the trail
								 * database has no trialvault */
#define TV_LOG_PASSWORD		4	/* a password history entry (auth.c), from
								 * any database */
#define TV_LOG_TEXT			64
#define TV_LOG_DETAIL		512

typedef struct TvLogRecord
{
	int			kind;
	Oid			dboid;
	int32		pid;
	TimestampTz at;
	int64		doc_id;
	bool		has_doc;
	bool		granted;
	bool		emergency;
	char		study[TV_LOG_TEXT];
	char		site[TV_LOG_TEXT];
	char		reason[TV_LOG_TEXT];	/* reason code, or audit event name */
	char		requester[NAMEDATALEN];
	char		session_user[NAMEDATALEN];
	char		application_name[NAMEDATALEN];
	char		client_addr[TV_LOG_TEXT];
	char		detail[TV_LOG_DETAIL];	/* emergency reason, audit detail */
} TvLogRecord;

extern Size tv_log_shmem_size(void);
extern void tv_log_shmem_init(void);
extern void tv_log_init(void);
extern void tv_log_context(TvLogRecord *rec);
extern void tv_log_audit_record(TvLogRecord *rec, const char *event, const char *actor,
								const char *study, const char *site, int64 doc_id,
								const char *detail);
extern void tv_log_setting_changed(TvLogRecord *rec, const char *changes);
extern void tv_log_require_writer(void);
extern void tv_log_submit(const TvLogRecord *rec);
extern void tv_log_submit_alt(const TvLogRecord *rec, const TvLogRecord *alt);
extern ErrorData *tv_log_try_submit_alt(const TvLogRecord *rec, const TvLogRecord *alt);
extern bool tv_log_enqueue(const TvLogRecord *rec);
extern void tv_log_fallback(const TvLogRecord *rec);
extern void tv_writer_read(void (*read) (void));
extern void tv_log_coming(void);

/* owner.c: running as the extension's owner, for the real caller */
typedef struct TvAsOwner
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
} TvAsOwner;

extern int	tv_pin_search_path(void);
extern void tv_unpin_search_path(int nestlevel);
extern void tv_become_owner(TvAsOwner *s);
extern void tv_restore_user(TvAsOwner *s);
extern void tv_owner_spi_begin(TvAsOwner *s);
extern void tv_owner_spi_end(TvAsOwner *s);
extern struct _SPI_plan *tv_kept_plan(struct _SPI_plan **slot, const char *sql,
									  int nargs, Oid *types);
extern Datum tv_spi_value(struct _SPI_plan *plan, Datum *values, const char *nulls,
						  bool read_only, Oid type, bool *isnull);
extern Datum tv_call_as_owner(PG_FUNCTION_ARGS);

/* rules.c: who may do what in a study */
typedef enum TvStudyRole
{
	TV_ROLE_SITE_STAFF,
	TV_ROLE_INVESTIGATOR,
	TV_ROLE_MONITOR,
	TV_ROLE_SAFETY,
	TV_ROLE_SPONSOR,
	TV_ROLE_AUDITOR,
	TV_NROLES
} TvStudyRole;

typedef struct TvRoleHeld
{
	char	   *site;			/* NULL: study-wide */
	TvStudyRole role;
} TvRoleHeld;

/* A member's roles in one study now. */
typedef struct TvStanding
{
	char		study[TV_LOG_TEXT];
	NameData	member;
	uint64		gens[2];		/* of memberships and studies, when read */
	int32		study_id;
	bool		ever_member;	/* held a role once, even if none now */
	int			nroles;
	TvRoleHeld *roles;
} TvStanding;

/* What the rules look at in a document. */
typedef struct TvDocFacts
{
	const char *site;
	const char *doc_type;
	bool		contains_phi;
	const char *loaded_by;
} TvDocFacts;

/* A monitor's authorization at a site now: valid, expired, revoked, none. */
typedef const char *(*TvMonitorStateFn) (void *arg, const char *site);

extern const char *tv_role_name(TvStudyRole role);
extern TvStanding *tv_standing(const char *study, const char *member);
extern TvStanding *tv_standing_copy(const TvStanding *s);
extern bool tv_holds(const TvStanding *s, const char *site, TvStudyRole role);
extern bool tv_may_load(const TvStanding *s, const char *site);
extern bool tv_reason_grants(const char *reason);
extern const char *tv_open_reason(const TvStanding *s, const TvDocFacts *d,
								  const char *requester,
								  TvMonitorStateFn monitor_state, void *arg);
extern const char *tv_emergency_reason(Oid requester, const char *why);
extern struct List *tv_monitor_sites(const TvStanding *s);
extern struct List *tv_scope(const TvStanding *s, const char *what);
extern struct List *tv_roles_at(const TvStanding *s, const char *site);
extern const char *tv_site_openings(const TvStanding *s, const char *site,
									bool monitor_valid);

/* access.c */
extern const char *tv_open_reason_now(const char *study, const TvDocFacts *d,
									  const char *requester);

/* session.c */
extern const char *tv_session_study_raw(void);

/* guard.c */
extern void tv_guard_init(void);
extern bool tv_is_guard_function(Oid funcoid);
extern bool tv_is_guard_trigger_name(const char *name);
extern char *tv_guard_problem(Oid relid);
extern char *tv_table_problem(Oid relid);
extern char *tv_late_before_trigger(Oid relid, const char *oldname,
									 const char *newname);
extern bool tv_relation_is_protected(Oid relid);
extern bool tv_relation_can_be_guarded(Oid relid);
extern void tv_refuse_protected(Oid relid, const char *what, const char *hint);
extern void tv_refuse_late_trigger(Oid relid, const char *tgname);
extern void tv_check_drop_guarded(Oid classId, Oid objectId, int subId);

/* ddlguard.c */
extern void tv_ddlguard_init(void);
extern void tv_ddl_protecting(Oid relid);
extern bool tv_in_own_script(void);
extern void tv_refuse_event_triggers(const char *what);

/* verify.c: a protected table's verdict, for verify() and signed digests */
typedef struct TvVerdict
{
	bool		ok;
	int64		nrows;
	int64		bad_rows;
	char	   *first_bad;
	char	   *guard;			/* the first problem beyond the rows, or NULL */
	TvHead	   *heads;			/* the chain's open ends, by tv_seq */
	int64		nheads;
	uint8		head_digest[TV_HASH_LEN];
	int64		max_seq;		/* the largest tv_seq seen, 0 for none */
	void	   *state;			/* the table, for tv_verdict_covered() */
} TvVerdict;

extern void tv_verify_init(void);
extern void tv_verify_table(Oid relid, TvVerdict *v);
extern void tv_scan_heads(Relation rel, const TvChainCols *cols, Snapshot snap,
						  TvHead **heads, int64 *nheads, int64 *max_seq);
extern int64 tv_verdict_covered(TvVerdict *v, const TvHead *heads, int64 nheads,
								char **problem);

/* digest.c: signed digests of protected tables */
typedef struct TvDigest
{
	int			version;		/* 1 or 2 */
	char	   *table;			/* schema-qualified, quoted as needed */
	int64		rows;
	int64		nheads;
	TvHead	   *heads;
	bool		has_floor;		/* version 2 */
	int64		floor;
	char	   *taken_at;
	char	   *fingerprint;
	bytea	   *signed_part;
	bytea	   *signature;
} TvDigest;

extern void tv_digest_parse(text *t, TvDigest *d);
extern char *tv_digest_trust_problem(Oid relid, const TvDigest *d);

/* certify.c: signing keys, certification statements, the server's key */
typedef struct TvKeyFacts
{
	char		algorithm[16];	/* ecdsa-p256, ecdsa-p384, ed25519, rsa-N */
	char		fingerprint[2 * TV_HASH_LEN + 1];	/* hex SHA-256 of the DER SPKI */
	char	   *public_pem;		/* the public half, as OpenSSL writes it */
} TvKeyFacts;

/* The fields of a certification statement (see certify.c for its bytes). */
typedef struct TvStatement
{
	uint8		content_sha256[TV_HASH_LEN];
	uint8		metadata_sha256[TV_HASH_LEN];
	const char *study;
	const char *site;
	const char *doc_type;
	const char *signer;
	const char *signer_fingerprint;
	const char *meaning;
	TimestampTz signed_at;
	const uint8 *nonce;
	size_t		nonce_len;
} TvStatement;

struct evp_pkey_st;
extern char *tv_signing_key_command;
extern void tv_certify_init(void);
extern struct evp_pkey_st *tv_parse_public_key(text *pem, TvKeyFacts *facts);
extern struct evp_pkey_st *tv_require_server_key(const TvKeyFacts **facts);
extern const char *tv_check_meaning(text *meaning);
extern void tv_check_nonce(bytea *nonce);
extern char *tv_format_utc(TimestampTz t);
extern bytea *tv_statement(const TvStatement *s);
extern char *tv_active_key_fingerprint(const char *member, bool missing_ok);
extern int	tv_signature_window;
extern bytea *tv_countersignature_input(const bytea *statement, const bytea *signature,
										TimestampTz at, const char *server_fingerprint);
extern bytea *tv_check_signature(TvStatement *s, int64 doc_id, bytea *signature);
extern bytea *tv_keep_signature(const TvStatement *s, int64 doc_id, bytea *statement,
								bytea *signature);
extern bytea *tv_sign_recorded(const TvStatement *s, int64 doc_id, bytea *statement,
								bytea *signature, const char *event);
extern bytea *tv_bytea(const void *data, size_t len);
extern void tv_hex(const uint8 *bytes, size_t len, char *out);
extern bytea *tv_server_sign(const uint8 *msg, size_t len);
extern bool tv_have_server_key(void);
extern bool tv_server_signed(bytea *msg, bytea *sig);
extern void tv_note_server_key(const TvKeyFacts *facts, const char *requester);
extern bool tv_signed_by(const char *pem, const char *fingerprint, bytea *msg, bytea *sig);
extern void tv_require_unsigned_allowed(const char *study, const char *site,
										const char *requester);

/* auth.c */
extern void tv_auth_init(void);
extern int	tv_password_max_age;
extern Size tv_auth_shmem_size(void);
extern void tv_auth_shmem_init(void);
extern void tv_password_history_add(Oid roleid, const char *encoded);
extern void tv_password_history_load(void);

/* login.c: connection attempts */
extern void tv_login_init(void);
extern void tv_login_record(TvLogRecord *rec, const char *event, const char *reason,
							TimestampTz until);

extern int	tv_idle_sweep(TvLogRecord *recs, int max);
extern void tv_json_field(struct StringInfoData *buf, const char *key, const char *value);

/* accounts.c: role changes, passwords kept out of logs */
extern void tv_accounts_init(void);
extern bool tv_redact_passwords(char *sql);
extern void tv_account_change_pending(const TvLogRecord *rec);

/* shipper.c: encrypted incremental backups to a remote repository */
extern int	tv_backup_retention;
extern void tv_ship_init(void);
extern Size tv_ship_shmem_size(void);
extern void tv_ship_shmem_init(void);

/* lockout.c: locking roles out after failed logins */
extern int	tv_lockout_threshold;
extern int	tv_lockout_duration;
extern Size tv_lockout_shmem_size(void);
extern void tv_lockout_shmem_init(void);
extern void tv_lockout_init(void);
extern bool tv_lockout_enabled(void);
extern bool tv_lockout_loaded(void);
extern TimestampTz tv_lockout_until(Oid roleid);
extern TimestampTz tv_lockout_failed(Oid roleid, int *failures);
extern void tv_lockout_succeeded(Oid roleid);
extern void tv_lockout_load(void);

/* load.c */
extern const char *tv_check_doc_type(const char *doc_type);
extern void tv_audit_event(const char *event, const char *actor, const char *study,
						   const char *site, int64 doc_id, const char *detail);
extern void tv_record_refusal(const char *event, const char *requester, const char *study,
							  const char *site, int64 doc_id, const char *message);

/* catalog.c */
extern const char *const tv_catalog_state_sql;
extern char *tv_catalog_problem(void);

#endif							/* TRIALVAULT_H */
