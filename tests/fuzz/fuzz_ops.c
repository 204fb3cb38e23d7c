/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ops.c - libFuzzer target over the difftest operation stream: the
 * input bytes are decoded into operations (four bytes each) and run on
 * every available backend against the model, in process.  A failed check
 * aborts with its description, which libFuzzer records with the input.
 *
 * Build with clang (see tests/fuzz/README.md); run for N seconds with
 *   ./fuzz_ops -max_total_time=N -max_len=4096 corpus/
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct fz_op ops[2048];
  static const struct fz_config cfg = {
      .backends = ~0u, .known = 0, .verbose = 0, .allow_fork = 0};
  static struct fz_config c;
  c = cfg;
  c.known = fz_known_default;
  const char *env = getenv("DIFFTEST_STRICT");
  if (env && *env == '1')
    c.known = 0;
  int n = fz_decode(data, size, ops, 2048);
  char why[1024];
  int at;
  if (fz_run(&c, ops, n, why, sizeof why, &at)) {
    fprintf(stderr, "difftest check failed at op %d of %d: %s\n", at, n, why);
    abort();
  }
  return 0;
}
