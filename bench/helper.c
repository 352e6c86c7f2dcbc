/* bench/helper.c: the tiny programs that bench/run puts *under* each lock.
 *
 * They are in C (compiled by bench/run with the same `cc` that links
 * lockrun) so that what runs inside the lock costs as little and varies as
 * little as possible: a shell or Python child would add milliseconds of its
 * own start-up to every sample and drown the differences between the tools.
 *
 *   helper cs COUNTER PAUSE_US
 *       One critical section: read the integer in COUNTER, sleep PAUSE_US
 *       microseconds, write the integer + 1 back. Deliberately unprotected:
 *       two of these running at once lose an increment.
 *   helper stamp FILE
 *       Append CLOCK_MONOTONIC (ns) to FILE and exit at once: the waiter's
 *       child in the hand-off test.
 *   helper hold READY GO STAMP TIMEOUT_MS
 *       The holder's child: create READY, wait until a byte arrives on the
 *       FIFO GO (or TIMEOUT_MS passes), append CLOCK_MONOTONIC to STAMP
 *       (unless it is "-"), exit.
 *   helper floor COUNT
 *       Calibration: COUNT times, take a timestamp, posix_spawn
 *       "helper stamp F", wait for it, and print the median of
 *       (stamp - timestamp) in ns: the exec + dynamic-loader floor that is
 *       included in every hand-off sample, whatever the lock tool.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int append_stamp(const char *path, long long t) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld\n", t);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    if (write(fd, buf, (size_t)n) != n) {
        perror(path);
        close(fd);
        return 1;
    }
    close(fd);
    return 0;
}

static int critical_section(const char *path, long pause_us) {
    char buf[64] = {0};
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0) {
        perror("read counter");
        return 1;
    }
    long long value = atoll(buf);
    if (pause_us > 0) {
        struct timespec ts = {pause_us / 1000000, (pause_us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    int len = snprintf(buf, sizeof buf, "%lld\n", value + 1);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        perror("write counter");
        return 1;
    }
    close(fd);
    return 0;
}

static int hold(const char *ready, const char *go, const char *stamp, int timeout_ms) {
    /* O_RDWR on a FIFO never sees EOF and never blocks in open(). */
    int gfd = open(go, O_RDWR | O_CLOEXEC);
    if (gfd < 0) {
        perror(go);
        return 1;
    }
    int rfd = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (rfd < 0) {
        perror(ready);
        return 1;
    }
    close(rfd);
    struct pollfd p = {gfd, POLLIN, 0};
    int r;
    while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (r == 0) {
        fprintf(stderr, "helper hold: timed out waiting for %s\n", go);
        return 3;
    }
    char c;
    if (read(gfd, &c, 1) < 0) {
        perror("read go");
    }
    if (strcmp(stamp, "-") != 0) {
        return append_stamp(stamp, now_ns());
    }
    return 0;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static int floor_calibration(const char *self, int count) {
    char path[] = "/tmp/lockrun-bench-floor-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    close(fd);
    long long *samples = calloc((size_t)count, sizeof *samples);
    if (!samples) return 1;
    for (int i = 0; i < count; i++) {
        if (truncate(path, 0) != 0) {
            perror("truncate");
            return 1;
        }
        char *argv[] = {(char *)self, "stamp", path, NULL};
        pid_t pid;
        long long t0 = now_ns();
        if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0) {
            perror("posix_spawn");
            return 1;
        }
        int status;
        waitpid(pid, &status, 0);
        FILE *f = fopen(path, "r");
        long long t1 = 0;
        if (!f || fscanf(f, "%lld", &t1) != 1) {
            fprintf(stderr, "floor: no stamp\n");
            return 1;
        }
        fclose(f);
        samples[i] = t1 - t0;
    }
    unlink(path);
    qsort(samples, (size_t)count, sizeof *samples, cmp_ll);
    printf("%lld\n", samples[count / 2]);
    return 0;
}

static int usage(void) {
    fprintf(stderr,
            "usage: helper cs COUNTER PAUSE_US | stamp FILE | "
            "hold READY GO STAMP TIMEOUT_MS | floor COUNT\n");
    return 64;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    const char *mode = argv[1];
    if (strcmp(mode, "stamp") == 0 && argc == 3) return append_stamp(argv[2], now_ns());
    if (strcmp(mode, "cs") == 0 && argc == 4) return critical_section(argv[2], atol(argv[3]));
    if (strcmp(mode, "hold") == 0 && argc == 6)
        return hold(argv[2], argv[3], argv[4], atoi(argv[5]));
    if (strcmp(mode, "floor") == 0 && argc == 3) return floor_calibration(argv[0], atoi(argv[2]));
    return usage();
}
