/* SPDX-License-Identifier: MIT */
/*
 * version.c - poller_version() and poller_version_string() agree with each
 * other and with the headers' POLLER_VERSION_* macros.  The installed
 * shared library's file name and soname are checked against the same
 * numbers by tests/install/run.sh.
 */
#include "harness.h"

#include <stdio.h>

TEST(version_matches_headers) {
  ASSERT_EQ(POLLER_VERSION, POLLER_VERSION_MAJOR * 10000 +
                                POLLER_VERSION_MINOR * 100 +
                                POLLER_VERSION_PATCH);
  ASSERT_EQ(poller_version(), POLLER_VERSION);
  /* Each part fits its two decimal digits, or the number is ambiguous. */
  ASSERT_TRUE(POLLER_VERSION_MINOR >= 0 && POLLER_VERSION_MINOR < 100);
  ASSERT_TRUE(POLLER_VERSION_PATCH >= 0 && POLLER_VERSION_PATCH < 100);
}

TEST(version_string_matches_number) {
  const char *s = poller_version_string();
  ASSERT_TRUE(s != NULL);
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", POLLER_VERSION_MAJOR,
           POLLER_VERSION_MINOR, POLLER_VERSION_PATCH);
  if (strcmp(s, want) != 0)
    FAIL("poller_version_string() is \"%s\", the headers say \"%s\"", s,
         want);
  int major, minor, patch;
  char rest;
  ASSERT_EQ(sscanf(s, "%d.%d.%d%c", &major, &minor, &patch, &rest), 3);
  ASSERT_EQ(major * 10000 + minor * 100 + patch, poller_version());
  /* The same pointer every time: a static string the caller keeps. */
  ASSERT_TRUE(poller_version_string() == s);
}
