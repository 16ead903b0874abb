/* A native load tool made slower per request by a known amount: the "native+N" rows of
   benchmarks/fidelity.py (`--engines native+15,native+30`).

     cc -O2 -shared -fPIC -o slowed_native.so benchmarks/slowed_native.c -ldl
     WIREBENCH_ADDED_US=30 LD_PRELOAD=./slowed_native.so wrk ...

   Preloaded into wrk or h2load, it busy-waits WIREBENCH_ADDED_US microseconds of CPU at
   the start of every write to a socket (write, writev, send, sendmsg on a descriptor
   above stderr), then writes. At one user that is once per request (wrk writes each
   request with one write, h2load with one writev), so the tool keeps its own traffic,
   event loop and timing, and only its per-request client work grows. It answers how far
   a client that much slower than the native tool can reach against the same server,
   whatever its code: the cost of client turnaround on this machine. Busy-waiting, not
   sleeping, so the client core stays awake as a busier client's would. */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static long added_ns = -1;

static void busy_wait(int fd) {
    if (fd <= 2)
        return;
    if (added_ns < 0) {
        const char *us = getenv("WIREBENCH_ADDED_US");
        added_ns = us ? atol(us) * 1000L : 0;
    }
    if (added_ns <= 0)
        return;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < added_ns);
}

/* Each wrapper finds the real call once (the next definition after this library). */
ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real)
        real = dlsym(RTLD_NEXT, "write");
    busy_wait(fd);
    return real(fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real)
        real = dlsym(RTLD_NEXT, "writev");
    busy_wait(fd);
    return real(fd, iov, count);
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
    static ssize_t (*real)(int, const void *, size_t, int);
    if (!real)
        real = dlsym(RTLD_NEXT, "send");
    busy_wait(fd);
    return real(fd, buf, n, flags);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (!real)
        real = dlsym(RTLD_NEXT, "sendmsg");
    busy_wait(fd);
    return real(fd, msg, flags);
}
