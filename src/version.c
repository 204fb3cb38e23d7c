/* SPDX-License-Identifier: MIT */
/*
 * version.c - the version of the library linked at run time.  The numbers
 * come from poller.h as compiled into the library, so a program built
 * against other headers can tell (POLLER_VERSION vs poller_version()).
 */
#include "poller.h"

#define POLLER_STR_(x) #x
#define POLLER_STR(x) POLLER_STR_(x)

int poller_version(void) { return POLLER_VERSION; }

const char *poller_version_string(void) {
  return POLLER_STR(POLLER_VERSION_MAJOR) "." POLLER_STR(
      POLLER_VERSION_MINOR) "." POLLER_STR(POLLER_VERSION_PATCH);
}
