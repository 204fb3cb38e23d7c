/*
 * transport_internal.h - the hook between the loop and the transports
 * (src/transport.c).
 */
#ifndef POLLER_TRANSPORT_INTERNAL_H
#define POLLER_TRANSPORT_INTERNAL_H

#include "poller_loop.h"

/* Closes and frees every transport and listener of `loop`, without
 * callbacks.  poller_loop_close calls it first, while the loop's watchers
 * and timers still work (poller_loop.h: "closes every transport and
 * listener"). */
void poller__transport_close_all(poller_loop *loop);

#endif
