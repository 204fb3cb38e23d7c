/* SPDX-License-Identifier: MIT */
/*
 * difftest.c - the differential random-operation tester's command line.
 *
 * Each run of a sequence happens in a forked child, so a crash, a
 * sanitizer report or a hang (killed by an alarm) is a failure of that
 * seed like any failed check, and the next seed starts clean.
 *
 *   difftest [--seed N] [--ops N] [--seeds N | --seconds S]
 *            [--backends select,poll,epoll,uring,kqueue]
 *            [--replay FILE]... [--shrink] [--out FILE] [-v]
 *            [--strict] [--known NAME,...] [--list-known]
 *
 * See tests/fuzz/README.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine.h"

#include "poller.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXOPS 100000

static struct fz_config cfg;
static int hang_seconds = 120;

/* Shared with the child: the failure text and where it happened. */
struct result {
  int at;
  char why[1024];
};
static struct result *res;

/* Runs ops[0..n) in a child.  Returns 0 when it passed, 1 when it failed
 * (res holds the reason). */
static int run_child(const struct fz_op *ops, int n) {
  memset(res, 0, sizeof *res);
  res->at = -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    exit(2);
  }
  if (pid == 0) {
    alarm((unsigned)hang_seconds);
    int at = -1;
    int r = fz_run(&cfg, ops, n, res->why, sizeof res->why, &at);
    res->at = at;
    _exit(r ? 1 : 0);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) {
      perror("waitpid");
      exit(2);
    }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  if (!res->why[0]) {
    if (WIFSIGNALED(status))
      snprintf(res->why, sizeof res->why, "[signal] killed by signal %d%s",
               WTERMSIG(status), WTERMSIG(status) == SIGALRM ? " (hang)" : "");
    else
      snprintf(res->why, sizeof res->why, "[exit] exit status %d",
               WEXITSTATUS(status));
  }
  return 1;
}

/* The check's name: the text between the first brackets. */
static void check_name(const char *why, char *name, size_t len) {
  const char *a = strchr(why, '['), *b = a ? strchr(a, ']') : NULL;
  if (!a || !b || (size_t)(b - a) >= len) {
    snprintf(name, len, "?");
    return;
  }
  memcpy(name, a + 1, (size_t)(b - a - 1));
  name[b - a - 1] = 0;
}

static int write_seq(const char *path, const struct fz_op *ops, int n,
                     const char *note) {
  FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
  if (!f) {
    perror(path);
    return -1;
  }
  fprintf(f, "# poller difftest sequence: %d operations\n", n);
  if (note && *note)
    fprintf(f, "# %s\n", note);
  for (int i = 0; i < n; i++)
    fprintf(f, "%s %u %u %u\n", fz_type_name(ops[i].type), ops[i].a, ops[i].b,
            ops[i].c);
  if (f != stdout)
    fclose(f);
  return 0;
}

static int read_seq(const char *path, struct fz_op *ops, int max) {
  FILE *f = fopen(path, "r");
  if (!f) {
    perror(path);
    exit(2);
  }
  char line[512];
  int n = 0;
  while (fgets(line, sizeof line, f) && n < max) {
    char name[64];
    unsigned a, b, c;
    if (line[0] == '#' || line[0] == '\n')
      continue;
    if (sscanf(line, "%63s %u %u %u", name, &a, &b, &c) != 4 ||
        fz_type_from_name(name) < 0) {
      fprintf(stderr, "%s: bad line: %s", path, line);
      exit(2);
    }
    ops[n++] = (struct fz_op){(uint8_t)fz_type_from_name(name), a, b, c};
  }
  fclose(f);
  return n;
}

/* Delta debugging (ddmin) over the operation list: removes chunks while
 * the same check still fails. */
static int shrink(struct fz_op *ops, int n, const char *check) {
  static struct fz_op trial[MAXOPS];
  char name[64];
  int chunk = n / 2;
  if (chunk < 1)
    chunk = 1;
  while (chunk >= 1) {
    int removed = 0;
    for (int start = 0; start < n;) {
      int len = chunk < n - start ? chunk : n - start;
      int m = 0;
      for (int i = 0; i < n; i++)
        if (i < start || i >= start + len)
          trial[m++] = ops[i];
      if (m > 0 && run_child(trial, m)) {
        check_name(res->why, name, sizeof name);
        if (strcmp(name, check) == 0) {
          /* Everything after the failing operation is irrelevant. */
          if (res->at >= 0 && res->at + 1 < m)
            m = res->at + 1;
          memcpy(ops, trial, (size_t)m * sizeof *ops);
          n = m;
          removed = 1;
          fprintf(stderr, "  shrink: %d operations\n", n);
          continue;
        }
      }
      start += len;
    }
    if (!removed)
      chunk /= 2;
    else if (chunk > n / 2 && n > 1)
      chunk = n / 2;
  }
  return n;
}

static unsigned parse_backends(const char *list) {
  unsigned m = 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
    int b = poller_backend_from_name(t);
    if (b <= 0) {
      fprintf(stderr, "unknown backend %s\n", t);
      exit(2);
    }
    m |= 1u << b;
  }
  return m;
}

static unsigned parse_known(const char *list) {
  unsigned m = 0;
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
    int found = 0;
    for (int i = 0; fz_known_list[i].name; i++)
      if (strcmp(t, fz_known_list[i].name) == 0 ||
          strcmp(t, fz_known_list[i].name + 12) == 0) {
        m |= fz_known_list[i].bit;
        found = 1;
      }
    if (!found && strcmp(t, "none") != 0) {
      fprintf(stderr, "unknown relaxation %s (see --list-known)\n", t);
      exit(2);
    }
  }
  return m;
}

static void usage(void) {
  fprintf(stderr,
          "usage: difftest [--seed N] [--ops N] [--seeds N | --seconds S]\n"
          "  [--backends LIST] [--replay FILE]... [--shrink] [--out FILE]\n"
          "  [-v] [--strict] [--known NAME,...] [--list-known]\n");
  exit(2);
}

int main(int argc, char **argv) {
  static struct fz_op ops[MAXOPS];
  unsigned long long seed = 1;
  int nops = 300, nseeds = -1, seconds = -1, do_shrink = 0, seed_given = 0;
  const char *replay[64];
  int nreplay = 0;
  const char *out = NULL;
  cfg.backends = ~0u;
  cfg.known = fz_known_default;
  cfg.allow_fork = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--seed") && v) {
      seed = strtoull(v, NULL, 0);
      seed_given = 1;
      i++;
    } else if (!strcmp(a, "--ops") && v) {
      nops = atoi(v);
      i++;
    } else if (!strcmp(a, "--seeds") && v) {
      nseeds = atoi(v);
      i++;
    } else if (!strcmp(a, "--seconds") && v) {
      seconds = atoi(v);
      i++;
    } else if (!strcmp(a, "--backends") && v) {
      cfg.backends = parse_backends(v);
      i++;
    } else if (!strcmp(a, "--replay") && v) {
      if (nreplay < 64)
        replay[nreplay++] = v;
      i++;
    } else if (!strcmp(a, "--out") && v) {
      out = v;
      i++;
    } else if (!strcmp(a, "--known") && v) {
      cfg.known = parse_known(v);
      i++;
    } else if (!strcmp(a, "--strict")) {
      cfg.known = 0;
    } else if (!strcmp(a, "--shrink")) {
      do_shrink = 1;
    } else if (!strcmp(a, "-v")) {
      cfg.verbose = 1;
    } else if (!strcmp(a, "--list-known")) {
      for (int k = 0; fz_known_list[k].name; k++)
        printf("%-22s %s%s\n", fz_known_list[k].name, fz_known_list[k].what,
               (fz_known_default & fz_known_list[k].bit) ? " (default)" : "");
      return 0;
    } else {
      usage();
    }
  }
  if (nops < 1 || nops > MAXOPS)
    usage();
  res = mmap(NULL, sizeof *res, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (res == MAP_FAILED) {
    perror("mmap");
    return 2;
  }
  unsigned avail = poller_available() & cfg.backends;
  printf("difftest: backends");
  for (int b = 1; b <= POLLER_URING; b++)
    if (avail & (1u << b))
      printf(" %s", poller_backend_name(b));
  printf("; relaxations:");
  int any = 0;
  for (int k = 0; fz_known_list[k].name; k++)
    if (cfg.known & fz_known_list[k].bit) {
      printf(" %s", fz_known_list[k].name + 12);
      any = 1;
    }
  printf("%s\n", any ? "" : " none");
  char name[64];

  if (nreplay) {
    int failed = 0;
    for (int r = 0; r < nreplay; r++) {
      int n = read_seq(replay[r], ops, MAXOPS);
      if (cfg.verbose)
        hang_seconds = 600;
      if (run_child(ops, n)) {
        printf("FAIL %s (%d ops): %s\n", replay[r], n, res->why);
        failed++;
        if (do_shrink) {
          check_name(res->why, name, sizeof name);
          n = shrink(ops, n, name);
          write_seq(out ? out : "-", ops, n, res->why);
        }
      } else {
        printf("ok   %s (%d ops)\n", replay[r], n);
      }
    }
    return failed ? 1 : 0;
  }

  if (!seed_given) {
    seed = (unsigned long long)time(NULL);
    printf("difftest: time-derived seed %llu\n", seed);
  }
  if (nseeds < 0 && seconds < 0)
    nseeds = 1;
  time_t t0 = time(NULL);
  long long runs = 0, total_ops = 0;
  for (unsigned long long sd = seed;; sd++) {
    if (nseeds >= 0 && runs >= nseeds)
      break;
    if (seconds >= 0 && runs > 0 && time(NULL) - t0 >= seconds)
      break;
    fz_generate(sd, ops, nops);
    runs++;
    total_ops += nops;
    if (!run_child(ops, nops)) {
      if (cfg.verbose)
        printf("ok seed %llu\n", sd);
      continue;
    }
    printf("FAIL seed %llu: %s\n", sd, res->why);
    printf("  replay: difftest --seed %llu --ops %d", sd, nops);
    if (cfg.backends != ~0u) {
      printf(" --backends ");
      int first = 1;
      for (int b = 1; b <= POLLER_URING; b++)
        if (cfg.backends & (1u << b)) {
          printf("%s%s", first ? "" : ",", poller_backend_name(b));
          first = 0;
        }
    }
    printf(" -v\n  shrink: difftest --seed %llu --ops %d --shrink\n", sd, nops);
    fflush(stdout);
    if (do_shrink) {
      int n = res->at >= 0 ? res->at + 1 : nops;
      check_name(res->why, name, sizeof name);
      n = shrink(ops, n, name);
      char note[1200];
      snprintf(note, sizeof note, "seed %llu: %s", sd, res->why);
      run_child(ops, n);
      snprintf(note, sizeof note, "seed %llu, minimized: %s", sd, res->why);
      write_seq(out ? out : "-", ops, n, note);
    }
    printf("difftest: %lld runs, %lld operations, 1 failure\n", runs,
           total_ops);
    return 1;
  }
  printf("difftest: %lld runs (seeds %llu..%llu), %lld operations, no "
         "failure\n",
         runs, seed, seed + (unsigned long long)runs - 1, total_ops);
  return 0;
}
