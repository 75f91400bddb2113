/*-------------------------------------------------------------------------
 *
 * verify.c
 *		trialvault.verify(regclass): recompute a protected table's chain and
 *		name the first row that does not fit.
 *
 * One sequential scan, in storage order, recomputes every row's hash from
 * its contents and its recorded tv_prev_hash (finding rows changed in
 * place), and checks its link: tv_prev_hash must be the digest of the rows
 * it names, and those rows must exist (finding rows removed, inserted out
 * of band, or rewritten with a fresh hash).  The rows no row refers to are
 * the chain's open ends; their digest, head_digest, is the value to anchor
 * outside the server (signed_digest() signs it).
 *
 * Memory is bounded, not proportional to the table: a row's predecessors
 * are nearly always stored just before it, so only the last
 * trialvault.verify_window rows are kept, plus those that left the window
 * with no row referring to them yet (the heads, mostly), one bit per
 * tv_seq for duplicates, and the few rows whose predecessors are stored
 * after them or far before, which wait until the scan reaches those, or
 * for a second scan of the chain columns alone.
 *
 * Reading and hashing, the bulk of the work, can be shared with parallel
 * workers (trialvault.verify_workers): each takes parts of the table in
 * turn and sends what each row says of itself; the session links the rows
 * part by part in storage order with the same code as when it works alone.
 * Out-of-line values are read in storage order alongside (toastscan.c).
 *
 * verify(tbl, since => digest) reads only the rows at or above the floor a
 * signed digest recorded (through the tv_seq index, in tv_seq order): the
 * rows added since are rehashed and linked as above, down to the rows the
 * digest covered, which stand in with their recorded tv_hash; the digest's
 * heads must be there unchanged.  It says that the older rows were not
 * rehashed.
 *
 * The verdict also covers what the rows depend on: the table's guard
 * triggers, what could hide or add rows (row level security, rules,
 * unprotected inheritance children), and the extension's own objects as
 * the installed version's script sealed them (catalog.c).  The first
 * problem found is reported in "guard".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "optimizer/paths.h"
#include "port/atomics.h"
#include "storage/bufmgr.h"
#include "storage/latch.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "trialvault.h"

/* Rows the link check keeps in memory (trialvault.verify_window). */
static int	tv_verify_window = 65536;

/* Parallel workers that read and hash a full verify's rows. */
static int	tv_verify_workers = 2;

static inline uint32
seq_hash(uint64 k)
{
	return hash_combine(murmurhash32((uint32) k), murmurhash32((uint32) (k >> 32)));
}

/*
 * A recently scanned row, or one that left the window with no row
 * referring to it yet: its seq (the key) and stored tv_hash.
 */
typedef struct WinEntry
{
	int64		seq;
	char		status;			/* for simplehash */
	bool		referenced;
	uint8		hash[TV_HASH_LEN];
} WinEntry;

#define SH_PREFIX		win
#define SH_ELEMENT_TYPE	WinEntry
#define SH_KEY_TYPE		int64
#define SH_KEY			seq
#define SH_HASH_KEY(tb, key)	seq_hash((uint64) (key))
#define SH_EQUAL(tb, a, b)	((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * Every tv_seq scanned, one bit each, in chunks of SEEN_CHUNK_BITS
 * consecutive values: how duplicates are found, and whether a predecessor
 * not in memory was scanned already.  Chunks keep a table whose values are
 * far apart from costing a bitmap of the whole range.
 */
#define SEEN_CHUNK_BITS	4096

typedef struct SeenChunk
{
	uint64		key;			/* tv_seq / SEEN_CHUNK_BITS */
	char		status;
	uint64	   *bits;
} SeenChunk;

#define SH_PREFIX		seen
#define SH_ELEMENT_TYPE	SeenChunk
#define SH_KEY_TYPE		uint64
#define SH_KEY			key
#define SH_HASH_KEY(tb, key)	seq_hash(key)
#define SH_EQUAL(tb, a, b)	((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * A row whose link check waits for predecessors the scan has not reached
 * (stored after it) or has let go of (referred to before, long ago).
 */
typedef struct Pending
{
	dlist_node	node;
	int64		seq;
	ItemPointerData tid;
	bool		bad;			/* counted in bad_rows already */
	int			nrefs;
	int			missing;		/* predecessors still without a hash */
	uint8		prev[TV_HASH_LEN];
	TvHead		refs[FLEXIBLE_ARRAY_MEMBER];
} Pending;

typedef struct Waiter
{
	Pending    *row;
	int			ref;			/* index into row->refs */
} Waiter;

/* A predecessor some pending rows wait for. */
typedef struct WantEntry
{
	int64		seq;
	char		status;
	bool		filled;
	int			nwaiters;
	int			maxwaiters;
	Waiter	   *waiters;
} WantEntry;

#define SH_PREFIX		want
#define SH_ELEMENT_TYPE	WantEntry
#define SH_KEY_TYPE		int64
#define SH_KEY			seq
#define SH_HASH_KEY(tb, key)	seq_hash((uint64) (key))
#define SH_EQUAL(tb, a, b)	((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct VState
{
	MemoryContext cxt;			/* everything below */
	win_hash   *window;			/* the last tv_verify_window rows scanned */
	int64	   *ring;			/* their seqs, oldest first from ringpos */
	int			ringlen;
	int			ringpos;
	win_hash   *unreferenced;	/* left the window with no row after them */
	seen_hash  *seen;
	uint64		seen_key;		/* the chunk last looked at */
	uint64	   *seen_bits;
	want_hash  *wanted;
	dlist_head	pending;
	int64		waited;			/* rows that were pending, ever */
	bool		rescanned;
	int64		nrows;
	uint64		toast_taken;	/* out-of-line values read in step */
	uint64		toast_patched;	/* ... of them, with chunks looked up */
	uint64		toast_missed;	/* values looked up instead */
	int64		max_seq;
	Snapshot	snapshot;		/* the rows verified are those it sees */
	bool		heads_only;		/* tv_scan_heads(): no hashing, no link checks */
	/* verify(since => digest): predecessors are looked up by index */
	bool		since;
	IndexScanDesc lookup;
	TupleTableSlot *lookup_slot;
	win_hash   *digest_heads;	/* the digest's heads, referenced or not */
	int64		floor;
	/* the first problem, by tv_seq then ctid */
	int64		bad_rows;
	int64		first_bad_seq;
	ItemPointerData first_bad_tid;
	char	   *first_bad;
} VState;

/*
 * A problem with a row: counted once per row however many checks it fails
 * (*rowbad tracks that), and reported when it is the first by tv_seq, then
 * ctid (a row's own checks run in a fixed order: the first to fail wins).
 * seq is PG_INT64_MIN for a row without tv_seq.
 */
static void
note_bad(VState *st, bool *rowbad, int64 seq, ItemPointer tid, const char *why)
{
	if (!*rowbad)
		st->bad_rows++;
	*rowbad = true;
	if (st->first_bad == NULL || seq < st->first_bad_seq ||
		(seq == st->first_bad_seq && ItemPointerCompare(tid, &st->first_bad_tid) < 0))
	{
		MemoryContext old = MemoryContextSwitchTo(st->cxt);

		if (st->first_bad)
			pfree(st->first_bad);
		st->first_bad_seq = seq;
		st->first_bad_tid = *tid;
		if (seq == PG_INT64_MIN)
			st->first_bad = psprintf("row ctid=(%u,%u): %s",
									 ItemPointerGetBlockNumberNoCheck(tid),
									 ItemPointerGetOffsetNumberNoCheck(tid), why);
		else if (!ItemPointerIsValid(tid))
			st->first_bad = psprintf("row tv_seq=%lld: %s", (long long) seq, why);
		else
			st->first_bad = psprintf("row tv_seq=%lld ctid=(%u,%u): %s",
									 (long long) seq,
									 ItemPointerGetBlockNumberNoCheck(tid),
									 ItemPointerGetOffsetNumberNoCheck(tid), why);
		MemoryContextSwitchTo(old);
	}
}

static uint64 *
seen_chunk(VState *st, int64 seq, bool create)
{
	uint64		key = ((uint64) seq) / SEEN_CHUNK_BITS;
	SeenChunk  *c;
	bool		found;

	if (st->seen_bits && st->seen_key == key)
		return st->seen_bits;
	if (create)
	{
		c = seen_insert(st->seen, key, &found);
		if (!found)
			c->bits = MemoryContextAllocZero(st->cxt, SEEN_CHUNK_BITS / 8);
	}
	else if ((c = seen_lookup(st->seen, key)) == NULL)
		return NULL;
	st->seen_key = key;
	st->seen_bits = c->bits;
	return c->bits;
}

static bool
was_seen(VState *st, int64 seq)
{
	uint64	   *bits = seen_chunk(st, seq, false);
	uint64		bit = ((uint64) seq) % SEEN_CHUNK_BITS;

	return bits != NULL && (bits[bit / 64] & (UINT64CONST(1) << (bit % 64))) != 0;
}

/* Record seq as scanned; false if it was already (a duplicate). */
static bool
mark_seen(VState *st, int64 seq)
{
	uint64	   *bits = seen_chunk(st, seq, true);
	uint64		bit = ((uint64) seq) % SEEN_CHUNK_BITS;
	uint64		mask = UINT64CONST(1) << (bit % 64);

	if (bits[bit / 64] & mask)
		return false;
	bits[bit / 64] |= mask;
	return true;
}

/* A pending row with all its predecessors' hashes: check its link. */
static void
finish_pending(VState *st, Pending *p)
{
	uint8		digest[TV_HASH_LEN];

	tv_prev_digest(p->refs, p->nrefs, digest);
	if (memcmp(digest, p->prev, TV_HASH_LEN) != 0)
		note_bad(st, &p->bad, p->seq, &p->tid,
				 "tv_prev_hash does not match its predecessors (a predecessor was changed or replaced)");
	dlist_delete(&p->node);
	pfree(p);
}

/* A predecessor pending rows waited for has been found: give them its hash. */
static void
fill_wanted(VState *st, WantEntry *w, const uint8 *hash)
{
	int			i;

	w->filled = true;
	for (i = 0; i < w->nwaiters; i++)
	{
		Pending    *p = w->waiters[i].row;

		memcpy(p->refs[w->waiters[i].ref].hash, hash, TV_HASH_LEN);
		if (--p->missing == 0)
			finish_pending(st, p);
	}
	if (w->waiters)
		pfree(w->waiters);
	w->waiters = NULL;
	w->nwaiters = 0;
}

static void
add_waiter(VState *st, int64 seq, Pending *p, int ref)
{
	bool		found;
	WantEntry  *w = want_insert(st->wanted, seq, &found);

	if (!found)
	{
		w->filled = false;
		w->nwaiters = 0;
		w->maxwaiters = 4;
		w->waiters = MemoryContextAlloc(st->cxt, w->maxwaiters * sizeof(Waiter));
	}
	else if (w->nwaiters == w->maxwaiters)
	{
		w->maxwaiters *= 2;
		w->waiters = repalloc(w->waiters, w->maxwaiters * sizeof(Waiter));
	}
	w->waiters[w->nwaiters].row = p;
	w->waiters[w->nwaiters].ref = ref;
	w->nwaiters++;
}

/*
 * A kept row enters the window; the oldest row leaves it, and is kept
 * among the unreferenced if no row has referred to it yet (a head, or the
 * predecessor of a row stored far from it).
 */
static void
window_add(VState *st, int64 seq, const uint8 *hash)
{
	bool		found;
	WinEntry   *e;
	WantEntry  *w;
	bool		referenced = false;

	w = want_lookup(st->wanted, seq);
	if (w != NULL)
	{
		fill_wanted(st, w, hash);
		want_delete_item(st->wanted, w);
		referenced = true;
	}

	if (st->ringlen == tv_verify_window)
	{
		int64		oldest = st->ring[st->ringpos];
		WinEntry   *o = win_lookup(st->window, oldest);

		if (o != NULL)
		{
			if (!o->referenced)
			{
				WinEntry   *u = win_insert(st->unreferenced, oldest, &found);

				u->referenced = false;
				memcpy(u->hash, o->hash, TV_HASH_LEN);
			}
			win_delete_item(st->window, o);
		}
		st->ring[st->ringpos] = seq;
		st->ringpos = (st->ringpos + 1) % st->ringlen;
	}
	else
		st->ring[st->ringlen++] = seq;

	e = win_insert(st->window, seq, &found);
	e->referenced = referenced;
	memcpy(e->hash, hash, TV_HASH_LEN);
}

/*
 * tv_scan_heads(): a row refers to ref, which is therefore no head; if the
 * scan has not reached it yet, it is marked when it does.
 */
static void
mark_referenced(VState *st, int64 ref)
{
	WinEntry   *e;

	if ((e = win_lookup(st->window, ref)) != NULL)
		e->referenced = true;
	else if ((e = win_lookup(st->unreferenced, ref)) != NULL)
		win_delete_item(st->unreferenced, e);
	else if (!was_seen(st, ref))
	{
		bool		found;
		WantEntry  *w = want_insert(st->wanted, ref, &found);

		if (!found)
		{
			w->filled = false;
			w->nwaiters = 0;
			w->maxwaiters = 0;
			w->waiters = NULL;
		}
	}
}

/*
 * A kept row's link: every predecessor an earlier row, in ascending order,
 * and tv_prev_hash their digest.  Predecessors not in memory make the row
 * wait (a Pending) until the scan reaches them, or the end.
 */
static void
check_link(VState *st, int64 seq, ItemPointer tid, bool *rowbad,
		   const uint8 *prev, const int64 *refs, int nrefs)
{
	TvHead	   *found_refs = palloc(Max(nrefs, 1) * sizeof(TvHead));
	Pending    *p = NULL;
	int			j;

	for (j = 0; j < nrefs; j++)
	{
		if (refs[j] >= seq || (j > 0 && refs[j] <= refs[j - 1]))
		{
			note_bad(st, rowbad, seq, tid,
					 "tv_prev_seqs does not list earlier rows in ascending order");
			return;
		}
	}
	for (j = 0; j < nrefs; j++)
	{
		WinEntry   *e = win_lookup(st->window, refs[j]);

		found_refs[j].seq = refs[j];
		if (e != NULL)
		{
			e->referenced = true;
			memcpy(found_refs[j].hash, e->hash, TV_HASH_LEN);
		}
		else if ((e = win_lookup(st->unreferenced, refs[j])) != NULL)
		{
			memcpy(found_refs[j].hash, e->hash, TV_HASH_LEN);
			win_delete_item(st->unreferenced, e);
		}
		else
		{
			if (p == NULL)
			{
				p = MemoryContextAlloc(st->cxt, offsetof(Pending, refs) + nrefs * sizeof(TvHead));
				p->seq = seq;
				p->tid = *tid;
				p->bad = *rowbad;
				p->nrefs = nrefs;
				p->missing = 0;
				memcpy(p->prev, prev, TV_HASH_LEN);
				dlist_push_tail(&st->pending, &p->node);
				st->waited++;
			}
			p->missing++;
			memset(found_refs[j].hash, 0, TV_HASH_LEN);
			add_waiter(st, refs[j], p, j);
		}
	}
	if (p != NULL)
		memcpy(p->refs, found_refs, nrefs * sizeof(TvHead));
	else
	{
		uint8		digest[TV_HASH_LEN];

		tv_prev_digest(found_refs, nrefs, digest);
		if (memcmp(digest, prev, TV_HASH_LEN) != 0)
			note_bad(st, rowbad, seq, tid,
					 "tv_prev_hash does not match its predecessors (a predecessor was changed or replaced)");
	}
}

static bool
get_hash_col(TupleTableSlot *slot, AttrNumber att, uint8 *out)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	bytea	   *b;

	if (isnull)
		return false;
	b = DatumGetByteaPP(d);
	if (VARSIZE_ANY_EXHDR(b) != TV_HASH_LEN)
		return false;
	memcpy(out, VARDATA_ANY(b), TV_HASH_LEN);
	return true;
}

/*
 * What a row says of itself: its chain columns, and (when hashing) whether
 * its contents match its tv_hash.  Read where the row is (a parallel
 * worker reads and hashes its share); what it means for the chain is
 * worked out by apply_row, in storage order, in one place.
 */
typedef struct RowFacts
{
	ItemPointerData tid;
	bool		has_seq;
	bool		has_hash;		/* tv_hash is 32 bytes */
	bool		has_prev;		/* tv_prev_hash is 32 bytes */
	bool		refs_ok;		/* tv_prev_seqs is a list of numbers */
	bool		matches;		/* the contents hash to tv_hash */
	int			nrefs;
	int64		seq;
	int64	   *refs;
	uint8		hash[TV_HASH_LEN];
	uint8		prev[TV_HASH_LEN];
} RowFacts;

static void
read_row(TupleTableSlot *slot, const TvRowLayout *layout, const TvChainCols *cols,
		 bool hashing, RowFacts *f)
{
	bool		isnull;
	Datum		d;

	memset(f, 0, sizeof(RowFacts));
	f->tid = slot->tts_tid;
	d = slot_getattr(slot, cols->seq, &isnull);
	if (isnull)
		return;
	f->has_seq = true;
	f->seq = DatumGetInt64(d);
	f->has_hash = get_hash_col(slot, cols->hash, f->hash);
	f->has_prev = get_hash_col(slot, cols->prev_hash, f->prev);
	f->refs_ok = tv_get_prev_seqs(slot, cols->prev_seqs, &f->refs, &f->nrefs);
	if (hashing && f->has_hash && f->has_prev)
	{
		/* Deformed once, for the chain columns above and the digest. */
		slot_getallattrs(slot);
		f->matches = tv_row_values_match(layout, slot->tts_values, slot->tts_isnull,
										 f->seq, f->prev, f->hash);
	}
}

/*
 * One row of the table, in storage order: its hash recomputed from its
 * contents (read_row), its link checked against the predecessors in
 * memory (or made to wait for them).
 */
static void
apply_row(VState *st, const RowFacts *f)
{
	ItemPointerData tid = f->tid;
	bool		rowbad = false;
	static const uint8 nohash[TV_HASH_LEN] = {0};

	if (!f->has_seq)
	{
		note_bad(st, &rowbad, PG_INT64_MIN, &tid, "tv_seq is NULL");
		return;					/* not kept: it cannot be linked to */
	}
	st->nrows++;
	if (st->heads_only)
	{
		int			j;

		/* Whatever a row refers to is no head, copies and all. */
		if (f->refs_ok)
			for (j = 0; j < f->nrefs; j++)
				mark_referenced(st, f->refs[j]);
		if (mark_seen(st, f->seq))
		{
			st->max_seq = Max(st->max_seq, f->seq);
			window_add(st, f->seq, f->has_hash ? f->hash : nohash);
		}
		return;
	}
	if (!mark_seen(st, f->seq))
	{
		/* The first copy by ctid is the row; this one is not kept. */
		note_bad(st, &rowbad, f->seq, &tid, "another row has the same tv_seq");
		return;
	}
	st->max_seq = Max(st->max_seq, f->seq);

	if (!f->has_hash || !f->has_prev)
	{
		note_bad(st, &rowbad, f->seq, &tid, "tv_hash or tv_prev_hash is NULL or not 32 bytes");
		window_add(st, f->seq, f->has_hash ? f->hash : nohash);
		return;
	}
	if (!f->matches)
		note_bad(st, &rowbad, f->seq, &tid,
				 "contents do not match tv_hash (the row was changed after it was inserted)");
	else if (!f->refs_ok)
		note_bad(st, &rowbad, f->seq, &tid, "tv_prev_seqs is NULL or malformed");
	window_add(st, f->seq, f->hash);
	if (f->refs_ok)
		check_link(st, f->seq, &tid, &rowbad, f->prev, f->refs, f->nrefs);
}

/* One row read and applied in the same process.  Called in a row context. */
static void
check_row(VState *st, TupleTableSlot *slot, const TvRowLayout *layout,
		  const TvChainCols *cols)
{
	RowFacts	f;

	read_row(slot, layout, cols, !st->heads_only, &f);
	apply_row(st, &f);
}

/*
 * The one pass over the table, in storage order (never a synchronized scan
 * starting mid-table: which copy of a duplicated tv_seq counts as the row
 * is the first by ctid).
 */
static void
scan_rows(Relation rel, const TvChainCols *cols, VState *st)
{
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext rowcxt;
	MemoryContext old;
	TvRowLayout *layout = tv_row_layout(RelationGetDescr(rel), cols);

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault verify row",
								   ALLOCSET_DEFAULT_SIZES);
	scan = table_beginscan_strat(rel, st->snapshot, 0, NULL, true, false);
	slot = table_slot_create(rel, NULL);
	/* The hashed values' out-of-line bytes, read in step (toastscan.c). */
	if (!st->heads_only)
		layout->toast = tv_toast_scan_begin(rel, st->snapshot, false);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(rowcxt);
		check_row(st, slot, layout, cols);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	tv_toast_scan_end(layout->toast, &st->toast_taken, &st->toast_patched, &st->toast_missed);
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	MemoryContextDelete(rowcxt);
}

/*
 * Parallel verify.  Workers read and hash the rows (the bulk of the work:
 * detoasting and SHA-256); the leader applies them to the chain in
 * storage order, exactly as scan_rows would, so the verdict cannot depend
 * on how the work was shared.  The table is cut into parts of
 * chunk_blocks blocks; a worker claims the next part, reads it (and the
 * out-of-line values stored from where the part's first value is) and
 * sends what each row says of itself (RowFacts) to its own queue; the
 * leader takes part 0, 1, 2 ... from whichever queue holds it.
 */
#define TV_PAR_KEY_SHARED	UINT64CONST(0x7476000000000001)
#define TV_PAR_KEY_QUEUES	UINT64CONST(0x7476000000000002)
#define TV_PAR_QUEUE_SIZE	((Size) 4 * 1024 * 1024)
#define TV_PAR_BATCH		(64 * 1024)
#define TV_PAR_MAX_PART		256

typedef struct VParShared
{
	Oid			relid;
	BlockNumber nblocks;
	BlockNumber chunk_blocks;
	pg_atomic_uint32 next_chunk;
} VParShared;

/* The head of each message: rows of one part follow. */
typedef struct VParHeader
{
	int32		chunk;			/* the part; -1: this worker has finished */
	bool		last;			/* the part's last message */
	uint64		toast_taken;	/* with last: the part's out-of-line values */
	uint64		toast_patched;
	uint64		toast_missed;
} VParHeader;

/* A row as sent: this, then nrefs int64s (tv_prev_seqs). */
typedef struct VParRow
{
	ItemPointerData tid;
	bool		has_seq;
	bool		has_hash;
	bool		has_prev;
	bool		refs_ok;
	bool		matches;
	int32		nrefs;
	int64		seq;
	uint8		hash[TV_HASH_LEN];
	uint8		prev[TV_HASH_LEN];
} VParRow;

/* A queue as the leader reads it. */
typedef struct VParQueue
{
	shm_mq_handle *mqh;
	bool		done;
	bool		pending;		/* head/msg: a message not yet applied */
	VParHeader	head;
	char	   *msg;
	Size		len;
} VParQueue;

PGDLLEXPORT void tv_verify_worker(dsm_segment *seg, shm_toc *toc);

static void
par_begin_message(StringInfo buf, int32 chunk)
{
	VParHeader	h;

	memset(&h, 0, sizeof(h));
	h.chunk = chunk;
	resetStringInfo(buf);
	appendBinaryStringInfo(buf, (char *) &h, sizeof(h));
}

/* false: the leader has gone (it errored or was cancelled). */
static bool
par_send(shm_mq_handle *mqh, StringInfo buf)
{
	return shm_mq_send(mqh, buf->len, buf->data, false, true) == SHM_MQ_SUCCESS;
}

static void
par_pack_row(StringInfo buf, const RowFacts *f)
{
	VParRow		r;

	memset(&r, 0, sizeof(r));
	r.tid = f->tid;
	r.has_seq = f->has_seq;
	r.has_hash = f->has_hash;
	r.has_prev = f->has_prev;
	r.refs_ok = f->refs_ok;
	r.matches = f->matches;
	r.nrefs = f->nrefs;
	r.seq = f->seq;
	memcpy(r.hash, f->hash, TV_HASH_LEN);
	memcpy(r.prev, f->prev, TV_HASH_LEN);
	appendBinaryStringInfo(buf, (char *) &r, sizeof(r));
	if (f->nrefs > 0)
		appendBinaryStringInfo(buf, (char *) f->refs, f->nrefs * sizeof(int64));
}

/*
 * A parallel worker: claim parts until none is left, read and hash their
 * rows, send them.  Runs as the leader's user, with its snapshot.
 */
void
tv_verify_worker(dsm_segment *seg, shm_toc *toc)
{
	VParShared *sh = shm_toc_lookup(toc, TV_PAR_KEY_SHARED, false);
	char	   *queues = shm_toc_lookup(toc, TV_PAR_KEY_QUEUES, false);
	shm_mq	   *mq = (shm_mq *) (queues + (Size) ParallelWorkerNumber * TV_PAR_QUEUE_SIZE);
	shm_mq_handle *mqh;
	Snapshot	snap = GetActiveSnapshot();
	Relation	rel;
	TvChainCols cols;
	TvRowLayout *layout;
	TableScanDesc scan;
	TupleTableSlot *slot;
	StringInfoData buf;
	MemoryContext rowcxt;
	bool		leader = true;

	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	rel = table_open(sh->relid, AccessShareLock);
	if (!tv_find_chain_cols(RelationGetDescr(rel), &cols))
		elog(ERROR, "trialvault: table \"%s\" has no chain columns",
			 RelationGetRelationName(rel));
	layout = tv_row_layout(RelationGetDescr(rel), &cols);
	scan = table_beginscan_strat(rel, snap, 0, NULL, true, false);
	slot = table_slot_create(rel, NULL);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault verify row",
								   ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&buf);

	while (leader)
	{
		uint32		chunk = pg_atomic_fetch_add_u32(&sh->next_chunk, 1);
		BlockNumber start;
		VParHeader *h;
		uint64		taken = 0;
		uint64		patched = 0;
		uint64		missed = 0;

		if ((uint64) chunk * sh->chunk_blocks >= sh->nblocks)
			break;
		start = chunk * sh->chunk_blocks;
		table_rescan(scan, NULL);
		heap_setscanlimits(scan, start, Min(sh->chunk_blocks, sh->nblocks - start));
		layout->toast = tv_toast_scan_begin(rel, snap, true);
		par_begin_message(&buf, (int32) chunk);
		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			RowFacts	f;
			MemoryContext old;

			CHECK_FOR_INTERRUPTS();
			old = MemoryContextSwitchTo(rowcxt);
			read_row(slot, layout, &cols, true, &f);
			par_pack_row(&buf, &f);
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
			if (buf.len >= TV_PAR_BATCH)
			{
				if (!(leader = par_send(mqh, &buf)))
					break;
				par_begin_message(&buf, (int32) chunk);
			}
		}
		tv_toast_scan_end(layout->toast, &taken, &patched, &missed);
		layout->toast = NULL;
		h = (VParHeader *) buf.data;
		h->last = true;
		h->toast_taken = taken;
		h->toast_patched = patched;
		h->toast_missed = missed;
		if (leader)
			leader = par_send(mqh, &buf);
	}
	if (leader)
	{
		par_begin_message(&buf, -1);
		(void) par_send(mqh, &buf);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* Apply the rows of one message, in the order they were read. */
static void
par_apply_message(VState *st, const VParQueue *q, MemoryContext rowcxt)
{
	const char *p = q->msg + sizeof(VParHeader);
	const char *end = q->msg + q->len;
	MemoryContext old = MemoryContextSwitchTo(rowcxt);

	while (p < end)
	{
		VParRow		r;
		RowFacts	f;

		if (end - p < (long) sizeof(r))
			elog(ERROR, "trialvault: a parallel verify worker sent a truncated row");
		memcpy(&r, p, sizeof(r));
		p += sizeof(r);
		if (r.nrefs < 0 || end - p < (long) (r.nrefs * sizeof(int64)))
			elog(ERROR, "trialvault: a parallel verify worker sent a truncated row");
		memset(&f, 0, sizeof(f));
		f.tid = r.tid;
		f.has_seq = r.has_seq;
		f.has_hash = r.has_hash;
		f.has_prev = r.has_prev;
		f.refs_ok = r.refs_ok;
		f.matches = r.matches;
		f.nrefs = r.nrefs;
		f.seq = r.seq;
		memcpy(f.hash, r.hash, TV_HASH_LEN);
		memcpy(f.prev, r.prev, TV_HASH_LEN);
		f.refs = palloc(Max(r.nrefs, 1) * sizeof(int64));
		memcpy(f.refs, p, r.nrefs * sizeof(int64));
		p += r.nrefs * sizeof(int64);
		apply_row(st, &f);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(rowcxt);
}

/*
 * The pass over the table with parallel workers (trialvault.verify_workers),
 * when the table is large enough (min_parallel_table_scan_size, heap and
 * TOAST together) and workers can be had; false, having done nothing,
 * otherwise (scan_rows does it alone).
 */
static bool
scan_rows_parallel(Relation rel, VState *st)
{
	/* No more than could ever be launched: each has a queue. */
	int			nworkers = Min(tv_verify_workers, max_parallel_workers);
	BlockNumber nblocks;
	BlockNumber toastblocks = 0;
	BlockNumber chunk_blocks;
	ParallelContext *pcxt;
	VParShared *sh;
	char	   *space;
	VParQueue  *queues;
	int			nq;
	int			i;
	uint32		chunk = 0;
	MemoryContext rowcxt;

	if (nworkers <= 0 || st->heads_only || IsInParallelMode() ||
		rel->rd_rel->relam != HEAP_TABLE_AM_OID || RelationUsesLocalBuffers(rel))
		return false;
	nblocks = RelationGetNumberOfBlocks(rel);
	if (OidIsValid(rel->rd_rel->reltoastrelid))
	{
		Relation	toastrel = table_open(rel->rd_rel->reltoastrelid, AccessShareLock);

		toastblocks = RelationGetNumberOfBlocks(toastrel);
		table_close(toastrel, AccessShareLock);
	}
	if (nblocks == 0 ||
		(double) nblocks + toastblocks < (double) min_parallel_table_scan_size)
		return false;
	/* Parts small enough to share well, large enough to cost little each. */
	chunk_blocks = Max(1, Min(TV_PAR_MAX_PART, nblocks / (nworkers * 16)));

	EnterParallelMode();
	pcxt = CreateParallelContext("$libdir/trialvault", "tv_verify_worker", nworkers);
	shm_toc_estimate_chunk(&pcxt->estimator, sizeof(VParShared));
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(TV_PAR_QUEUE_SIZE, nworkers));
	shm_toc_estimate_keys(&pcxt->estimator, 2);
	InitializeParallelDSM(pcxt);
	if (pcxt->seg == NULL)
	{
		DestroyParallelContext(pcxt);
		ExitParallelMode();
		return false;
	}
	sh = shm_toc_allocate(pcxt->toc, sizeof(VParShared));
	sh->relid = RelationGetRelid(rel);
	sh->nblocks = nblocks;
	sh->chunk_blocks = chunk_blocks;
	pg_atomic_init_u32(&sh->next_chunk, 0);
	shm_toc_insert(pcxt->toc, TV_PAR_KEY_SHARED, sh);
	space = shm_toc_allocate(pcxt->toc, mul_size(TV_PAR_QUEUE_SIZE, nworkers));
	shm_toc_insert(pcxt->toc, TV_PAR_KEY_QUEUES, space);
	queues = palloc0(sizeof(VParQueue) * nworkers);
	for (i = 0; i < nworkers; i++)
	{
		shm_mq	   *mq = shm_mq_create(space + (Size) i * TV_PAR_QUEUE_SIZE,
									   TV_PAR_QUEUE_SIZE);

		shm_mq_set_receiver(mq, MyProc);
		queues[i].mqh = shm_mq_attach(mq, pcxt->seg, NULL);
	}
	LaunchParallelWorkers(pcxt);
	nq = pcxt->nworkers_launched;
	if (nq == 0)
	{
		DestroyParallelContext(pcxt);
		ExitParallelMode();
		return false;
	}
	for (i = 0; i < nq; i++)
		shm_mq_set_handle(queues[i].mqh, pcxt->worker[i].bgwhandle);

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault verify row",
								   ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		VParQueue  *q = NULL;
		bool		waiting = false;

		for (i = 0; i < nq && q == NULL; i++)
		{
			VParQueue  *qi = &queues[i];

			if (!qi->pending && !qi->done)
			{
				void	   *data;
				shm_mq_result res = shm_mq_receive(qi->mqh, &qi->len, &data, true);

				if (res == SHM_MQ_SUCCESS)
				{
					if (qi->len < sizeof(VParHeader))
						elog(ERROR, "trialvault: a parallel verify worker sent a truncated message");
					qi->msg = data;
					memcpy(&qi->head, qi->msg, sizeof(VParHeader));
					if (qi->head.chunk < 0)
						qi->done = true;
					else
						qi->pending = true;
				}
				else if (res == SHM_MQ_DETACHED)
					qi->done = true;
				else
					waiting = true;
			}
			if (qi->pending && qi->head.chunk == (int32) chunk)
				q = qi;
		}
		if (q != NULL)
		{
			par_apply_message(st, q, rowcxt);
			q->pending = false;
			if (q->head.last)
			{
				st->toast_taken += q->head.toast_taken;
				st->toast_patched += q->head.toast_patched;
				st->toast_missed += q->head.toast_missed;
				chunk++;
			}
			continue;
		}
		if (!waiting)
			break;				/* every worker finished, or holds a later part */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, 0,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	/* A worker's error is raised here, in the leader. */
	WaitForParallelWorkersToFinish(pcxt);
	if ((uint64) chunk * chunk_blocks < nblocks)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("trialvault verify of \"%s\" did not get every part of the table from its parallel workers",
						RelationGetRelationName(rel)),
				 errdetail("Part %u of %u blocks was not received.", chunk, chunk_blocks),
				 errhint("Run verify again, or with trialvault.verify_workers = 0.")));
	DestroyParallelContext(pcxt);
	ExitParallelMode();
	MemoryContextDelete(rowcxt);
	ereport(DEBUG1,
			(errmsg_internal("trialvault verify read \"%s\" with %d parallel workers, in parts of %u blocks",
							 RelationGetRelationName(rel), nq, chunk_blocks)));
	return true;
}

static bool
slot_seq(TupleTableSlot *slot, AttrNumber att, int64 *seq)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);

	if (isnull)
		return false;
	*seq = DatumGetInt64(d);
	return true;
}

/*
 * The row whose tv_seq is seq, through the tv_seq index, into slot (of
 * several copies, the first by ctid, as B-tree keeps equal keys in heap
 * order); false if there is none.  The index only finds rows: the value is
 * checked on the row itself.
 */
static bool
lookup_seq(IndexScanDesc scan, TupleTableSlot *slot, AttrNumber seqatt, int64 seq)
{
	ScanKeyData key;
	int64		found;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(seq));
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
		if (slot_seq(slot, seqatt, &found) && found == seq)
			return true;
	return false;
}

/*
 * After the scan: rows still waiting are given the hashes of predecessors
 * the window had let go of (a second scan, reading only the chain columns,
 * when there are any: a predecessor referred to long after it was stored,
 * by a transaction that stayed open meanwhile); a predecessor never
 * scanned is missing.  In verify(since => ...), predecessors below the
 * floor are read through the index.
 */
static void
finish_links(Relation rel, const TvChainCols *cols, VState *st)
{
	want_iterator it;
	WantEntry  *w;
	bool		rescan = false;
	dlist_mutable_iter miter;

	if (st->since)
	{
		/* Every row below the floor is old: read it through the index. */
		want_start_iterate(st->wanted, &it);
		while ((w = want_iterate(st->wanted, &it)) != NULL)
		{
			uint8		hash[TV_HASH_LEN];
			WinEntry   *h;

			if (w->filled ||
				!lookup_seq(st->lookup, st->lookup_slot, cols->seq, w->seq))
				continue;
			if (!get_hash_col(st->lookup_slot, cols->hash, hash))
				memset(hash, 0, TV_HASH_LEN);
			if ((h = win_lookup(st->digest_heads, w->seq)) != NULL)
				h->referenced = true;
			fill_wanted(st, w, hash);
		}
	}
	else
	{
		want_start_iterate(st->wanted, &it);
		while ((w = want_iterate(st->wanted, &it)) != NULL)
			if (!w->filled && was_seen(st, w->seq))
				rescan = true;
	}
	if (rescan)
	{
		TableScanDesc scan;
		TupleTableSlot *slot;

		st->rescanned = true;
		scan = table_beginscan_strat(rel, st->snapshot, 0, NULL, true, false);
		slot = table_slot_create(rel, NULL);
		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			Datum		d;
			uint8		hash[TV_HASH_LEN];

			CHECK_FOR_INTERRUPTS();
			d = slot_getattr(slot, cols->seq, &isnull);
			if (isnull)
				continue;
			w = want_lookup(st->wanted, DatumGetInt64(d));
			if (w == NULL || w->filled)
				continue;		/* the first copy by ctid is the row */
			if (!get_hash_col(slot, cols->hash, hash))
				memset(hash, 0, TV_HASH_LEN);
			fill_wanted(st, w, hash);
		}
		ExecDropSingleTupleTableSlot(slot);
		table_endscan(scan);
	}

	dlist_foreach_modify(miter, &st->pending)
	{
		Pending    *p = dlist_container(Pending, node, miter.cur);
		int			j;

		for (j = 0; j < p->nrefs; j++)
		{
			w = want_lookup(st->wanted, p->refs[j].seq);
			if (w != NULL && !w->filled)
				break;
		}
		Assert(j < p->nrefs);
		note_bad(st, &p->bad, p->seq, &p->tid,
				 psprintf("its predecessor tv_seq=%lld is missing (removed?)",
						  (long long) p->refs[Min(j, p->nrefs - 1)].seq));
		dlist_delete(&p->node);
		pfree(p);
	}
}

/* The rows no row refers to, by tv_seq. */
static void
collect_heads(VState *st, TvVerdict *v)
{
	win_iterator it;
	WinEntry   *e;
	int64		n = 0;

	v->heads = MemoryContextAllocHuge(CurrentMemoryContext,
									  Max(st->window->members + st->unreferenced->members +
										  (st->digest_heads ? st->digest_heads->members : 0), 1) * sizeof(TvHead));
	win_start_iterate(st->window, &it);
	while ((e = win_iterate(st->window, &it)) != NULL)
	{
		if (e->referenced)
			continue;
		v->heads[n].seq = e->seq;
		memcpy(v->heads[n].hash, e->hash, TV_HASH_LEN);
		n++;
	}
	win_start_iterate(st->unreferenced, &it);
	while ((e = win_iterate(st->unreferenced, &it)) != NULL)
	{
		v->heads[n].seq = e->seq;
		memcpy(v->heads[n].hash, e->hash, TV_HASH_LEN);
		n++;
	}
	/* In verify(since => ...), the digest's heads no new row refers to. */
	if (st->digest_heads)
	{
		win_start_iterate(st->digest_heads, &it);
		while ((e = win_iterate(st->digest_heads, &it)) != NULL)
		{
			if (e->referenced || e->seq >= st->floor)
				continue;		/* at or above the floor, they were scanned */
			v->heads[n].seq = e->seq;
			memcpy(v->heads[n].hash, e->hash, TV_HASH_LEN);
			n++;
		}
	}
	qsort(v->heads, n, sizeof(TvHead), tv_head_cmp);
	v->nheads = n;
}

/*
 * The extension's own objects, compared with what the installed version's
 * script sealed (catalog.c): a function, view or table of the extension
 * changed behind the guards' back makes every verify() report it, since no
 * table's verdict is worth more than the code that guards it.
 */
static char *
extension_problem(void)
{
	char	   *problem;
	MemoryContext outer = CurrentMemoryContext;
	TvAsOwner	as;

	/* The seal is readable by the extension's owner only. */
	tv_owner_spi_begin(&as);
	problem = tv_catalog_problem();
	if (problem)
		problem = MemoryContextStrdup(outer, problem);
	tv_owner_spi_end(&as);
	return problem;
}

/*
 * The table's ascending B-tree index on tv_seq (protect() makes a unique
 * one): the way back through the chain for tv_verdict_covered(), and to the
 * new rows for verify(since => ...); InvalidOid if it has none.  The index
 * only finds rows: each is read from the table itself, and a row it fails
 * to return leaves a count short or a predecessor missing, which fails
 * closed.
 */
static Oid
seq_index(Relation rel, AttrNumber seqatt)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index ix = idx->rd_index;
		bool		usable;

		usable = idx->rd_rel->relam == BTREE_AM_OID &&
			ix->indisvalid && ix->indisready && ix->indislive &&
			ix->indkey.values[0] == seqatt &&
			idx->rd_opfamily[0] == INTEGER_BTREE_FAM_OID &&
			(idx->rd_indoption[0] & INDOPTION_DESC) == 0 &&
			heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL);
		if (usable && (!OidIsValid(found) || ix->indisunique))
			found = RelationGetRelid(idx);
		index_close(idx, AccessShareLock);
	}
	list_free(indexes);
	return found;
}

/* What tv_verdict_covered() needs of a verified table. */
typedef struct VTable
{
	Oid			relid;
	TvChainCols cols;
} VTable;

/*
 * Open a table to verify: 42P01, 42501 (no SELECT), 55000 (not protected).
 */
static Relation
open_protected(Oid relid, TvChainCols *cols)
{
	Relation	rel;
	AclResult	aclresult;

	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, RelationGetRelationName(rel));
	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		!tv_find_chain_cols(RelationGetDescr(rel), cols))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not protected by trialvault",
						RelationGetRelationName(rel)),
				 errdetail("It has no trialvault chain columns to verify."),
				 errhint("Protect it with trialvault.protect('%s').",
						 RelationGetRelationName(rel))));
	return rel;
}

static VState *
new_state(void)
{
	VState	   *st = palloc0(sizeof(VState));

	st->cxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault verify",
									ALLOCSET_DEFAULT_SIZES);
	st->window = win_create(st->cxt, Min(tv_verify_window, 1024), NULL);
	st->unreferenced = win_create(st->cxt, 64, NULL);
	st->seen = seen_create(st->cxt, 64, NULL);
	st->wanted = want_create(st->cxt, 64, NULL);
	st->ring = MemoryContextAllocHuge(st->cxt, (Size) tv_verify_window * sizeof(int64));
	dlist_init(&st->pending);
	return st;
}

/*
 * The verdict from a finished scan: heads, head digest, what the rows
 * depend on (the first problem beyond the rows goes to guard).
 */
static void
finish_verdict(Relation rel, VState *st, TvVerdict *v)
{
	Oid			relid = RelationGetRelid(rel);

	collect_heads(st, v);
	ereport(DEBUG1,
			(errmsg_internal("trialvault verify of \"%s\": %lld rows, a window of %d rows, %lld rows waited for predecessors outside it, %s",
							 RelationGetRelationName(rel), (long long) st->nrows,
							 tv_verify_window, (long long) st->waited,
							 st->since ? "predecessors below the floor read through the index" :
							 st->rescanned ? "with a second scan of the chain columns" : "in one scan")));
	if (st->toast_taken + st->toast_missed > 0)
		ereport(DEBUG1,
				(errmsg_internal("trialvault verify read %llu out-of-line values of \"%s\" in storage order and looked up %llu through the TOAST index; %llu of those read had chunks stored apart, looked up one by one",
								 (unsigned long long) st->toast_taken,
								 RelationGetRelationName(rel),
								 (unsigned long long) st->toast_missed,
								 (unsigned long long) st->toast_patched)));
	tv_prev_digest(v->heads, (int) Min(v->nheads, PG_INT32_MAX), v->head_digest);

	v->guard = tv_guard_problem(relid);
	if (v->guard == NULL)
		v->guard = tv_table_problem(relid);
	if (v->guard == NULL)
		v->guard = extension_problem();
	if (v->guard == NULL && !tv_loaded_at_preload)
		v->guard = pstrdup("trialvault is not in shared_preload_libraries, so its DDL guards are not active in every session");

	v->ok = st->bad_rows == 0 && v->guard == NULL;
	v->nrows = st->nrows;
	v->bad_rows = st->bad_rows;
	v->max_seq = st->max_seq;
	v->first_bad = st->first_bad ? pstrdup(st->first_bad) : NULL;
}

/*
 * Verify a protected table: the verdict of trialvault.verify(), with the
 * chain's heads.  Refuses (42501, 55000) a table the caller may not read or
 * that is not protected.
 */
void
tv_verify_table(Oid relid, TvVerdict *v)
{
	Relation	rel;
	TvChainCols cols;
	VState	   *st;
	VTable	   *vt;

	memset(v, 0, sizeof(*v));
	rel = open_protected(relid, &cols);
	st = new_state();
	st->snapshot = GetActiveSnapshot();
	if (!scan_rows_parallel(rel, st))
		scan_rows(rel, &cols, st);
	finish_links(rel, &cols, st);
	finish_verdict(rel, st, v);
	relation_close(rel, AccessShareLock);

	vt = palloc(sizeof(VTable));
	vt->relid = relid;
	vt->cols = cols;
	v->state = vt;
	MemoryContextDelete(st->cxt);
	pfree(st);
}

/*
 * tv_scan_heads: the rows of rel that no row refers to, by tv_seq (the
 * chain's open ends), into a palloc'd *heads, and its largest tv_seq (0
 * for none), as snap sees them: for chain.c, which rebuilds a table's
 * chain state from them.  Same bounded memory as verify(), and no hashing.
 */
void
tv_scan_heads(Relation rel, const TvChainCols *cols, Snapshot snap,
			  TvHead **heads, int64 *nheads, int64 *max_seq)
{
	VState	   *st = new_state();
	TvVerdict	v;

	st->heads_only = true;
	st->snapshot = snap;
	scan_rows(rel, cols, st);
	memset(&v, 0, sizeof(v));
	collect_heads(st, &v);
	*heads = v.heads;
	*nheads = v.nheads;
	*max_seq = st->max_seq;
	MemoryContextDelete(st->cxt);
	pfree(st);
}

/*
 * Follow the chain back through the tv_seq index from the rows in needed
 * (none newer than newest), down to floor: each row reached is taken out
 * of needed, added to reached (when given) and its predecessors at or above
 * floor put in.  Returns how many rows were reached; what is left in needed
 * was not found.  Memory as wide as the chain, not as long.
 */
static int64
walk_back(Relation rel, Relation idx, const TvChainCols *cols, win_hash *needed,
		  int64 floor, int64 newest, win_hash *reached)
{
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData keys[2];
	MemoryContext rowcxt;
	int64		count = 0;
	bool		found;

	if (needed->members == 0)
		return 0;
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault verify row",
								   ALLOCSET_DEFAULT_SIZES);
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 2, 0);
	ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(floor));
	ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(newest));
	index_rescan(scan, keys, 2, NULL, 0);
	while (needed->members > 0 && index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		int64		seq;
		WinEntry   *e;
		int64	   *refs;
		int			nrefs;
		int			j;
		MemoryContext oldcxt;

		CHECK_FOR_INTERRUPTS();
		if (!slot_seq(slot, cols->seq, &seq) || (e = win_lookup(needed, seq)) == NULL)
			continue;
		win_delete_item(needed, e);
		count++;
		if (reached)
			(void) win_insert(reached, seq, &found);
		oldcxt = MemoryContextSwitchTo(rowcxt);
		if (tv_get_prev_seqs(slot, cols->prev_seqs, &refs, &nrefs))
			for (j = 0; j < nrefs; j++)
				if (refs[j] >= floor && refs[j] < seq)
					(void) win_insert(needed, refs[j], &found);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
	return count;
}

/*
 * How many rows of a verified chain the given heads reach (themselves and
 * every row before them through the links); -1 with *problem set when a
 * head is not in the chain, or is there with another hash.  The chain is
 * followed backwards through the tv_seq index, keeping only the rows still
 * to be reached: memory as wide as the chain, not as long.
 */
int64
tv_verdict_covered(TvVerdict *v, const TvHead *heads, int64 nheads, char **problem)
{
	VTable	   *vt = (VTable *) v->state;
	Relation	rel;
	Relation	idx;
	Oid			idxoid;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	win_hash   *needed;
	int64		covered = 0;
	int64		newest = PG_INT64_MIN;
	int64		i;

	*problem = NULL;
	rel = table_open(vt->relid, AccessShareLock);
	idxoid = seq_index(rel, vt->cols.seq);
	if (!OidIsValid(idxoid))
	{
		*problem = psprintf("table %s has no ascending B-tree index on tv_seq, which following the chain back from the digest's heads needs (CREATE UNIQUE INDEX ON %s (tv_seq) restores the one protect() made)",
							RelationGetRelationName(rel), RelationGetRelationName(rel));
		table_close(rel, AccessShareLock);
		return -1;
	}
	idx = index_open(idxoid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);
	needed = win_create(CurrentMemoryContext, 64, NULL);

	/* Each head there, with the hash the digest recorded. */
	for (i = 0; i < nheads && *problem == NULL; i++)
	{
		bool		found = lookup_seq(scan, slot, vt->cols.seq, heads[i].seq);
		uint8		hash[TV_HASH_LEN];

		if (found && !get_hash_col(slot, vt->cols.hash, hash))
			memset(hash, 0, TV_HASH_LEN);
		if (!found)
			*problem = psprintf("row tv_seq=%lld, a head when the digest was taken, is missing",
								(long long) heads[i].seq);
		else if (memcmp(hash, heads[i].hash, TV_HASH_LEN) != 0)
			*problem = psprintf("row tv_seq=%lld differs from what the digest covered (it was rewritten after the digest was taken)",
								(long long) heads[i].seq);
		else
		{
			bool		dummy;

			(void) win_insert(needed, heads[i].seq, &dummy);
			newest = Max(newest, heads[i].seq);
		}
	}

	/* Back from the newest head, each row reached adding its predecessors. */
	if (*problem == NULL)
	{
		covered = walk_back(rel, idx, &vt->cols, needed, PG_INT64_MIN, newest, NULL);
		if (needed->members > 0)
		{
			win_iterator it;
			WinEntry   *e;

			win_start_iterate(needed, &it);
			e = win_iterate(needed, &it);
			*problem = psprintf("row tv_seq=%lld, which the chain leads back to, was not found through the table's index on tv_seq (REINDEX the index)",
								(long long) e->seq);
		}
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	win_destroy(needed);
	return *problem ? -1 : covered;
}

/* The seven columns both forms of verify() begin with. */
static void
verdict_values(const TvVerdict *v, Datum *values, bool *nulls)
{
	values[0] = BoolGetDatum(v->ok);
	values[1] = Int64GetDatum(v->nrows);
	if (v->first_bad)
		values[2] = CStringGetTextDatum(v->first_bad);
	else if (v->guard)
		values[2] = CStringGetTextDatum(psprintf("table guard: %s", v->guard));
	else
		nulls[2] = true;
	values[3] = Int64GetDatum(v->bad_rows);
	values[4] = Int64GetDatum(v->nheads);
	values[5] = PointerGetDatum(tv_hash_bytea(v->head_digest));
	values[6] = CStringGetTextDatum(v->guard ? v->guard : "intact");
}

PG_FUNCTION_INFO_V1(tv_verify);

/*
 * trialvault.verify(tbl regclass)
 *	 RETURNS (ok, rows_checked, first_bad, bad_rows, heads, head_digest, guard)
 */
Datum
tv_verify(PG_FUNCTION_ARGS)
{
	TvVerdict	v;
	TupleDesc	rettupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table to verify must not be NULL")));
	if (get_call_result_type(fcinfo, NULL, &rettupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "trialvault: verify() must return a row");

	tv_verify_table(PG_GETARG_OID(0), &v);

	verdict_values(&v, values, nulls);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rettupdesc),
													  values, nulls)));
}

void
tv_verify_init(void)
{
	DefineCustomIntVariable("trialvault.verify_window",
							"Rows trialvault.verify() keeps in memory to check each row's link to its predecessors.",
							"About 100 bytes a row.  A row whose predecessor was stored further back than this (say, by a transaction open while this many rows were inserted) is checked by a second scan of the chain columns.",
							&tv_verify_window,
							65536, 16, 10000000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.verify_workers",
							"Parallel workers a full trialvault.verify() may use to read and hash the rows.",
							"Used when the table and its TOAST relation together are at least min_parallel_table_scan_size, and taken from max_parallel_workers; 0 reads and hashes in the session alone.  The verdict is the same either way.",
							&tv_verify_workers,
							2, 0, 64,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
}

/*
 * The digest's heads, each present with the hash it recorded, kept in
 * st->digest_heads; a head missing or changed is a problem with the table
 * (counted in bad_rows, named in first_bad).  Returns the newest head's
 * tv_seq, PG_INT64_MIN for none.
 */
static int64
check_digest_heads(VState *st, const TvDigest *d, const TvChainCols *cols)
{
	int64		newest = PG_INT64_MIN;
	int64		i;

	st->digest_heads = win_create(st->cxt, Max(d->nheads, 16), NULL);
	for (i = 0; i < d->nheads; i++)
	{
		const TvHead *h = &d->heads[i];
		bool		found;
		WinEntry   *e = win_insert(st->digest_heads, h->seq, &found);
		uint8		hash[TV_HASH_LEN];
		bool		bad = false;
		ItemPointerData none;

		e->referenced = false;
		memcpy(e->hash, h->hash, TV_HASH_LEN);
		newest = Max(newest, h->seq);
		ItemPointerSetInvalid(&none);
		if (!lookup_seq(st->lookup, st->lookup_slot, cols->seq, h->seq))
			note_bad(st, &bad, h->seq, &none,
					 "a head when the digest was taken, it is missing (removed?)");
		else if (!get_hash_col(st->lookup_slot, cols->hash, hash) ||
				 memcmp(hash, h->hash, TV_HASH_LEN) != 0)
			note_bad(st, &bad, h->seq, &st->lookup_slot->tts_tid,
					 "it differs from what the digest covered (it was rewritten after the digest was taken)");
	}
	return newest;
}

/*
 * The rows at or above the floor that the digest covered: those its heads
 * reach, found going back through the index from the newest head to the
 * floor.  Few: the rows of transactions in flight when it was taken.
 */
static win_hash *
old_rows_above_floor(VState *st, Relation rel, Relation idx, const TvDigest *d,
					 const TvChainCols *cols, int64 newest)
{
	win_hash   *old = win_create(st->cxt, 64, NULL);
	win_hash   *needed = win_create(st->cxt, 64, NULL);
	int64		i;
	bool		found;

	for (i = 0; i < d->nheads; i++)
		if (d->heads[i].seq >= d->floor)
			(void) win_insert(needed, d->heads[i].seq, &found);
	(void) walk_back(rel, idx, cols, needed, d->floor, newest, old);
	win_destroy(needed);
	return old;
}

/*
 * The rows added since the digest: every row at or above its floor, in
 * tv_seq order through the index, but those the digest covered (which only
 * stand in as predecessors, with their recorded tv_hash).
 */
static void
scan_rows_since(Relation rel, Relation idx, const TvChainCols *cols, VState *st,
				win_hash *old)
{
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData key;
	MemoryContext rowcxt;
	MemoryContext oldcxt;
	TvRowLayout *layout = tv_row_layout(RelationGetDescr(rel), cols);

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault verify row",
								   ALLOCSET_DEFAULT_SIZES);
	slot = table_slot_create(rel, NULL);
	/* The new rows' values are stored from about the first one on. */
	layout->toast = tv_toast_scan_begin(rel, GetActiveSnapshot(), true);
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);
	ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(st->floor));
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		int64		seq;

		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(rowcxt);
		if (slot_seq(slot, cols->seq, &seq) && win_lookup(old, seq) != NULL &&
			!was_seen(st, seq))
		{
			uint8		hash[TV_HASH_LEN];

			(void) mark_seen(st, seq);
			if (!get_hash_col(slot, cols->hash, hash))
				memset(hash, 0, TV_HASH_LEN);
			window_add(st, seq, hash);
			/* Only the digest's heads may still be open ends. */
			if (win_lookup(st->digest_heads, seq) == NULL)
				win_lookup(st->window, seq)->referenced = true;
		}
		else
			check_row(st, slot, layout, cols);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
	}
	index_endscan(scan);
	tv_toast_scan_end(layout->toast, &st->toast_taken, &st->toast_patched, &st->toast_missed);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
}

PG_FUNCTION_INFO_V1(tv_verify_since);

/*
 * trialvault.verify(tbl regclass, since text)
 *	 RETURNS (ok, rows_checked, first_bad, bad_rows, heads, head_digest, guard,
 *			  rows_not_rehashed, scope)
 *
 * Verify only what was added after a signed digest (version 2, which
 * records a floor): each new row rehashed and its links checked, down to
 * the rows the digest covered, whose recorded tv_hash is taken as it is;
 * the digest's heads must be there unchanged.  Old rows are not rehashed:
 * the result says so, and a full verify() does that.
 */
Datum
tv_verify_since(PG_FUNCTION_ARGS)
{
	Oid			relid;
	TvDigest	d;
	Relation	rel;
	Relation	idx;
	Oid			idxoid;
	TvChainCols cols;
	VState	   *st;
	TvVerdict	v;
	win_hash   *old;
	char	   *problem;
	int64		newest;
	TupleDesc	rettupdesc;
	Datum		values[9];
	bool		nulls[9] = {false, false, false, false, false, false, false, false, false};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("arguments of trialvault.verify must not be NULL")));
	if (get_call_result_type(fcinfo, NULL, &rettupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "trialvault: verify() must return a row");
	relid = PG_GETARG_OID(0);
	rel = open_protected(relid, &cols);
	tv_digest_parse(PG_GETARG_TEXT_PP(1), &d);
	if (!d.has_floor)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the digest records no floor, so the rows added since it cannot be told apart"),
				 errdetail("It is a version 1 digest, from trialvault before 0.11."),
				 errhint("Take a new digest with trialvault.signed_digest('%s') and use that one.",
						 RelationGetRelationName(rel))));
	problem = tv_digest_trust_problem(relid, &d);
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the digest cannot be relied on: %s", problem),
				 errhint("Pass a digest trialvault.signed_digest() returned for this table, unchanged.")));
	idxoid = seq_index(rel, cols.seq);
	if (!OidIsValid(idxoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no ascending B-tree index on tv_seq, which verify(since => ...) reads the new rows through",
						RelationGetRelationName(rel)),
				 errhint("CREATE UNIQUE INDEX ON %s (tv_seq) restores the one protect() made; trialvault.verify('%s') needs none.",
						 quote_identifier(RelationGetRelationName(rel)),
						 RelationGetRelationName(rel))));

	memset(&v, 0, sizeof(v));
	st = new_state();
	st->snapshot = GetActiveSnapshot();
	st->since = true;
	st->floor = d.floor;
	idx = index_open(idxoid, AccessShareLock);
	st->lookup_slot = table_slot_create(rel, NULL);
	st->lookup = index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);

	newest = check_digest_heads(st, &d, &cols);
	old = old_rows_above_floor(st, rel, idx, &d, &cols, newest);
	scan_rows_since(rel, idx, &cols, st, old);
	finish_links(rel, &cols, st);
	finish_verdict(rel, st, &v);

	index_endscan(st->lookup);
	ExecDropSingleTupleTableSlot(st->lookup_slot);
	index_close(idx, AccessShareLock);

	verdict_values(&v, values, nulls);
	values[7] = Int64GetDatum(d.rows);
	values[8] = CStringGetTextDatum(psprintf("the %lld rows added since the digest taken at %s were rehashed and their links checked; the %lld rows it covered were not rehashed (trialvault.verify('%s') rehashes every row)",
											 (long long) v.nrows, d.taken_at, (long long) d.rows,
											 RelationGetRelationName(rel)));
	relation_close(rel, AccessShareLock);
	MemoryContextDelete(st->cxt);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rettupdesc),
													  values, nulls)));
}
