/*-------------------------------------------------------------------------
 *
 * chain.c
 *		The hash chain of protected tables: shared state, hashing on INSERT,
 *		and the transaction callbacks that publish committed rows.
 *
 * Every protected row carries
 *
 *	tv_seq			a number unique in its table, increasing in insert order
 *	tv_prev_seqs	the rows it is chained to (ascending tv_seq)
 *	tv_prev_hash	SHA-256 over those rows' tv_seq and tv_hash
 *	tv_hash			SHA-256 over tv_seq, tv_prev_hash and the row's contents
 *
 * A row may only be chained to rows whose existence is certain, or the
 * chain would break whenever a transaction that inserted a predecessor
 * aborted or the server crashed.  So a row is chained either to the
 * previous row of its own transaction (which lives or dies with it) or, for
 * a transaction's first row, to every current "head" of the table: the
 * committed rows no committed row refers to yet.  A transaction publishes
 * its last row as a new head, and retires the heads it referred to, only
 * once it has committed (XACT_EVENT_COMMIT).  Concurrent writers thus hold
 * the per-table lock only for a few copies and an increment; the SHA-256 of
 * the row itself is computed before the lock is taken.  The price is that
 * concurrent transactions form short forks that the next transaction joins
 * again: the chain is a DAG in which every committed row except the current
 * heads is referred to by a later row, so removing or changing any row but
 * the newest ones breaks a link that verify() checks.
 *
 * The heads live in shared memory and are rebuilt from the table itself
 * (rows not referred to by any row) on first use after a restart, so
 * nothing here needs to be durable: the table is the only truth.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "port/pg_bswap.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "trialvault.h"

typedef struct TvChainKey
{
	Oid			dbid;
	Oid			relid;
} TvChainKey;

/* Shared per-table chain state. */
typedef struct TvChainEntry
{
	TvChainKey	key;
	LWLock		lock;			/* protects everything below */
	bool		initialized;	/* heads and last_seq loaded from the table */
	bool		reserved;		/* an extension table's, from the reserve */
	pg_atomic_uint64 generation;	/* see tv_chain_generation() */
	int64		last_seq;
	int			nheads;
	TvHead		heads[FLEXIBLE_ARRAY_MEMBER];	/* tv_max_heads of them */

	/*
	 * Followed by MaxBackends int64s, see entry_inflight(): the first tv_seq
	 * each backend's transaction in progress took in this table, or 0.
	 */
} TvChainEntry;

typedef struct TvChainShared
{
	int			tranche_id;
	pg_atomic_uint64 next_generation;	/* never reused until restart */
	int			nuser;			/* entries of tables outside schema trialvault */
} TvChainShared;

/*
 * Slots kept for the extension's own tables (the decryption log, the audit
 * trail, the registries; a dozen per database), so that however many
 * protected tables a DBA has, the log writer and open_document never run
 * out: trialvault.max_protected_tables counts the DBA's tables only.
 */
#define TV_RESERVED_SLOTS 128

/*
 * What this transaction inserted into one protected table, per
 * subtransaction level, so that rows of an aborted subtransaction are
 * neither chained to nor published.
 */
typedef struct TvFrame
{
	int			level;			/* transaction nesting level */
	int64		tip_seq;		/* last row inserted at this level */
	uint8		tip_hash[TV_HASH_LEN];
	int64	   *refs;			/* heads referred to at this level */
	int			nrefs;
	int			maxrefs;
} TvFrame;

typedef struct TvLocalTable
{
	Oid			relid;
	TvChainEntry *entry;
	List	   *frames;			/* TvFrame *, innermost last */
	bool		inflight;		/* our entry_inflight() slot is set */
	bool		has_floor;		/* restore mode: restore_floor is set */
	int64		restore_floor;	/* restore mode: newest tv_seq already there */
} TvLocalTable;

/* Settings (tv_chain_init) */
static int	tv_max_protected_tables = 1000;
static bool tv_restore_mode = false;

static HTAB *tv_chain_hash = NULL;
static TvChainShared *tv_chain_shared = NULL;
static LWLock *tv_chain_hash_lock = NULL;
static int	tv_max_heads = 0;

/* Tables this transaction inserted into; lives in TopTransactionContext. */
static List *tv_local_tables = NIL;

/* Tables this transaction restored rows into (restore_mode); same context. */
static List *tv_restored_tables = NIL;

/*
 * Entries this transaction created for tables whose guard it attached
 * itself (protect() and a first INSERT in one transaction): nobody else can
 * see those tables as protected yet, so if the protection does not commit,
 * the slot is given back.  Lives in TopTransactionContext.
 */
static List *tv_provisional = NIL;

/* Room for a copy of the heads, taken under the entry lock. */
static TvHead *tv_refs_buf = NULL;

static Size
entry_size(void)
{
	return add_size(add_size(offsetof(TvChainEntry, heads),
							 mul_size(tv_max_heads, sizeof(TvHead))),
					mul_size(MaxBackends, sizeof(int64)));
}

/*
 * Where the first tv_seq of each backend's transaction in progress is
 * kept, so that tv_chain_floor() can say below which tv_seq no row can
 * still appear.  Set and cleared under the entry lock.
 */
static int64 *
entry_inflight(TvChainEntry *entry)
{
	return (int64 *) ((char *) entry->heads + tv_max_heads * sizeof(TvHead));
}

static void
compute_max_heads(void)
{
	/*
	 * Every head is the last row of a distinct transaction, and all of them
	 * were in progress at the same moment (a transaction refers to every
	 * head there is when it inserts its first row), so there can be no more
	 * heads than concurrent transactions.  The slack covers chains restored
	 * from a server that allowed more connections.
	 */
	tv_max_heads = MaxBackends + 64;
}

Size
tv_chain_shmem_size(void)
{
	compute_max_heads();
	return add_size(MAXALIGN(sizeof(TvChainShared)),
					hash_estimate_size(tv_max_protected_tables + TV_RESERVED_SLOTS,
									   entry_size()));
}

void
tv_chain_shmem_init(void)
{
	HASHCTL		info;
	bool		found;

	compute_max_heads();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tv_chain_shared = ShmemInitStruct("trialvault chain control",
									  sizeof(TvChainShared), &found);
	if (!found)
	{
		tv_chain_shared->tranche_id = LWLockNewTrancheId();
		pg_atomic_init_u64(&tv_chain_shared->next_generation, 1);
		tv_chain_shared->nuser = 0;
	}

	info.keysize = sizeof(TvChainKey);
	info.entrysize = entry_size();
	tv_chain_hash = ShmemInitHash("trialvault chain heads",
								  tv_max_protected_tables + TV_RESERVED_SLOTS,
								  tv_max_protected_tables + TV_RESERVED_SLOTS,
								  &info, HASH_ELEM | HASH_BLOBS);
	tv_chain_hash_lock = &(GetNamedLWLockTranche("trialvault"))->lock;
	LWLockRelease(AddinShmemInitLock);

	LWLockRegisterTranche(tv_chain_shared->tranche_id, "trialvault_chain");
}

/*
 * tv_find_chain_cols: find the chain columns of a relation; false unless
 * all four exist with the right types.
 */
bool
tv_find_chain_cols(TupleDesc tupdesc, TvChainCols *cols)
{
	int			i;

	memset(cols, 0, sizeof(*cols));
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		const char *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		if (strcmp(name, TV_COL_SEQ) == 0 && att->atttypid == INT8OID)
			cols->seq = att->attnum;
		else if (strcmp(name, TV_COL_PREV_SEQS) == 0 && att->atttypid == INT8ARRAYOID)
			cols->prev_seqs = att->attnum;
		else if (strcmp(name, TV_COL_PREV_HASH) == 0 && att->atttypid == BYTEAOID)
			cols->prev_hash = att->attnum;
		else if (strcmp(name, TV_COL_HASH) == 0 && att->atttypid == BYTEAOID)
			cols->hash = att->attnum;
	}
	return cols->seq && cols->prev_seqs && cols->prev_hash && cols->hash;
}

/* tv_is_chain_column: is this the name of one of the chain columns? */
bool
tv_is_chain_column(const char *attname)
{
	return strcmp(attname, TV_COL_SEQ) == 0 ||
		strcmp(attname, TV_COL_PREV_SEQS) == 0 ||
		strcmp(attname, TV_COL_PREV_HASH) == 0 ||
		strcmp(attname, TV_COL_HASH) == 0;
}

/* tv_hash_bytea: a hash or digest as the bytea the chain columns hold. */
bytea *
tv_hash_bytea(const uint8 *hash)
{
	bytea	   *b = palloc(VARHDRSZ + TV_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + TV_HASH_LEN);
	memcpy(VARDATA(b), hash, TV_HASH_LEN);
	return b;
}

/*
 * tv_prev_digest: the digest a row records over the rows it is chained to.
 * refs must be in ascending seq order.
 */
void
tv_prev_digest(const TvHead *refs, int nrefs, uint8 *digest)
{
	EVP_MD_CTX *md = tv_sha_begin(TV_SHA_SMALL);
	int			i;

	tv_sha_update(md, "TVPREV1", 7);
	for (i = 0; i < nrefs; i++)
	{
		uint64		be = pg_hton64((uint64) refs[i].seq);

		tv_sha_update(md, &be, 8);
		tv_sha_update(md, refs[i].hash, TV_HASH_LEN);
	}
	tv_sha_end(md, digest);
}

/*
 * tv_row_hash: a row's tv_hash.
 */
void
tv_row_hash(int64 seq, const uint8 *prev_digest, const uint8 *content_digest,
			uint8 *hash)
{
	uint64		be = pg_hton64((uint64) seq);
	EVP_MD_CTX *md = tv_sha_begin(TV_SHA_SMALL);

	tv_sha_update(md, "TVHASH1", 7);
	tv_sha_update(md, &be, 8);
	tv_sha_update(md, prev_digest, TV_HASH_LEN);
	tv_sha_update(md, content_digest, TV_HASH_LEN);
	tv_sha_end(md, hash);
}

/*
 * tv_row_hash_matches: does a stored row's tv_hash match its contents,
 * tv_seq and tv_prev_hash?  A row hashed before 0.6 matches in the old
 * encoding (see canon.c); a row hashed since never does.
 */
bool
tv_row_hash_matches(TupleDesc tupdesc, HeapTuple tuple, const TvChainCols *cols,
					int64 seq, const uint8 *prev_digest, const uint8 *stored_hash)
{
	TvRowLayout *layout = tv_row_layout(tupdesc, cols);
	Datum	   *values = palloc(sizeof(Datum) * Max(tupdesc->natts, 1));
	bool	   *isnull = palloc(sizeof(bool) * Max(tupdesc->natts, 1));

	heap_deform_tuple(tuple, tupdesc, values, isnull);
	return tv_row_values_match(layout, values, isnull, seq, prev_digest, stored_hash);
}

/*
 * The same for a row given as its deformed values, with the layout worked
 * out once for many rows (verify).
 */
bool
tv_row_values_match(const TvRowLayout *layout, const Datum *values,
					const bool *isnull, int64 seq, const uint8 *prev_digest,
					const uint8 *stored_hash)
{
	uint8		content[TV_HASH_LEN];
	uint8		expect[TV_HASH_LEN];

	tv_row_values_digest(layout, values, isnull, content, TV_DIGEST_VERIFY);
	tv_row_hash(seq, prev_digest, content, expect);
	if (memcmp(expect, stored_hash, TV_HASH_LEN) == 0)
		return true;
	tv_row_values_digest(layout, values, isnull, content, TV_DIGEST_LEGACY);
	tv_row_hash(seq, prev_digest, content, expect);
	return memcmp(expect, stored_hash, TV_HASH_LEN) == 0;
}

/*
 * tv_get_prev_seqs: read a row's tv_prev_seqs into a palloc'd array; false
 * when it is NULL, multi-dimensional or holds a NULL (which verify()
 * reports as malformed).
 */
bool
tv_get_prev_seqs(TupleTableSlot *slot, AttrNumber att, int64 **seqs, int *n)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			i;

	*seqs = NULL;
	*n = 0;
	if (isnull)
		return false;
	arr = DatumGetArrayTypeP(d);
	if (ARR_NDIM(arr) > 1)
		return false;
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, n);
	*seqs = palloc(sizeof(int64) * Max(*n, 1));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			return false;
		(*seqs)[i] = DatumGetInt64(elems[i]);
	}
	return true;
}

/* qsort comparator: TvHeads by tv_seq. */
int
tv_head_cmp(const void *a, const void *b)
{
	int64		x = ((const TvHead *) a)->seq;
	int64		y = ((const TvHead *) b)->seq;

	return (x > y) - (x < y);
}

/*
 * Rebuild an entry's heads and last_seq from the table: the heads are the
 * committed rows no row refers to.  Called with the entry lock held
 * exclusively: on first use after server start, after protect() or a DROP
 * (which hold an AccessExclusiveLock), or after a restore-mode commit.  In
 * the last case other sessions may have rows in flight; they refer only to
 * committed heads, which stay heads here until those sessions publish.
 */
static void
rebuild_entry(Relation rel, TvChainEntry *entry, const TvChainCols *cols)
{
	Snapshot	snap;
	TvHead	   *heads;
	int64		nheads;
	int64		last_seq;

	/* In verify()'s bounded memory: a table of any size rebuilds. */
	snap = RegisterSnapshot(GetLatestSnapshot());
	tv_scan_heads(rel, cols, snap, &heads, &nheads, &last_seq);
	UnregisterSnapshot(snap);
	if (nheads > tv_max_heads)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("chain of table \"%s\" has more open ends than trialvault can track",
						RelationGetRelationName(rel)),
				 errdetail("At most %d rows may be unreferenced by later rows; this table has %lld.",
						   tv_max_heads, (long long) nheads),
				 errhint("Run trialvault.verify() on the table, or raise max_connections.")));
	memcpy(entry->heads, heads, nheads * sizeof(TvHead));
	entry->nheads = (int) nheads;
	pfree(heads);

	/*
	 * Never go below a number already handed out: after invalidate_entry()
	 * other sessions may still hold uncommitted rows with higher tv_seq.
	 */
	entry->last_seq = Max(entry->last_seq, last_seq);
	entry->initialized = true;
}

/*
 * Give a table's committed contents a new generation number.  Numbers come
 * from one shared counter, so a table dropped and protected again, or an
 * entry rebuilt, never shows a number it showed before.
 */
static void
bump_generation(TvChainEntry *entry)
{
	pg_atomic_write_u64(&entry->generation,
						pg_atomic_fetch_add_u64(&tv_chain_shared->next_generation, 1));
}

/*
 * Did this transaction attach the guard to relid itself (its guard triggers
 * are not committed yet)?
 */
static bool
guard_attached_here(Oid relid)
{
	Relation	tgrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		result = false;

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		if (tv_is_guard_function(((Form_pg_trigger) GETSTRUCT(tup))->tgfoid) &&
			TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tup->t_data)))
			result = true;
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return result;
}

static void
remove_entry(TvChainKey *key)
{
	TvChainEntry *entry;

	LWLockAcquire(tv_chain_hash_lock, LW_EXCLUSIVE);
	entry = hash_search(tv_chain_hash, key, HASH_FIND, NULL);
	if (entry && !entry->reserved)
		tv_chain_shared->nuser--;
	if (entry)
		hash_search(tv_chain_hash, key, HASH_REMOVE, NULL);
	LWLockRelease(tv_chain_hash_lock);
}

static TvChainEntry *
get_entry(Oid relid)
{
	TvChainKey	key;
	TvChainEntry *entry;
	bool		found;
	bool		reserved;
	bool		provisional;

	if (tv_chain_hash == NULL)
		tv_require_preload();

	key.dbid = MyDatabaseId;
	key.relid = relid;

	LWLockAcquire(tv_chain_hash_lock, LW_SHARED);
	entry = hash_search(tv_chain_hash, &key, HASH_FIND, NULL);
	LWLockRelease(tv_chain_hash_lock);
	if (entry)
		return entry;

	/* A new slot: whose is it, and does its protection stand yet? */
	reserved = get_rel_namespace(relid) == get_namespace_oid("trialvault", true);
	provisional = guard_attached_here(relid);

	LWLockAcquire(tv_chain_hash_lock, LW_EXCLUSIVE);
	entry = hash_search(tv_chain_hash, &key, HASH_FIND, NULL);
	if (entry == NULL && (reserved || tv_chain_shared->nuser < tv_max_protected_tables))
		entry = hash_search(tv_chain_hash, &key, HASH_ENTER_NULL, &found);
	else
		found = true;
	if (entry == NULL)
	{
		LWLockRelease(tv_chain_hash_lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many protected tables in use"),
				 errdetail("The chain state of at most %d protected tables is kept in shared memory.",
						   tv_max_protected_tables),
				 errhint("Raise trialvault.max_protected_tables in postgresql.conf and restart the server.")));
	}
	if (!found)
	{
		LWLockInitialize(&entry->lock, tv_chain_shared->tranche_id);
		entry->initialized = false;
		entry->reserved = reserved;
		entry->last_seq = 0;
		entry->nheads = 0;
		memset(entry_inflight(entry), 0, MaxBackends * sizeof(int64));
		pg_atomic_init_u64(&entry->generation, 0);
		bump_generation(entry);
		if (!reserved)
			tv_chain_shared->nuser++;
	}
	LWLockRelease(tv_chain_hash_lock);

	if (!found && provisional)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		tv_provisional = lappend_oid(tv_provisional, relid);
		MemoryContextSwitchTo(old);
	}
	return entry;
}

/*
 * Give back the slots of tables whose protection did not commit: all of
 * them on abort; before commit, those a rolled-back savepoint unprotected.
 */
static void
release_provisional(bool committing)
{
	ListCell   *lc;

	foreach(lc, tv_provisional)
	{
		TvChainKey	key;

		if (committing && tv_relation_is_protected(lfirst_oid(lc)))
			continue;
		key.dbid = MyDatabaseId;
		key.relid = lfirst_oid(lc);
		remove_entry(&key);
	}
	tv_provisional = NIL;
}

static TvLocalTable *
get_local_table(Oid relid)
{
	ListCell   *lc;
	TvLocalTable *lt;
	MemoryContext old;

	foreach(lc, tv_local_tables)
	{
		lt = lfirst(lc);
		if (lt->relid == relid)
			return lt;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	lt = palloc0(sizeof(TvLocalTable));
	lt->relid = relid;
	lt->entry = get_entry(relid);
	tv_local_tables = lappend(tv_local_tables, lt);
	MemoryContextSwitchTo(old);
	return lt;
}

static void
frame_add_ref(TvFrame *f, int64 seq)
{
	if (f->nrefs == f->maxrefs)
	{
		f->maxrefs = Max(8, f->maxrefs * 2);
		if (f->refs == NULL)
			f->refs = MemoryContextAlloc(TopTransactionContext,
										 f->maxrefs * sizeof(int64));
		else
			f->refs = repalloc(f->refs, f->maxrefs * sizeof(int64));
	}
	f->refs[f->nrefs++] = seq;
}

/*
 * Restore mode: keep a row's chain columns as they come (from a dump), after
 * checking that its tv_hash matches its contents and recorded links.  The
 * links themselves are checked by verify(); the table's chain state is
 * rebuilt from the table once the transaction commits.
 */
/*
 * Restore mode keeps the chain columns a row brings, so it could place a
 * forged row among the rows a table already holds (in a gap of tv_seq, as a
 * new open end) where no later row would ever refer to it.  So a restored
 * row must come after every row the table held when this transaction first
 * restored into it: restoring into an empty table, or continuing it, works;
 * back-dating does not.
 */
static void
restore_after_existing(Relation rel, const TvChainCols *cols, int64 seq)
{
	TvLocalTable *lt = get_local_table(RelationGetRelid(rel));

	if (!lt->has_floor)
	{
		LWLockAcquire(&lt->entry->lock, LW_EXCLUSIVE);
		/* An error in the rebuild releases the lock with the transaction. */
		if (!lt->entry->initialized)
			rebuild_entry(rel, lt->entry, cols);
		lt->restore_floor = lt->entry->last_seq;
		LWLockRelease(&lt->entry->lock);
		lt->has_floor = true;
	}
	if (seq <= lt->restore_floor)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("in restore mode, rows of \"%s\" must come after the rows it holds",
						RelationGetRelationName(rel)),
				 errdetail("Row tv_seq=%lld would be placed among the table's existing rows (the newest is tv_seq=%lld).",
						   (long long) seq, (long long) lt->restore_floor),
				 errhint("Restore mode is for restoring a dump into a new database.")));
}

static HeapTuple
restore_row(Relation rel, HeapTuple tuple, const TvChainCols *cols)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	bool		nulls[4];
	Datum		seqd = heap_getattr(tuple, cols->seq, tupdesc, &nulls[0]);
	Datum		prevd = heap_getattr(tuple, cols->prev_hash, tupdesc, &nulls[1]);
	Datum		hashd = heap_getattr(tuple, cols->hash, tupdesc, &nulls[2]);
	bytea	   *prev;
	bytea	   *hash;
	MemoryContext old;

	(void) heap_getattr(tuple, cols->prev_seqs, tupdesc, &nulls[3]);
	if (nulls[0] || nulls[1] || nulls[2] || nulls[3])
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("in restore mode every row inserted into \"%s\" must carry its chain columns",
						RelationGetRelationName(rel)),
				 errhint("Set trialvault.restore_mode = off for ordinary inserts.")));
	restore_after_existing(rel, cols, DatumGetInt64(seqd));
	prev = DatumGetByteaPP(prevd);
	hash = DatumGetByteaPP(hashd);
	if (VARSIZE_ANY_EXHDR(prev) != TV_HASH_LEN || VARSIZE_ANY_EXHDR(hash) != TV_HASH_LEN ||
		!tv_row_hash_matches(tupdesc, tuple, cols, DatumGetInt64(seqd),
							 (uint8 *) VARDATA_ANY(prev), (uint8 *) VARDATA_ANY(hash)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("restored row of \"%s\" does not match its tv_hash",
						RelationGetRelationName(rel)),
				 errdetail("Row tv_seq=%lld was changed after it was hashed, or its chain columns are damaged.",
						   (long long) DatumGetInt64(seqd))));

	old = MemoryContextSwitchTo(TopTransactionContext);
	tv_restored_tables = list_append_unique_oid(tv_restored_tables, RelationGetRelid(rel));
	MemoryContextSwitchTo(old);
	return tuple;
}

/* Make the next insert rebuild a table's chain state from the table. */
static void
invalidate_entry(Oid relid)
{
	TvChainKey	key;
	TvChainEntry *entry;

	if (tv_chain_hash == NULL)
		return;
	key.dbid = MyDatabaseId;
	key.relid = relid;
	LWLockAcquire(tv_chain_hash_lock, LW_SHARED);
	entry = hash_search(tv_chain_hash, &key, HASH_FIND, NULL);
	if (entry)
	{
		LWLockAcquire(&entry->lock, LW_EXCLUSIVE);
		entry->initialized = false;
		bump_generation(entry);
		LWLockRelease(&entry->lock);
	}
	LWLockRelease(tv_chain_hash_lock);
}

/*
 * tv_chain_insert: fill in the chain columns of a row about to be inserted
 * into a protected table and return the modified tuple.
 */
HeapTuple
tv_chain_insert(Relation rel, HeapTuple tuple)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	TvChainCols cols;
	uint8		content[TV_HASH_LEN];
	uint8		prev[TV_HASH_LEN];
	uint8		hash[TV_HASH_LEN];
	TvLocalTable *lt;
	TvFrame    *top = NULL;
	TvHead	   *refs;
	int			nrefs;
	int64		seq;
	int			level = GetCurrentTransactionNestLevel();
	Datum	   *refdatums;
	int			i;
	int			replcols[4];
	Datum		replvals[4];
	bool		replnulls[4] = {false, false, false, false};

	tv_require_preload();
	if (!tv_find_chain_cols(tupdesc, &cols))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" lacks the trialvault chain columns",
						RelationGetRelationName(rel)),
				 errhint("Protect tables with trialvault.protect() rather than by creating its triggers by hand.")));

	/* The extension's scripts seal the catalog in restore mode too. */
	if (tv_restore_mode && !tv_in_own_script())
		return restore_row(rel, tuple, &cols);

	/* The expensive part, outside any lock. */
	tv_row_content_digest(tupdesc, tuple, &cols, content, TV_DIGEST_INSERT);

	lt = get_local_table(RelationGetRelid(rel));
	if (lt->frames != NIL)
		top = llast(lt->frames);

	if (tv_refs_buf == NULL)
		tv_refs_buf = MemoryContextAlloc(TopMemoryContext,
										 sizeof(TvHead) * (tv_max_heads + 1));
	refs = tv_refs_buf;
	LWLockAcquire(&lt->entry->lock, LW_EXCLUSIVE);
	/* An error in the rebuild releases the lock with the transaction. */
	if (!lt->entry->initialized)
		rebuild_entry(rel, lt->entry, &cols);
	seq = ++lt->entry->last_seq;
	if (!lt->inflight)
	{
		entry_inflight(lt->entry)[MyBackendId - 1] = seq;
		lt->inflight = true;
	}
	if (top != NULL)
	{
		refs[0].seq = top->tip_seq;
		memcpy(refs[0].hash, top->tip_hash, TV_HASH_LEN);
		nrefs = 1;
	}
	else
	{
		nrefs = lt->entry->nheads;
		memcpy(refs, lt->entry->heads, sizeof(TvHead) * nrefs);
	}
	LWLockRelease(&lt->entry->lock);

	if (nrefs > 1)
		qsort(refs, nrefs, sizeof(TvHead), tv_head_cmp);
	tv_prev_digest(refs, nrefs, prev);
	tv_row_hash(seq, prev, content, hash);

	/* Remember the row for chaining our next one and for publishing. */
	if (top == NULL || top->level < level)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		top = palloc0(sizeof(TvFrame));
		top->level = level;
		lt->frames = lappend(lt->frames, top);
		MemoryContextSwitchTo(old);
		if (list_length(lt->frames) == 1)
			for (i = 0; i < nrefs; i++)
				frame_add_ref(top, refs[i].seq);
	}
	top->tip_seq = seq;
	memcpy(top->tip_hash, hash, TV_HASH_LEN);

	refdatums = palloc(sizeof(Datum) * Max(nrefs, 1));
	for (i = 0; i < nrefs; i++)
		refdatums[i] = Int64GetDatum(refs[i].seq);

	replcols[0] = cols.seq;
	replvals[0] = Int64GetDatum(seq);
	replcols[1] = cols.prev_seqs;
	replvals[1] = PointerGetDatum(construct_array(refdatums, nrefs, INT8OID, 8,
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	replcols[2] = cols.prev_hash;
	replvals[2] = PointerGetDatum(tv_hash_bytea(prev));
	replcols[3] = cols.hash;
	replvals[3] = PointerGetDatum(tv_hash_bytea(hash));

	return heap_modify_tuple_by_cols(tuple, tupdesc, 4, replcols, replvals,
									 replnulls);
}

/*
 * This transaction has no row in flight in lt's table any more (it ended,
 * or only aborted subtransactions inserted there).  Must not fail.
 */
static void
clear_inflight(TvLocalTable *lt)
{
	if (!lt->inflight || lt->entry == NULL)
		return;
	LWLockAcquire(&lt->entry->lock, LW_EXCLUSIVE);
	entry_inflight(lt->entry)[MyBackendId - 1] = 0;
	LWLockRelease(&lt->entry->lock);
	lt->inflight = false;
}

/*
 * Publish this transaction's rows once it has committed: its last row in
 * each table becomes a head, and the heads it referred to are retired.
 * Runs after the commit record is written, so it must not fail.
 */
static void
publish_committed(void)
{
	ListCell   *lc;

	foreach(lc, tv_local_tables)
	{
		TvLocalTable *lt = lfirst(lc);
		TvChainEntry *e = lt->entry;
		ListCell   *fc;
		TvFrame    *last;
		int			i;
		int			j;

		if (e == NULL)
			continue;
		if (lt->frames == NIL)
		{
			clear_inflight(lt);
			continue;
		}
		last = llast(lt->frames);

		LWLockAcquire(&e->lock, LW_EXCLUSIVE);
		if (lt->inflight)
			entry_inflight(e)[MyBackendId - 1] = 0;
		lt->inflight = false;
		foreach(fc, lt->frames)
		{
			TvFrame    *f = lfirst(fc);

			for (j = 0; j < f->nrefs; j++)
			{
				for (i = 0; i < e->nheads; i++)
				{
					if (e->heads[i].seq == f->refs[j])
					{
						e->heads[i] = e->heads[--e->nheads];
						break;
					}
				}
			}
		}
		if (e->nheads < tv_max_heads)
		{
			e->heads[e->nheads].seq = last->tip_seq;
			memcpy(e->heads[e->nheads].hash, last->tip_hash, TV_HASH_LEN);
			e->nheads++;
		}
		else
		{
			/* Cannot happen (see compute_max_heads); rebuild from the table. */
			e->initialized = false;
		}
		bump_generation(e);
		LWLockRelease(&e->lock);
	}
}

static void
tv_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (tv_local_tables != NIL || tv_restored_tables != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that inserted into a protected table"),
						 errdetail("trialvault chains a row to its predecessors only once their transaction has committed in this session.")));
			break;
		case XACT_EVENT_PRE_COMMIT:
			if (tv_provisional != NIL)
				release_provisional(true);
			break;
		case XACT_EVENT_COMMIT:
			publish_committed();
			{
				ListCell   *lc;

				foreach(lc, tv_restored_tables)
					invalidate_entry(lfirst_oid(lc));
			}
			tv_local_tables = NIL;
			tv_restored_tables = NIL;
			tv_provisional = NIL;
			break;
		case XACT_EVENT_ABORT:
			{
				ListCell   *lc;

				foreach(lc, tv_local_tables)
					clear_inflight(lfirst(lc));
			}
			if (tv_chain_hash != NULL)
				release_provisional(false);
			tv_provisional = NIL;
			tv_local_tables = NIL;
			tv_restored_tables = NIL;
			break;
		case XACT_EVENT_PREPARE:
			tv_provisional = NIL;
			tv_local_tables = NIL;
			tv_restored_tables = NIL;
			break;
		default:
			break;
	}
}

static void
tv_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	int			level;
	ListCell   *lc;

	if (tv_local_tables == NIL)
		return;
	if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;
	level = GetCurrentTransactionNestLevel();

	foreach(lc, tv_local_tables)
	{
		TvLocalTable *lt = lfirst(lc);
		TvFrame    *top;

		if (lt->frames == NIL)
			continue;
		top = llast(lt->frames);
		if (top->level < level)
			continue;
		if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			lt->frames = list_delete_last(lt->frames);
			continue;
		}
		/* Committed subtransaction: its rows now belong to the parent. */
		if (list_length(lt->frames) >= 2)
		{
			TvFrame    *below = list_nth(lt->frames, list_length(lt->frames) - 2);

			if (below->level == level - 1)
			{
				int			j;

				below->tip_seq = top->tip_seq;
				memcpy(below->tip_hash, top->tip_hash, TV_HASH_LEN);
				for (j = 0; j < top->nrefs; j++)
					frame_add_ref(below, top->refs[j]);
				lt->frames = list_delete_last(lt->frames);
				continue;
			}
		}
		top->level = level - 1;
	}
}

/*
 * tv_chain_forget: drop the shared state of a relation (it is being
 * dropped, or protect() just chained its rows); the next insert rebuilds
 * it from the table.  The caller holds an AccessExclusiveLock on it.
 */
void
tv_chain_forget(Oid relid)
{
	TvChainKey	key;
	ListCell   *lc;

	foreach(lc, tv_local_tables)
	{
		TvLocalTable *lt = lfirst(lc);

		if (lt->relid == relid)
		{
			clear_inflight(lt);
			tv_local_tables = foreach_delete_current(tv_local_tables, lc);
		}
	}
	if (tv_chain_hash == NULL)
		return;
	key.dbid = MyDatabaseId;
	key.relid = relid;
	remove_entry(&key);
	tv_provisional = list_delete_oid(tv_provisional, relid);
}

/* Did this transaction insert or restore rows into relid, not yet committed? */
static bool
inserted_here(Oid relid)
{
	ListCell   *lc;

	foreach(lc, tv_local_tables)
	{
		TvLocalTable *lt = lfirst(lc);

		if (lt->relid == relid && lt->frames != NIL)
			return true;
	}
	return list_member_oid(tv_restored_tables, relid);
}

/*
 * tv_chain_floor: a tv_seq at or above which every row of the table that is
 * not committed yet will be: the lowest first tv_seq of the transactions
 * inserting into it now, or the next tv_seq to be handed out.  Taken before
 * a snapshot, it splits the table: every row below it that will ever be
 * visible is visible to that snapshot.  (Every tv_seq handed out later is
 * larger than every one handed out before; restore mode only appends.)
 * PG_INT64_MAX when this server has not handed out any since it started,
 * in which case the rows the snapshot sees decide.
 */
int64
tv_chain_floor(Oid relid)
{
	TvChainKey	key;
	TvChainEntry *entry;
	int64		floor = PG_INT64_MAX;

	if (tv_chain_hash == NULL)
		tv_require_preload();
	key.dbid = MyDatabaseId;
	key.relid = relid;
	LWLockAcquire(tv_chain_hash_lock, LW_SHARED);
	entry = hash_search(tv_chain_hash, &key, HASH_FIND, NULL);
	if (entry)
	{
		int64	   *inflight = entry_inflight(entry);
		int			i;

		LWLockAcquire(&entry->lock, LW_SHARED);
		if (entry->last_seq > 0)
			floor = entry->last_seq + 1;
		for (i = 0; i < MaxBackends; i++)
			if (inflight[i] != 0 && inflight[i] < floor)
				floor = inflight[i];
		LWLockRelease(&entry->lock);
	}
	LWLockRelease(tv_chain_hash_lock);
	return floor;
}

/*
 * tv_chain_generation: a number that changes whenever rows committed to a
 * protected table may have changed, for per-backend caches of what is
 * derived from those rows (PHI rules, schemas, memberships).  Returns false
 * when the caller must neither use nor fill such a cache now.
 *
 * The number changes at XACT_EVENT_COMMIT of every transaction that
 * inserted into the table, which runs after the rows became visible and
 * before the client hears of the commit.  So a reader that takes this
 * number and then a new snapshot sees everything committed up to that
 * number, and a cache filled that way and tagged with it is stale exactly
 * when the number moved.  That reasoning fails, and false is returned:
 *
 *	- for rows this transaction inserted itself (not committed yet);
 *	- under a transaction snapshot, which may be older than the number;
 *	- on a standby, where rows arrive by WAL replay, which runs no commit
 *	  callbacks: the number never moves there.
 */
bool
tv_chain_generation(Oid relid, uint64 *gen)
{
	TvChainEntry *entry = get_entry(relid);

	*gen = pg_atomic_read_u64(&entry->generation);
	/* The caller's snapshot must be taken after this read, not before. */
	pg_read_barrier();
	return !inserted_here(relid) && !IsolationUsesXactSnapshot() &&
		!RecoveryInProgress();
}

/*
 * The generation numbers of some of trialvault's own tables, by name, into
 * gens; false when a cache tagged with them cannot be trusted (see
 * tv_chain_generation).  Read them before the query whose result is cached
 * takes its snapshot.
 */
bool
tv_tables_generation(const char *const *tables, int ntables, uint64 *gens)
{
	Oid			nsp = get_namespace_oid("trialvault", false);
	bool		cacheable = true;
	int			i;

	for (i = 0; i < ntables; i++)
	{
		Oid			relid = get_relname_relid(tables[i], nsp);

		if (!OidIsValid(relid))
			elog(ERROR, "table trialvault.%s is missing", tables[i]);
		if (!tv_chain_generation(relid, &gens[i]))
			cacheable = false;
	}
	return cacheable;
}

void
tv_chain_init(void)
{
	DefineCustomIntVariable("trialvault.max_protected_tables",
							"Maximum number of protected tables, across all databases, whose chain state is kept in shared memory.",
							"Each protected table written to since the server started uses one slot.",
							&tv_max_protected_tables,
							1000, 16, 1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("trialvault.restore_mode",
							 "Keep the chain columns of rows inserted into protected tables, for restoring a dump.",
							 "Each row must carry all four chain columns and its tv_hash must match its contents; trialvault.verify() checks the links afterwards.",
							 &tv_restore_mode,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	RegisterXactCallback(tv_xact_callback, NULL);
	RegisterSubXactCallback(tv_subxact_callback, NULL);
}
