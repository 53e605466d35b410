/* wheel_impl.c: a hashed timer wheel in self-contained C (twin: _wheel_py.py).
 *
 * Layout
 *   nodes[]    a pool of entries {deadline, tick, handle, prev, next}; nodes
 *              [0, used) have been handed out, the rest of [0, cap) never were.
 *              A node is in exactly one place: a bucket list (pending), the
 *              free list, the fired list (expired, not yet taken) or the limbo
 *              list (taken, reusable after the next tw_expire).
 *   buckets[]  nslots heads of circular doubly linked lists, in insertion
 *              order; an entry with tick t lives in bucket t & mask.
 *   table[]    open addressing (linear probing, Fibonacci hashing, backward
 *              shift deletion, load <= 1/2): handle -> node of each pending
 *              entry. Handles are the twin's (1, 2, 3, ...), so a stale one is
 *              simply absent.
 *
 * tick(d) = floor(d / resolution) clamped to [-2**62, 2**62], bit-identical to
 * the twin (IEEE division, exact floor; no -ffast-math). An entry's tick is
 * raised to the cursor when it is already in the past.
 *
 * Invariants (as in the twin): every pending tick >= cursor; an entry whose
 * tick was raised sits at the cursor tick; count == number of pending nodes;
 * tick is monotonic in the deadline, so a later tick means a later deadline.
 *
 * Complexity: insert and cancel O(1) (amortised: the pool and table double);
 * expire O(visited buckets + entries in them + f log f) for f fired, at most
 * one revolution; next_deadline O(nslots) worst case. Nothing shrinks: memory
 * follows the peak number of pending entries.
 */
#include "wheel_impl.h"

#include <math.h>
#include <stdlib.h>

#define NIL UINT32_MAX
#define MAX_TICK ((int64_t)1 << 62)
#define MAX_TICK_F 4611686018427387904.0 /* 2**62, exact in a double */
#define MAX_NODES (UINT32_MAX - 1)

typedef struct {
    double deadline;
    int64_t tick;
    int64_t handle;
    uint32_t prev, next;
} tw_node;

typedef struct {
    int64_t handle; /* 0: empty (handles are > 0) */
    uint32_t node;
} tw_slot;

struct tw_wheel {
    double res;
    int64_t cursor;
    uint64_t mask;       /* nslots - 1 */
    uint32_t *buckets;   /* [nslots] */
    tw_node *nodes;      /* [cap] */
    uint32_t cap, used;
    uint32_t free_head, fired_head, limbo_head;
    int64_t count;       /* pending entries */
    tw_slot *table;      /* [tmask + 1] */
    uint64_t tmask;
    int tshift;          /* 64 - log2(table size) */
    uint64_t tcount;
};

static int64_t tick_of(double t, double res)
{
    double q = t / res;
    if (q >= MAX_TICK_F) {
        return MAX_TICK;
    }
    if (q <= -MAX_TICK_F) {
        return -MAX_TICK;
    }
    return (int64_t)floor(q); /* |floor(q)| < 2**62: exact */
}

/* ---- handle table ---------------------------------------------------- */

static uint64_t home(const tw_wheel *w, int64_t handle)
{
    return ((uint64_t)handle * UINT64_C(0x9E3779B97F4A7C15)) >> w->tshift;
}

static uint64_t table_find(const tw_wheel *w, int64_t handle)
{
    uint64_t i = home(w, handle);
    for (;;) {
        int64_t k = w->table[i].handle;
        if (k == handle) {
            return i;
        }
        if (k == 0) {
            return UINT64_MAX;
        }
        i = (i + 1) & w->tmask;
    }
}

static void table_put(tw_slot *table, uint64_t tmask, uint64_t i, int64_t handle, uint32_t node)
{
    while (table[i].handle != 0) {
        i = (i + 1) & tmask;
    }
    table[i].handle = handle;
    table[i].node = node;
}

/* Room for one more handle at load <= 1/2; 0 or TW_NOMEM, changing nothing on failure. */
static int table_reserve(tw_wheel *w)
{
    uint64_t size = w->tmask + 1, i;
    tw_slot *old = w->table, *table;
    if ((w->tcount + 1) * 2 <= size) {
        return 0;
    }
    if (size > SIZE_MAX / sizeof(tw_slot) / 2) {
        return TW_NOMEM;
    }
    table = calloc((size_t)size * 2, sizeof(tw_slot));
    if (table == NULL) {
        return TW_NOMEM;
    }
    w->table = table;
    w->tmask = size * 2 - 1;
    w->tshift -= 1;
    for (i = 0; i < size; i++) {
        if (old[i].handle != 0) {
            table_put(table, w->tmask, home(w, old[i].handle), old[i].handle, old[i].node);
        }
    }
    free(old);
    return 0;
}

/* Is k in the cyclic range (i, j]? */
static int cyclic_between(uint64_t i, uint64_t k, uint64_t j)
{
    return i <= j ? (i < k && k <= j) : (i < k || k <= j);
}

static void table_delete(tw_wheel *w, uint64_t i)
{
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & w->tmask;
        if (w->table[j].handle == 0) {
            break;
        }
        /* the entry at j may fill the hole at i unless its home lies in (i, j] */
        if (!cyclic_between(i, home(w, w->table[j].handle), j)) {
            w->table[i] = w->table[j];
            i = j;
        }
    }
    w->table[i].handle = 0;
    w->tcount -= 1;
}

/* ---- buckets and nodes ----------------------------------------------- */

static void bucket_append(tw_wheel *w, uint64_t b, uint32_t i)
{
    tw_node *n = w->nodes;
    uint32_t head = w->buckets[b];
    if (head == NIL) {
        n[i].prev = n[i].next = i;
        w->buckets[b] = i;
    } else {
        uint32_t tail = n[head].prev;
        n[i].prev = tail;
        n[i].next = head;
        n[tail].next = i;
        n[head].prev = i;
    }
}

static void bucket_unlink(tw_wheel *w, uint64_t b, uint32_t i)
{
    tw_node *n = w->nodes;
    if (n[i].next == i) {
        w->buckets[b] = NIL;
        return;
    }
    n[n[i].prev].next = n[i].next;
    n[n[i].next].prev = n[i].prev;
    if (w->buckets[b] == i) {
        w->buckets[b] = n[i].next;
    }
}

/* A node is available (free list or never used); 0 or TW_NOMEM, changing nothing on failure. */
static int node_reserve(tw_wheel *w)
{
    uint32_t cap;
    tw_node *nodes;
    if (w->free_head != NIL || w->used < w->cap) {
        return 0;
    }
    if (w->cap >= MAX_NODES) {
        return TW_NOMEM;
    }
    cap = w->cap > MAX_NODES / 2 ? MAX_NODES : w->cap * 2;
    if ((uint64_t)cap > SIZE_MAX / sizeof(tw_node)) {
        return TW_NOMEM;
    }
    nodes = realloc(w->nodes, (size_t)cap * sizeof(tw_node));
    if (nodes == NULL) {
        return TW_NOMEM;
    }
    w->nodes = nodes;
    w->cap = cap;
    return 0;
}

static uint32_t node_take(tw_wheel *w)
{
    uint32_t i = w->free_head;
    if (i != NIL) {
        w->free_head = w->nodes[i].next;
        return i;
    }
    return w->used++;
}

/* Move a whole singly linked chain onto the free list. */
static void release_chain(tw_wheel *w, uint32_t head)
{
    while (head != NIL) {
        uint32_t next = w->nodes[head].next;
        w->nodes[head].next = w->free_head;
        w->free_head = head;
        head = next;
    }
}

/* ---- sorting fired chains by (deadline, handle) ---------------------- */

static int fires_before(const tw_node *a, const tw_node *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->handle < b->handle);
}

static uint32_t merge(tw_node *n, uint32_t a, uint32_t b)
{
    uint32_t head = NIL, *link = &head;
    while (a != NIL && b != NIL) {
        if (fires_before(&n[b], &n[a])) {
            *link = b;
            link = &n[b].next;
            b = n[b].next;
        } else {
            *link = a;
            link = &n[a].next;
            a = n[a].next;
        }
    }
    *link = a != NIL ? a : b;
    return head;
}

/* Sort the first len (>= 1) nodes of the chain at *rest; *rest moves past them. */
static uint32_t merge_sort(tw_node *n, uint32_t *rest, uint64_t len)
{
    uint32_t a, b;
    if (len == 1) {
        a = *rest;
        *rest = n[a].next;
        n[a].next = NIL;
        return a;
    }
    a = merge_sort(n, rest, len / 2);
    b = merge_sort(n, rest, len - len / 2);
    return merge(n, a, b);
}

/* ---- the interface --------------------------------------------------- */

tw_wheel *tw_new(double resolution, uint64_t nslots, double now)
{
    tw_wheel *w;
    uint64_t b;
    if (nslots < 2 || (nslots & (nslots - 1)) != 0 || nslots > SIZE_MAX / sizeof(uint32_t)) {
        return NULL;
    }
    w = calloc(1, sizeof(tw_wheel));
    if (w == NULL) {
        return NULL;
    }
    w->res = resolution;
    w->cursor = tick_of(now, resolution);
    w->mask = nslots - 1;
    w->cap = 64;
    w->free_head = w->fired_head = w->limbo_head = NIL;
    w->tmask = 127;
    w->tshift = 64 - 7;
    w->buckets = malloc((size_t)nslots * sizeof(uint32_t));
    w->nodes = malloc(w->cap * sizeof(tw_node));
    w->table = calloc(w->tmask + 1, sizeof(tw_slot));
    if (w->buckets == NULL || w->nodes == NULL || w->table == NULL) {
        tw_free(w);
        return NULL;
    }
    for (b = 0; b < nslots; b++) {
        w->buckets[b] = NIL;
    }
    return w;
}

void tw_free(tw_wheel *w)
{
    if (w != NULL) {
        free(w->buckets);
        free(w->nodes);
        free(w->table);
        free(w);
    }
}

int64_t tw_insert(tw_wheel *w, double deadline, int64_t handle)
{
    int64_t tick;
    uint32_t i;
    if (!isfinite(deadline)) {
        return TW_NOTFINITE;
    }
    if (node_reserve(w) != 0 || table_reserve(w) != 0) {
        return TW_NOMEM;
    }
    tick = tick_of(deadline, w->res);
    if (tick < w->cursor) {
        tick = w->cursor;
    }
    i = node_take(w);
    w->nodes[i].deadline = deadline;
    w->nodes[i].tick = tick;
    w->nodes[i].handle = handle;
    bucket_append(w, (uint64_t)tick & w->mask, i);
    table_put(w->table, w->tmask, home(w, handle), handle, i);
    w->tcount += 1;
    w->count += 1;
    return i;
}

int64_t tw_find(tw_wheel *w, int64_t handle)
{
    uint64_t s;
    if (handle <= 0) {
        return -1;
    }
    s = table_find(w, handle);
    return s == UINT64_MAX ? -1 : (int64_t)w->table[s].node;
}

int64_t tw_cancel(tw_wheel *w, int64_t handle)
{
    uint64_t s;
    uint32_t i;
    if (handle <= 0) {
        return -1;
    }
    s = table_find(w, handle);
    if (s == UINT64_MAX) {
        return -1;
    }
    i = w->table[s].node;
    table_delete(w, s);
    bucket_unlink(w, (uint64_t)w->nodes[i].tick & w->mask, i);
    w->nodes[i].next = w->free_head;
    w->free_head = i;
    w->count -= 1;
    return i;
}

int64_t tw_take(tw_wheel *w, uint32_t *out, int64_t cap)
{
    int64_t k = 0;
    while (k < cap && w->fired_head != NIL) {
        uint32_t i = w->fired_head;
        w->fired_head = w->nodes[i].next;
        w->nodes[i].next = w->limbo_head;
        w->limbo_head = i;
        out[k++] = i;
    }
    return k;
}

int64_t tw_expire(tw_wheel *w, double now, uint32_t *out, int64_t cap)
{
    tw_node *n = w->nodes;
    int64_t end, cursor = w->cursor, last, t, seen = 0, fired = 0;
    uint32_t chain = NIL;
    if (!isfinite(now)) {
        return TW_NOTFINITE;
    }
    /* the previous expire's nodes: the caller is done with them now */
    release_chain(w, w->limbo_head);
    release_chain(w, w->fired_head);
    w->limbo_head = w->fired_head = NIL;
    end = tick_of(now, w->res);
    if (w->count == 0) {
        if (end > cursor) {
            w->cursor = end;
        }
        return 0;
    }
    /* visit cursor..max(end, cursor), at most one revolution; when now is
     * before the cursor, entries raised to the cursor tick may still be due */
    last = end > cursor ? end : cursor;
    if ((uint64_t)last - (uint64_t)cursor > w->mask) {
        last = cursor + (int64_t)w->mask;
    }
    for (t = cursor; t <= last && seen < w->count; t++) {
        uint64_t b = (uint64_t)t & w->mask;
        uint32_t i = w->buckets[b], tail, next;
        int done;
        if (i == NIL) {
            continue;
        }
        tail = n[i].prev;
        do {
            next = n[i].next;
            done = i == tail;
            seen += 1;
            if (n[i].deadline <= now) {
                bucket_unlink(w, b, i);
                table_delete(w, table_find(w, n[i].handle));
                n[i].next = chain;
                chain = i;
                fired += 1;
            }
            i = next;
        } while (!done);
    }
    if (end > w->cursor) {
        w->cursor = end;
    }
    w->count -= fired;
    if (fired == 0) {
        return 0;
    }
    w->fired_head = merge_sort(n, &chain, (uint64_t)fired);
    tw_take(w, out, cap);
    return fired;
}

static uint32_t earliest(const tw_wheel *w, double *best_out)
{
    const tw_node *n = w->nodes;
    double best = INFINITY;
    uint32_t best_i = NIL;
    int64_t seen = 0;
    uint64_t k;
    for (k = 0; k <= w->mask && seen < w->count; k++) {
        int64_t t = w->cursor + (int64_t)k;
        uint32_t head = w->buckets[(uint64_t)t & w->mask], i = head;
        int current = 0;
        if (head == NIL) {
            continue;
        }
        do {
            if (n[i].deadline < best) {
                best = n[i].deadline;
                best_i = i;
            }
            if (n[i].tick <= t) {
                current = 1;
            }
            seen += 1;
            i = n[i].next;
        } while (i != head);
        if (current) {
            /* entries in later buckets of this revolution tick later, and
             * entries of later revolutions are a whole revolution away */
            break;
        }
    }
    *best_out = best;
    return best_i;
}

double tw_next_deadline(tw_wheel *w)
{
    double best;
    earliest(w, &best);
    return best;
}

int64_t tw_next_index(tw_wheel *w)
{
    double best;
    uint32_t i = earliest(w, &best);
    return i == NIL ? -1 : (int64_t)i;
}

int64_t tw_len(tw_wheel *w)
{
    return w->count;
}
