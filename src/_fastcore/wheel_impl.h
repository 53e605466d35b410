/* wheel_impl.h: the C core of _fastcore._wheel (a hashed timer wheel).
 *
 * Self-contained C (no Python API), reached through cffi: _wheel_build.py feeds
 * the declarations between the cffi markers below to ffibuilder.cdef, so this
 * header is the single source of the interface. See wheel_impl.c for the
 * layout, invariants and complexity; _wheel_py.py for the reference semantics.
 */
#ifndef FASTCORE_WHEEL_IMPL_H
#define FASTCORE_WHEEL_IMPL_H

#include <stdint.h>

/* cffi-begin */
typedef struct tw_wheel tw_wheel;

/* A wheel of nslots buckets (a power of two >= 2; the caller checks), whose
 * cursor starts at tick(now). NULL when memory runs out. */
tw_wheel *tw_new(double resolution, uint64_t nslots, double now);
void tw_free(tw_wheel *w);

/* Schedule an entry with this handle (> 0, never reused; the caller numbers
 * them). Returns its node index (>= 0), TW_NOMEM or TW_NOTFINITE. */
int64_t tw_insert(tw_wheel *w, double deadline, int64_t handle);

/* Forget a pending entry. Returns its node index, or -1 when the handle is
 * not pending (fired, cancelled or unknown). */
int64_t tw_cancel(tw_wheel *w, int64_t handle);

/* The node index of a pending handle, or -1; changes nothing. */
int64_t tw_find(tw_wheel *w, int64_t handle);

/* Remove the entries whose deadline is <= now, sorted by (deadline, handle).
 * Returns how many fired (or TW_NOTFINITE) and writes the node indices of the
 * first min(count, cap) to out; tw_take writes the next ones. Fired nodes are
 * reused only after the next tw_expire, so the caller may read its own
 * per-node data until then. */
int64_t tw_expire(tw_wheel *w, double now, uint32_t *out, int64_t cap);
int64_t tw_take(tw_wheel *w, uint32_t *out, int64_t cap);

/* The earliest pending deadline (INFINITY when none), and the node holding it
 * (the first inserted among equal deadlines; -1 when none). */
double tw_next_deadline(tw_wheel *w);
int64_t tw_next_index(tw_wheel *w);

int64_t tw_len(tw_wheel *w);

#define TW_NOMEM -2
#define TW_NOTFINITE -3
/* cffi-end */

#endif
