/* SPDX-License-Identifier: MIT */
/*
 * engine.h - the operation stream shared by the differential tester
 * (difftest.c) and the libFuzzer target (fuzz_ops.c).
 *
 * An operation is a type and three random words.  The words are read
 * relative to the state when the operation runs ("the a-th live file"),
 * so any sub-sequence of a sequence is a valid sequence: that is what
 * makes shrinking by deleting operations work.  Operations that do not
 * apply to the current state do nothing.
 */
#ifndef POLLER_FUZZ_ENGINE_H
#define POLLER_FUZZ_ENGINE_H

#include <stddef.h>
#include <stdint.h>

enum fz_type {
  FZ_NEW,       /* open a file: a picks the kind, b whether above 1024 */
  FZ_ADD,       /* poller_add on every backend */
  FZ_MOD,       /* poller_mod */
  FZ_DEL,       /* poller_del */
  FZ_PUSH,      /* poller_push */
  FZ_POP,       /* poller_pop */
  FZ_GET,       /* poller_get and poller_depth */
  FZ_NEXT,      /* poller_next from a chosen point, and a full walk */
  FZ_COUNT,     /* poller_count */
  FZ_FLUSH,     /* poller_flush */
  FZ_WAKEUP,    /* poller_wakeup */
  FZ_WAIT,      /* poller_wait: a picks the variant, b max */
  FZ_WRITE,     /* a few bytes into a file */
  FZ_READ,      /* a few bytes out of a file */
  FZ_DRAIN,     /* read until EAGAIN */
  FZ_FILL,      /* write until EAGAIN */
  FZ_SHUT,      /* shutdown(2) of a socket */
  FZ_OOB,       /* one byte of urgent data (MSG_OOB) */
  FZ_CLOSE,     /* close(2) without poller_del */
  FZ_CLOSE_DEL, /* poller_del on every backend, then close(2) */
  FZ_DUP,       /* dup(2), possibly above 1024 */
  FZ_DUP2,      /* dup2(2) of one file onto another's (registered) number */
  FZ_FORK,      /* fork; the child reinits every poller and checks them */
  FZ_NTYPES
};

struct fz_op {
  uint8_t type;
  uint32_t a, b, c;
};

/* Relaxations for defects of issue 8 that are not fixed on main yet.  Each
 * disables exactly the check (or operation) that the defect breaks; the
 * README lists them and the issue item each one waits for. */
enum fz_known {
  FZ_KNOWN_CORE_2 = 1u << 0,    /* IN with HUP when IN is in the interest */
  FZ_KNOWN_CORE_3 = 1u << 1,    /* reinit wipes a closed registered number */
  FZ_KNOWN_CORE_4 = 1u << 2,    /* poller_current after del of an NVAL fd */
  FZ_KNOWN_CORE_5 = 1u << 3,    /* the wakeup channel takes report slots */
  FZ_KNOWN_CORE_7 = 1u << 4,    /* emulated ET repeats a hang-up */
  FZ_KNOWN_EPOLL_8 = 1u << 5,   /* dup2 onto a registered number, then mod */
  FZ_KNOWN_EPOLL_9 = 1u << 6,   /* re-add after del of a closed number */
  FZ_KNOWN_URING_13 = 1u << 7,  /* io_uring reports an earlier moment */
  FZ_KNOWN_URING_14 = 1u << 8,  /* io_uring spins on RDHUP without IN */
  FZ_KNOWN_URING_15 = 1u << 9,  /* io_uring reports PRI for data */
  FZ_KNOWN_URING_16 = 1u << 10, /* io_uring and /dev/null */
  FZ_KNOWN_URING_12 = 1u << 11, /* io_uring del of a fresh ET poll */
  FZ_KNOWN_CORE_1 = 1u << 12,   /* poller_next(INT_MAX) crashes */
  FZ_KNOWN_EPOLL_REBUILD = 1u << 13, /* the ghost rebuild re-reports ET */
  FZ_KNOWN_EPOLL_STALE = 1u << 14,   /* a stale report ends a wait */
  FZ_KNOWN_URING_LATE = 1u << 15,    /* io_uring reports a wake-up late */
};

struct fz_known_info {
  unsigned bit;
  const char *name;
  const char *what;
};
extern const struct fz_known_info fz_known_list[];
/* The relaxations in force by default (the defects still open on main). */
extern const unsigned fz_known_default;

struct fz_config {
  unsigned backends; /* bit (1u << b) per enum poller_backend */
  unsigned known;    /* FZ_KNOWN_* relaxations in force */
  int verbose;       /* trace every operation to stderr */
  int allow_fork;    /* FZ_FORK runs (off in the libFuzzer target) */
};

/* Fills ops[0..n) from seed. */
void fz_generate(uint64_t seed, struct fz_op *ops, int n);

/* Decodes a byte string into at most max operations (libFuzzer input). */
int fz_decode(const uint8_t *data, size_t size, struct fz_op *ops, int max);

/* Runs the sequence in this process against a fresh set of pollers and
 * files, and releases them all before it returns.  Returns 0 when every
 * check held; 1 with a one-line description in why (including the check's
 * name, between the first pair of brackets) and the index of the failing
 * operation in *at. */
int fz_run(const struct fz_config *cfg, const struct fz_op *ops, int n,
           char *why, size_t whylen, int *at);

const char *fz_type_name(int type);
int fz_type_from_name(const char *name);

#endif
