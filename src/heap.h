/* SPDX-License-Identifier: MIT */
/*
 * heap.h - the timer heap: a binary min-heap of poller_timer pointers
 * ordered by (deadline_ns, seq), so equal deadlines fire in start order.
 * Each timer keeps its index, which makes removal O(log n).  Internal.
 */
#ifndef POLLER_HEAP_H
#define POLLER_HEAP_H

#include "poller_loop.h"

#include <stddef.h>

static inline int poller__timer_less(const poller_timer *a,
                                     const poller_timer *b) {
  if (a->deadline_ns != b->deadline_ns)
    return a->deadline_ns < b->deadline_ns;
  return a->seq < b->seq;
}

static inline void poller__heap_set(poller_timer **h, size_t i,
                                    poller_timer *t) {
  h[i] = t;
  t->heap_index = i;
}

static inline void poller__heap_up(poller_timer **h, size_t i) {
  poller_timer *t = h[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!poller__timer_less(t, h[parent]))
      break;
    poller__heap_set(h, i, h[parent]);
    i = parent;
  }
  poller__heap_set(h, i, t);
}

static inline void poller__heap_down(poller_timer **h, size_t n, size_t i) {
  poller_timer *t = h[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && poller__timer_less(h[c + 1], h[c]))
      c++;
    if (!poller__timer_less(h[c], t))
      break;
    poller__heap_set(h, i, h[c]);
    i = c;
  }
  poller__heap_set(h, i, t);
}

/* Removes h[i] from a heap of *n entries. */
static inline void poller__heap_remove(poller_timer **h, size_t *n,
                                       size_t i) {
  (*n)--;
  if (i == *n)
    return;
  poller__heap_set(h, i, h[*n]);
  if (i > 0 && poller__timer_less(h[i], h[(i - 1) / 2]))
    poller__heap_up(h, i);
  else
    poller__heap_down(h, *n, i);
}

#endif
