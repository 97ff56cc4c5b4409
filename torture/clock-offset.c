/*
 * A clock that runs ahead, for the torture test's clock-skew fault: preloaded into a PostgreSQL server
 * (LD_PRELOAD), it adds PGBISYNC_CLOCK_OFFSET_MS (>= 0) to the wall clock the server reads
 * (gettimeofday, clock_gettime of CLOCK_REALTIME*), so its commit timestamps are that far in the other
 * servers' future. Monotonic clocks are left alone. Built by scripts/torture.sh with the machine's cc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long offset_ns(void) {
  static long long offset = -1;
  if (offset < 0) {
    const char *ms = getenv("PGBISYNC_CLOCK_OFFSET_MS");
    long long v = ms == NULL ? 0 : atoll(ms);
    offset = v > 0 ? v * 1000000LL : 0;
  }
  return offset;
}

static void shift(struct timespec *ts) {
  long long ns = (long long)ts->tv_nsec + offset_ns();
  ts->tv_sec += ns / 1000000000LL;
  ts->tv_nsec = ns % 1000000000LL;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
  static int (*real)(clockid_t, struct timespec *);
  if (real == NULL) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
  int r = real(id, ts);
  if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) shift(ts);
  return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  (void)tz;
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
  tv->tv_sec = ts.tv_sec;
  tv->tv_usec = ts.tv_nsec / 1000;
  return 0;
}
