/*
 * loadgen: the benchmark suite's load generator (single-threaded epoll).
 *
 *   loadgen echo HOST PORT CONNS DEPTH SIZE WARMUP_S SECONDS SERVER_PID
 *       CONNS connections each keep DEPTH messages of SIZE bytes in flight;
 *       every echoed byte is compared with what was sent.
 *   loadgen chat HOST PORT CLIENTS SENDERS LINES WINDOW SERVER_PID
 *       CLIENTS join; SENDERS each send LINES numbered lines, at most
 *       WINDOW ahead of the oldest not yet received by everyone; every
 *       client checks it gets every other sender's lines once, in order.
 *   loadgen idle HOST PORT CONNS ECHO HOLD_S
 *       open CONNS connections (ECHO=1: each verifies one 64-byte echo;
 *       ECHO=0: each waits for a first byte, e.g. a banner), print a
 *       "ready" line, hold them HOLD_S seconds.
 *
 *   loadgen serve HOST PORT
 *       a C echo server to compare with: level-triggered epoll, TCP_NODELAY,
 *       a 256 KiB buffer per connection; it stops reading from a peer until
 *       what it owes that peer is sent (backpressure).
 *   loadgen chatserve HOST PORT
 *       a C chat server to compare with: every line ("/..." commands
 *       ignored) goes to every other client as "<cN> line"; the lines
 *       read in one epoll round are formatted once into a shared buffer,
 *       and each client gets one writev of the parts that are not its own
 *       (per-round batching); a client owing more than 4 MiB is cut.
 *
 * The load modes print one JSON line on stdout.  Exit 0 ok; 2 wrong, lost or reordered data;
 * 3 connection dropped; 4 timeout; 5 connect failed; 1 usage.
 * SERVER_PID (or 0) is sampled from /proc for the server's CPU use.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PATTERN (1 << 20)
#define HIST_US 2000000 /* latency histogram: 1 us buckets up to 2 s */

static unsigned char pattern[2 * PATTERN];
static uint32_t hist[HIST_US + 1];
static uint64_t hist_n;
static int ep;
static struct sockaddr_in dst;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
}

static void fail(int code, const char *what, const char *fmt, ...) {
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    fprintf(stderr, "loadgen: %s: %s\n", what, detail);
    printf("{\"ok\": false, \"error\": \"%s\", \"detail\": \"%s\"}\n", what, detail);
    exit(code);
}

static void record(uint64_t ns) {
    uint64_t us = ns / 1000;
    hist[us > HIST_US ? HIST_US : us]++;
    hist_n++;
}

static double percentile(double p) {
    uint64_t want = (uint64_t)(p * hist_n), seen = 0;
    for (int i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen > want) return i;
    }
    return HIST_US;
}

static double cpu_seconds_of(int pid) {
    if (pid <= 0) return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long utime = 0, stime = 0;
    if (p) sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
    return (double)(utime + stime) / sysconf(_SC_CLK_TCK);
}

static double own_cpu_seconds(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static int open_connection(void *tag) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) fail(5, "connect", "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)
        fail(5, "connect", "connect: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = tag};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    return fd;
}

static void want_write(int fd, void *tag, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = tag};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

static int connected_ok(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) fail(5, "connect", "%s", strerror(err));
    return 1;
}

/* ---------------------------------------------------------------- echo */

struct echo_conn {
    int fd, writing;
    uint64_t sent, received, queued; /* byte offsets into this connection's stream */
    uint64_t *started;               /* ring: start time of each message in flight */
    uint64_t first_msg, next_msg;    /* message numbers: oldest in flight, next to queue */
    size_t base;                     /* where this connection's stream starts in the pattern */
};

static int conns_n, depth_n, size_n;

/* Queue messages up to the depth (unless stopping), send what the socket takes. */
static void echo_pump(struct echo_conn *c, int stopping, uint64_t now) {
    while (!stopping && c->next_msg - c->first_msg < (uint64_t)depth_n) {
        c->started[c->next_msg % depth_n] = now;
        c->next_msg++;
        c->queued += size_n;
    }
    while (c->sent < c->queued) {
        size_t at = (c->base + c->sent) % PATTERN, want = c->queued - c->sent;
        if (want > PATTERN) want = PATTERN;
        ssize_t w = send(c->fd, pattern + at, want, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == ENOTCONN)) break;
        if (w <= 0) fail(3, "dropped", "send: %s", strerror(errno));
        c->sent += w;
    }
    int need = c->sent < c->queued;
    if (need != c->writing) {
        want_write(c->fd, c, need);
        c->writing = need;
    }
}

static int run_echo(int argc, char **argv) {
    if (argc != 6) return 1;
    int conns = conns_n = atoi(argv[0]), depth = depth_n = atoi(argv[1]), size = size_n = atoi(argv[2]);
    double warmup = atof(argv[3]), seconds = atof(argv[4]);
    int server_pid = atoi(argv[5]);
    if (conns < 1 || depth < 1 || size < 1 || size > PATTERN || seconds <= 0) return 1;
    struct echo_conn *cs = calloc(conns, sizeof *cs);
    unsigned char *rbuf = malloc(1 << 18);
    for (int i = 0; i < conns; i++) {
        cs[i].started = calloc(depth, sizeof(uint64_t));
        cs[i].base = ((size_t)i * 104729u) % PATTERN;
        cs[i].fd = open_connection(&cs[i]);
        cs[i].writing = 1;
    }
    uint64_t t0 = now_ns(), t_measure = t0 + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(seconds * 1e9), t_drain = t_end + 10000000000u;
    uint64_t done_in_window = 0;
    double srv0 = 0, own0 = 0;
    int measuring = 0, stopping = 0;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_measure) {
            measuring = 1;
            srv0 = cpu_seconds_of(server_pid);
            own0 = own_cpu_seconds();
        }
        if (now >= t_end) {
            stopping = 1;
            int open = 0;
            for (int i = 0; i < conns; i++) open += cs[i].received < cs[i].queued;
            if (!open) break;
            if (now > t_drain) fail(4, "timeout", "echoes stalled after the run");
        }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < n; e++) {
            struct echo_conn *c = evs[e].data.ptr;
            if (evs[e].events & (EPOLLERR | EPOLLHUP)) connected_ok(c->fd);
            if (evs[e].events & EPOLLIN) {
                ssize_t r = recv(c->fd, rbuf, 1 << 18, 0);
                if (r == 0) fail(3, "dropped", "server closed a connection");
                if (r < 0 && errno != EAGAIN) fail(3, "dropped", "recv: %s", strerror(errno));
                if (r > 0) {
                    if (c->received + r > c->sent) fail(2, "wrong", "more bytes echoed than sent");
                    for (ssize_t off = 0; off < r;) {
                        size_t at = (c->base + c->received + off) % PATTERN;
                        size_t run = r - off < PATTERN ? r - off : PATTERN;
                        if (memcmp(rbuf + off, pattern + at, run))
                            fail(2, "wrong", "echoed bytes differ at offset %llu",
                                 (unsigned long long)(c->received + off));
                        off += run;
                    }
                    c->received += r;
                    uint64_t t = now_ns();
                    while (c->first_msg < c->next_msg && (c->first_msg + 1) * size <= c->received) {
                        if (measuring && t < t_end) {
                            record(t - c->started[c->first_msg % depth]);
                            done_in_window++;
                        }
                        c->first_msg++;
                    }
                }
            }
            echo_pump(c, stopping, now_ns());
        }
    }
    double srv = cpu_seconds_of(server_pid) - srv0, own = own_cpu_seconds() - own0;
    double window = (now_ns() - t_measure) / 1e9;
    printf("{\"ok\": true, \"msgs_per_s\": %.1f, \"mb_per_s\": %.2f, \"p50_us\": %.0f, \"p99_us\": %.0f, "
           "\"server_cpu_pct\": %.1f, \"load_cpu_pct\": %.1f}\n",
           done_in_window / seconds, done_in_window * (double)size / seconds / 1e6, percentile(0.5),
           percentile(0.99), 100 * srv / window, 100 * own / window);
    return 0;
}

/* ---------------------------------------------------------------- chat */

struct chat_client {
    int fd, idx, synced;
    char in[65536];
    size_t inlen;
    char *out;
    size_t outlen, outcap;
    int *next_seq; /* per sender: the sequence number expected next */
};

static int K, M, N;
static int *delivered;     /* K x M: how many clients have each line */
static int *oldest;        /* per sender: oldest line not yet delivered to all */
static uint64_t deliveries;

static void queue_out(struct chat_client *c, const char *data, size_t len) {
    if (c->outlen + len > c->outcap) {
        c->outcap = (c->outlen + len) * 2;
        c->out = realloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, data, len);
    c->outlen += len;
}

static void flush_out(struct chat_client *c) {
    while (c->outlen) {
        ssize_t w = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) break;
        if (w <= 0) fail(3, "dropped", "send by client %d: %s", c->idx, strerror(errno));
        memmove(c->out, c->out + w, c->outlen - w);
        c->outlen -= w;
    }
    want_write(c->fd, c, c->outlen > 0);
}

static void handle_line(struct chat_client *c, char *line) {
    char *token = strstr(line, "~Q");
    if (token) {
        int s, q;
        unsigned long long ns;
        if (sscanf(token, "~Q%d,%d,%lluQ~", &s, &q, &ns) != 3 || s < 0 || s >= K || q < 0 || q >= M)
            fail(2, "wrong", "client %d: mangled line: %.80s", c->idx, line);
        if (s == c->idx) return; /* a server may echo our own lines: not required */
        if (q != c->next_seq[s])
            fail(2, "wrong", "client %d got line %d of sender %d, expected %d", c->idx, q, s,
                 c->next_seq[s]);
        c->next_seq[s]++;
        record(now_ns() - ns);
        deliveries++;
        if (++delivered[s * M + q] == N - 1)
            while (oldest[s] < M && delivered[s * M + oldest[s]] == N - 1) oldest[s]++;
        return;
    }
    if (strstr(line, "~SYNC~")) c->synced = 1;
}

static void read_lines(struct chat_client *c) {
    for (;;) {
        ssize_t r = recv(c->fd, c->in + c->inlen, sizeof c->in - 1 - c->inlen, 0);
        if (r < 0 && errno == EAGAIN) return;
        if (r == 0) fail(3, "dropped", "server closed client %d", c->idx);
        if (r < 0) fail(3, "dropped", "recv by client %d: %s", c->idx, strerror(errno));
        c->inlen += r;
        c->in[c->inlen] = 0;
        char *start = c->in, *nl;
        while ((nl = memchr(start, '\n', c->in + c->inlen - start))) {
            *nl = 0;
            handle_line(c, start);
            start = nl + 1;
        }
        c->inlen -= start - c->in;
        memmove(c->in, start, c->inlen);
        if (c->inlen == sizeof c->in - 1) fail(2, "wrong", "client %d: line too long", c->idx);
    }
}

static int run_chat(int argc, char **argv) {
    if (argc != 5) return 1;
    N = atoi(argv[0]);
    K = atoi(argv[1]);
    M = atoi(argv[2]);
    int window = atoi(argv[3]), server_pid = atoi(argv[4]);
    if (N < 2 || K < 1 || K > N || M < 1 || window < 1) return 1;
    struct chat_client *cl = calloc(N, sizeof *cl);
    delivered = calloc((size_t)K * M, sizeof(int));
    oldest = calloc(K, sizeof(int));
    int *sent = calloc(K, sizeof(int));
    struct epoll_event evs[512];
    /* Connect, at most 64 handshakes at a time; a first line skips any history. */
    int opened = 0, up = 0;
    uint64_t deadline = now_ns() + 60000000000u;
    while (up < N) {
        while (opened < N && opened - up < 64) {
            cl[opened].idx = opened;
            cl[opened].next_seq = calloc(K, sizeof(int));
            cl[opened].fd = open_connection(&cl[opened]);
            opened++;
        }
        int n = epoll_wait(ep, evs, 512, 100);
        for (int e = 0; e < n; e++) {
            struct chat_client *c = evs[e].data.ptr;
            if (evs[e].events & (EPOLLERR | EPOLLHUP)) connected_ok(c->fd);
            if ((evs[e].events & EPOLLOUT) && !c->out) {
                queue_out(c, "/nohistory\n", 11);
                flush_out(c);
                up++;
            } else if (evs[e].events & EPOLLOUT) {
                flush_out(c);
            }
            if (evs[e].events & EPOLLIN) read_lines(c);
        }
        if (now_ns() > deadline) fail(5, "connect", "%d of %d clients connected", up, N);
    }
    /* Sync: client 0 repeats a line until everyone has seen it (all have joined). */
    deadline = now_ns() + 60000000000u;
    for (uint64_t last = 0;;) {
        int waiting = 0;
        for (int i = 1; i < N; i++) waiting += !cl[i].synced;
        if (!waiting) break;
        if (now_ns() > deadline) fail(5, "sync", "%d clients never saw the sync line", waiting);
        if (now_ns() - last > 100000000u) {
            queue_out(&cl[0], "~SYNC~\n", 7);
            flush_out(&cl[0]);
            last = now_ns();
        }
        int n = epoll_wait(ep, evs, 512, 20);
        for (int e = 0; e < n; e++) {
            struct chat_client *c = evs[e].data.ptr;
            if (evs[e].events & EPOLLIN) read_lines(c);
            if (evs[e].events & EPOLLOUT) flush_out(c);
        }
    }
    /* Run: senders 0..K-1, each at most `window` lines ahead of full delivery. */
    uint64_t expected = (uint64_t)K * M * (N - 1), t0 = now_ns();
    deadline = t0 + 120000000000u;
    double srv0 = cpu_seconds_of(server_pid), own0 = own_cpu_seconds();
    uint64_t t_last = t0;
    while (deliveries < expected) {
        for (int s = 0; s < K; s++) {
            int queued = 0;
            while (sent[s] < M && sent[s] - oldest[s] < window) {
                char line[128];
                int len = snprintf(line, sizeof line, "~Q%d,%d,%lluQ~", s, sent[s],
                                   (unsigned long long)now_ns());
                while (len < 63) line[len++] = 'x';
                line[len++] = '\n';
                queue_out(&cl[s], line, len);
                sent[s]++;
                queued = 1;
            }
            if (queued) flush_out(&cl[s]);
        }
        int n = epoll_wait(ep, evs, 512, 100);
        for (int e = 0; e < n; e++) {
            struct chat_client *c = evs[e].data.ptr;
            if (evs[e].events & EPOLLIN) read_lines(c);
            if (evs[e].events & EPOLLOUT) flush_out(c);
        }
        t_last = now_ns();
        if (t_last > deadline)
            fail(4, "timeout", "%llu of %llu lines delivered", (unsigned long long)deliveries,
                 (unsigned long long)expected);
    }
    double elapsed = (t_last - t0) / 1e9;
    double srv = cpu_seconds_of(server_pid) - srv0, own = own_cpu_seconds() - own0;
    printf("{\"ok\": true, \"lines_per_s\": %.1f, \"deliveries\": %llu, \"p50_ms\": %.2f, "
           "\"p99_ms\": %.2f, \"server_cpu_pct\": %.1f, \"load_cpu_pct\": %.1f}\n",
           deliveries / elapsed, (unsigned long long)deliveries, percentile(0.5) / 1000,
           percentile(0.99) / 1000, 100 * srv / elapsed, 100 * own / elapsed);
    return 0;
}

/* ---------------------------------------------------------------- idle */

struct idle_conn {
    int fd, state; /* 0 connecting, 1 waiting for the reply, 2 done */
    size_t got;
};

static int run_idle(int argc, char **argv) {
    if (argc != 3) return 1;
    int conns = atoi(argv[0]), echo = atoi(argv[1]);
    double hold = atof(argv[2]);
    if (conns < 1) return 1;
    struct idle_conn *cs = calloc(conns, sizeof *cs);
    struct epoll_event evs[512];
    unsigned char buf[4096];
    int opened = 0, done = 0;
    uint64_t deadline = now_ns() + 120000000000u;
    while (done < conns) {
        while (opened < conns && opened - done < 64) {
            cs[opened].fd = open_connection(&cs[opened]);
            opened++;
        }
        int n = epoll_wait(ep, evs, 512, 100);
        for (int e = 0; e < n; e++) {
            struct idle_conn *c = evs[e].data.ptr;
            if (evs[e].events & (EPOLLERR | EPOLLHUP)) connected_ok(c->fd);
            if (c->state == 0 && (evs[e].events & EPOLLOUT)) {
                if (echo && send(c->fd, pattern, 64, MSG_NOSIGNAL) != 64)
                    fail(3, "dropped", "send: %s", strerror(errno));
                c->state = 1;
                want_write(c->fd, c, 0);
            }
            if (c->state == 1 && (evs[e].events & EPOLLIN)) {
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r == 0) fail(3, "dropped", "server closed a connection");
                if (r < 0 && errno != EAGAIN) fail(3, "dropped", "recv: %s", strerror(errno));
                if (r > 0 && echo && memcmp(buf, pattern + c->got, r))
                    fail(2, "wrong", "wrong echo");
                if (r > 0) c->got += r;
                if (c->got >= (echo ? 64u : 1u)) {
                    c->state = 2;
                    done++;
                    struct epoll_event ev = {0};
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, &ev);
                }
            }
        }
        if (now_ns() > deadline) fail(5, "connect", "%d of %d connections ready", done, conns);
    }
    printf("{\"ok\": true, \"ready\": %d}\n", done);
    fflush(stdout);
    struct timespec t = {(time_t)hold, (long)((hold - (time_t)hold) * 1e9)};
    nanosleep(&t, NULL);
    return 0;
}

/* ---------------------------------------------------------------- serve */

struct serve_conn {
    int fd;
    size_t len, off;
    unsigned char buf[1 << 18];
};

static void serve_close(struct serve_conn *c) {
    close(c->fd);
    free(c);
}

static int run_serve(int argc, char **argv) {
    (void)argv;
    if (argc != 0) return 1;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&dst, sizeof dst) < 0 || listen(listener, 1024) < 0)
        fail(5, "listen", "%s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int e = 0; e < n; e++) {
            struct serve_conn *c = evs[e].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = malloc(sizeof *c);
                    c->fd = fd;
                    c->len = c->off = 0;
                    struct epoll_event add = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &add);
                }
                continue;
            }
            if (c->len == 0 && (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                ssize_t r = recv(c->fd, c->buf, sizeof c->buf, 0);
                if (r < 0 && errno == EAGAIN) continue;
                if (r <= 0) {
                    serve_close(c);
                    continue;
                }
                ssize_t w = send(c->fd, c->buf, r, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN) {
                    serve_close(c);
                    continue;
                }
                if (w < r) { /* owe the rest: stop reading until it is sent */
                    c->len = r;
                    c->off = w > 0 ? w : 0;
                    struct epoll_event mod = {.events = EPOLLOUT, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &mod);
                }
            } else if (c->len && (evs[e].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
                ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN) {
                    serve_close(c);
                    continue;
                }
                if (w > 0) c->off += w;
                if (c->off == c->len) {
                    c->len = c->off = 0;
                    struct epoll_event mod = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &mod);
                }
            }
        }
    }
}


/* ------------------------------------------------------------ chatserve */

#define CS_MAX 8192
#define CS_OWE_MAX (4 << 20)

struct cs_client {
    int fd, id, alive;
    char in[4096];
    size_t inlen;
    char *out; /* owed bytes, sent before anything newer */
    size_t outlen, outcap;
};

static struct cs_client *cs[CS_MAX];
static char *round_buf;
static size_t round_len, round_cap;
static struct { size_t off, len; int from; } *segs;
static size_t segs_n, segs_cap;

static void cs_drop(struct cs_client *c) {
    if (!c->alive) return;
    c->alive = 0;
    close(c->fd);
}

static void cs_owe(struct cs_client *c, const char *data, size_t len) {
    if (c->outlen + len > CS_OWE_MAX) { cs_drop(c); return; }
    if (c->outlen + len > c->outcap) {
        c->outcap = (c->outlen + len) * 2;
        c->out = realloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, data, len);
    c->outlen += len;
}

static void cs_flush(struct cs_client *c) {
    while (c->alive && c->outlen) {
        ssize_t w = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) break;
        if (w <= 0) { cs_drop(c); return; }
        memmove(c->out, c->out + w, c->outlen - w);
        c->outlen -= w;
    }
    if (c->alive) {
        struct epoll_event mod = {.events = EPOLLIN | (c->outlen ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &mod);
    }
}

static void cs_line(struct cs_client *c, const char *line, size_t len) {
    if (len && line[len - 1] == '\r') len--;
    if (len && line[0] == '/') return;
    size_t need = len + 32;
    if (round_len + need > round_cap) {
        round_cap = (round_len + need) * 2;
        round_buf = realloc(round_buf, round_cap);
    }
    if (segs_n == segs_cap) {
        segs_cap = segs_cap ? segs_cap * 2 : 1024;
        segs = realloc(segs, segs_cap * sizeof *segs);
    }
    int n = snprintf(round_buf + round_len, 32, "<c%d> ", c->id);
    memcpy(round_buf + round_len + n, line, len);
    memcpy(round_buf + round_len + n + len, "\r\n", 2);
    segs[segs_n].off = round_len;
    segs[segs_n].len = n + len + 2;
    segs[segs_n].from = c->id;
    segs_n++;
    round_len += n + len + 2;
}

static void cs_read(struct cs_client *c) {
    for (;;) {
        ssize_t r = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
        if (r < 0 && errno == EAGAIN) return;
        if (r <= 0) { cs_drop(c); return; }
        c->inlen += r;
        char *start = c->in, *nl;
        while ((nl = memchr(start, '\n', c->in + c->inlen - start))) {
            cs_line(c, start, nl - start);
            start = nl + 1;
        }
        c->inlen -= start - c->in;
        memmove(c->in, start, c->inlen);
        if (c->inlen == sizeof c->in) { cs_drop(c); return; } /* line too long */
    }
}

/* Send this round's lines to everyone but their senders: one writev each. */
static void cs_fan_out(int top) {
    struct iovec iov[1024];
    for (int i = 0; i < top; i++) {
        struct cs_client *c = cs[i];
        if (!c || !c->alive) continue;
        size_t k = 0, total = 0, sent = 0;
        int ok = 1;
        for (size_t s = 0; s < segs_n && ok; s++) {
            if (segs[s].from == c->id) continue;
            if (k && (char *)iov[k - 1].iov_base + iov[k - 1].iov_len == round_buf + segs[s].off) {
                iov[k - 1].iov_len += segs[s].len; /* extend a run of others' lines */
            } else if (k < 1024) {
                iov[k].iov_base = round_buf + segs[s].off;
                iov[k++].iov_len = segs[s].len;
            } else {
                ok = 0;
            }
            total += segs[s].len;
        }
        if (!total) continue;
        if (!c->outlen && ok) {
            ssize_t w = writev(c->fd, iov, k);
            if (w < 0 && errno != EAGAIN) { cs_drop(c); continue; }
            sent = w > 0 ? (size_t)w : 0;
        }
        if (sent == total) continue;
        /* Owe the rest, in order: skip what went out, keep the others' lines. */
        size_t skip = sent;
        for (size_t s = 0; s < segs_n && c->alive; s++) {
            if (segs[s].from == c->id) continue;
            size_t len = segs[s].len, off = segs[s].off;
            if (skip >= len) { skip -= len; continue; }
            cs_owe(c, round_buf + off + skip, len - skip);
            skip = 0;
        }
        cs_flush(c);
    }
    round_len = segs_n = 0;
}

static int run_chatserve(int argc, char **argv) {
    (void)argv;
    if (argc != 0) return 1;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1, top = 0;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&dst, sizeof dst) < 0 || listen(listener, 1024) < 0)
        fail(5, "listen", "%s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int e = 0; e < n; e++) {
            struct cs_client *c = evs[e].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (top == CS_MAX) { close(fd); continue; }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->id = top;
                    c->alive = 1;
                    cs[top++] = c;
                    struct epoll_event add = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &add);
                }
                continue;
            }
            if (!c->alive) continue;
            if (evs[e].events & EPOLLOUT) cs_flush(c);
            if (c->alive && (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) cs_read(c);
        }
        if (segs_n) cs_fan_out(top);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) goto usage;
    for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (unsigned char)((i * 2654435761u) >> 13);
    memcpy(pattern + PATTERN, pattern, PATTERN);
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_port = htons(atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1) goto usage;
    ep = epoll_create1(0);
    int nargs = argc - 4, rc = 1;
    char **args = argv + 4;
    if (!strcmp(argv[1], "echo")) rc = run_echo(nargs, args);
    else if (!strcmp(argv[1], "chat")) rc = run_chat(nargs, args);
    else if (!strcmp(argv[1], "idle")) rc = run_idle(nargs, args);
    else if (!strcmp(argv[1], "serve")) rc = run_serve(nargs, args);
    else if (!strcmp(argv[1], "chatserve")) rc = run_chatserve(nargs, args);
    if (rc != 1) return rc;
usage:
    fprintf(stderr, "usage: see the comment at the top of bench/loadgen.c\n");
    return 1;
}
