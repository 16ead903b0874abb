/* libcurl in C, with no Python at all: the floor any libcurl-based engine sits on.

     cc -O2 -o libcurl_loop benchmarks/libcurl_loop.c -ldl
     ./libcurl_loop LIBCURL_SO URL BODY_FILE HTTP_VERSION CONCURRENCY DURATION_S

   benchmarks/fidelity.py builds and runs it as the "libcurl in C" row (`--engines
   libcurl-c`), loading the very libcurl pycurl's wheel bundles, beside wrk / h2load and
   "libcurl alone" (benchmarks/curl_alone.py, the same loop through pycurl). Same
   contract as curl_alone.py: the same request and headers, a 0.5 s warm-up, then
   "warm" on stdout, then one JSON line (requests, wall_s, p50_us from libcurl's own
   TOTAL_TIME_T, errors, cpu_s of this process over the measured loop).

     CONCURRENCY 1   one easy handle, curl_easy_perform() in a loop (its connection kept)
     CONCURRENCY >1  one multi with that many easy handles, re-added as each ends;
                     HTTP/1.1 on that many connections, HTTP/2 multiplexed on one

   libcurl is loaded with dlopen and its constants written out here (the values
   curl/curl.h gives them; they are part of libcurl's stable ABI), so no libcurl
   headers or -dev package are needed: only a C compiler. */

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef void CURL;
typedef void CURLM;
struct curl_slist;
typedef struct { int msg; CURL *easy_handle; union { void *whatever; int result; } data; } CURLMsg;

/* curl/curl.h: option = type base + number */
enum {
    OPT_URL = 10000 + 2, OPT_PROXY = 10000 + 4, OPT_POSTFIELDS = 10000 + 15,
    OPT_HTTPHEADER = 10000 + 23,
    OPT_WRITEFUNCTION = 20000 + 11, OPT_POSTFIELDSIZE = 0 + 60, OPT_HTTP_VERSION = 0 + 84,
    OPT_NOSIGNAL = 0 + 99, OPT_PIPEWAIT = 0 + 237,
    M_PIPELINING = 0 + 3, M_MAXCONNECTS = 0 + 6, M_MAX_HOST_CONNECTIONS = 0 + 7,
    INFO_TOTAL_TIME_T = 0x600000 + 50,
    HTTP_1_1 = 2, HTTP_2_PRIOR_KNOWLEDGE = 5, PIPE_NOTHING = 0, PIPE_MULTIPLEX = 2,
    MSG_DONE = 1,
};
#define WARMUP_S 0.5
#define MAX_SAMPLES 4000000

static CURL *(*easy_init)(void);
static int (*easy_setopt)(CURL *, int, ...);
static int (*easy_perform)(CURL *);
static int (*easy_getinfo)(CURL *, int, ...);
static struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
static CURLM *(*multi_init)(void);
static int (*multi_setopt)(CURLM *, int, ...);
static int (*multi_add)(CURLM *, CURL *);
static int (*multi_remove)(CURLM *, CURL *);
static int (*multi_perform)(CURLM *, int *);
static int (*multi_poll)(CURLM *, void *, unsigned, int, int *);
static CURLMsg *(*multi_info_read)(CURLM *, int *);

static long long *totals;     /* TOTAL_TIME_T of measured transfers (the first MAX_SAMPLES), us */
static long n_totals, n_done; /* samples kept; measured transfers completed */

static size_t discard(char *p, size_t size, size_t n, void *u) { (void)p; (void)u; return size * n; }

static double mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static void *need(void *lib, const char *path, const char *name) {
    void *f = dlsym(lib, name);
    if (!f) { fprintf(stderr, "libcurl_loop: %s has no %s\n", path, name); exit(2); }
    return f;
}

static void record(CURL *c, int measured) {
    long long t = 0;
    easy_getinfo(c, INFO_TOTAL_TIME_T, &t);
    if (!measured) return;
    n_done++;
    if (n_totals < MAX_SAMPLES) totals[n_totals++] = t;
}

static CURL *easy(const char *url, const char *body, long body_len, long version,
                  struct curl_slist *headers) {
    CURL *c = easy_init();
    easy_setopt(c, OPT_URL, url);
    easy_setopt(c, OPT_NOSIGNAL, 1L);
    easy_setopt(c, OPT_PROXY, "");     /* never an environment proxy (as the engine) */
    easy_setopt(c, OPT_HTTP_VERSION, version);
    easy_setopt(c, OPT_POSTFIELDS, body);
    easy_setopt(c, OPT_POSTFIELDSIZE, body_len);
    easy_setopt(c, OPT_HTTPHEADER, headers);
    easy_setopt(c, OPT_WRITEFUNCTION, discard);
    if (version == HTTP_2_PRIOR_KNOWLEDGE) easy_setopt(c, OPT_PIPEWAIT, 1L);
    return c;
}

/* One user: perform() in a loop until the deadline. Returns the errors. */
static long run_one(CURL *c, double deadline, int measured) {
    long errors = 0;
    while (mono() < deadline) {
        if (easy_perform(c) != 0) errors++;
        else record(c, measured);
    }
    return errors;
}

/* Several users on one multi: each handle re-added as it ends, until the deadline. */
static long run_many(CURLM *m, CURL **handles, int conc, double deadline, int measured) {
    long errors = 0;
    int running = conc, still = 0, left = 0;
    for (int i = 0; i < conc; i++) multi_add(m, handles[i]);
    while (running) {
        multi_perform(m, &still);
        int ended = 0;
        CURLMsg *msg;
        while ((msg = multi_info_read(m, &left)) != NULL) {
            if (msg->msg != MSG_DONE) continue;
            CURL *c = msg->easy_handle;
            if (msg->data.result != 0) errors++;
            else record(c, measured);
            multi_remove(m, c);
            ended++;
            if (mono() < deadline) multi_add(m, c);
            else running--;
        }
        if (!ended) multi_poll(m, NULL, 0, 1000, NULL);
    }
    return errors;
}

static int by_value(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s LIBCURL_SO URL BODY_FILE HTTP_VERSION(1.1|2) CONCURRENCY DURATION_S\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) { fprintf(stderr, "libcurl_loop: cannot load %s: %s\n", argv[1], dlerror()); return 2; }
    easy_init = need(lib, argv[1], "curl_easy_init");
    easy_setopt = need(lib, argv[1], "curl_easy_setopt");
    easy_perform = need(lib, argv[1], "curl_easy_perform");
    easy_getinfo = need(lib, argv[1], "curl_easy_getinfo");
    slist_append = need(lib, argv[1], "curl_slist_append");
    multi_init = need(lib, argv[1], "curl_multi_init");
    multi_setopt = need(lib, argv[1], "curl_multi_setopt");
    multi_add = need(lib, argv[1], "curl_multi_add_handle");
    multi_remove = need(lib, argv[1], "curl_multi_remove_handle");
    multi_perform = need(lib, argv[1], "curl_multi_perform");
    multi_poll = need(lib, argv[1], "curl_multi_poll");
    multi_info_read = need(lib, argv[1], "curl_multi_info_read");

    FILE *f = fopen(argv[3], "rb");
    if (!f) { fprintf(stderr, "libcurl_loop: cannot read %s\n", argv[3]); return 2; }
    static char body[1 << 20];
    long body_len = (long)fread(body, 1, sizeof body, f);
    int whole = feof(f);
    fclose(f);
    if (!whole) { fprintf(stderr, "libcurl_loop: %s is over %zu bytes\n", argv[3], sizeof body); return 2; }
    long version = strcmp(argv[4], "2") == 0 ? HTTP_2_PRIOR_KNOWLEDGE : HTTP_1_1;
    int conc = atoi(argv[5]);
    double duration = atof(argv[6]);
    if (conc < 1 || duration <= 0) { fprintf(stderr, "libcurl_loop: bad concurrency or duration\n"); return 2; }
    totals = malloc(sizeof *totals * MAX_SAMPLES);

    /* The request the harness sends (clients/http_api.py), without libcurl's User-Agent. */
    struct curl_slist *headers = NULL;
    headers = slist_append(headers, "content-type: application/json");
    headers = slist_append(headers, "accept: */*");
    headers = slist_append(headers, "User-Agent:");
    headers = slist_append(headers, "Expect:");
    CURL **handles = calloc(conc, sizeof *handles);
    for (int i = 0; i < conc; i++) handles[i] = easy(argv[2], body, body_len, version, headers);
    CURLM *m = NULL;
    if (conc > 1) {
        m = multi_init();
        if (version == HTTP_2_PRIOR_KNOWLEDGE) {
            multi_setopt(m, M_PIPELINING, (long)PIPE_MULTIPLEX);
            multi_setopt(m, M_MAX_HOST_CONNECTIONS, 1L);
        } else {
            multi_setopt(m, M_PIPELINING, (long)PIPE_NOTHING);
            multi_setopt(m, M_MAXCONNECTS, (long)conc);
        }
    }

    /* Warm-up: connections open, caches warm; not recorded. */
    if (conc == 1) run_one(handles[0], mono() + WARMUP_S, 0);
    else run_many(m, handles, conc, mono() + WARMUP_S, 0);
    printf("warm\n");
    fflush(stdout);

    double c0 = cpu(), t0 = mono();
    long errors = conc == 1 ? run_one(handles[0], t0 + duration, 1)
                            : run_many(m, handles, conc, t0 + duration, 1);
    double wall = mono() - t0, cpu_s = cpu() - c0;
    qsort(totals, n_totals, sizeof *totals, by_value);
    printf("{\"requests\": %ld, \"wall_s\": %.6f, \"errors\": %ld, \"cpu_s\": %.6f, \"p50_us\": ",
           n_done, wall, errors, cpu_s);
    if (n_totals) printf("%.1f}\n", n_totals % 2 ? (double)totals[n_totals / 2]
                                     : (totals[n_totals / 2 - 1] + totals[n_totals / 2]) / 2.0);
    else printf("null}\n");
    return 0;
}
