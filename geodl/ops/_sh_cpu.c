/* Real spherical harmonics on the CPU: one parallel pass over blocks of points.
 *
 * The C twin of geodl.ops._sh._sh_real_forward (same recursion, same operations in the same
 * order, so the same values): row l^2+l+m of a row-major (K, N) output, K = (lmax+1)^2, holds
 * Y_lm of every point. Each block of SH_BLOCK points computes all degrees in a small scratch
 * buffer (three degrees of rows, in cache): the sectoral seeds Y_l^{+-l} = c_l (Re, Im)(x + iy)^l
 * by the rotation recurrence, then the rows of degree l from those of degrees l-1 and l-2,
 * Y_l^m = a_lm z Y_{l-1}^m - a_lm b_lm Y_{l-2}^m. Each finished row is copied to the output
 * with streaming (non-temporal) stores where the CPU has them: the output is written once, and
 * its lines are not first read from memory.
 *
 * Threads: a small pool of POSIX threads (started at the first call that asks for them, the
 * caller counted as one). Work is cut into pieces (grabs of SH_GRAB blocks) claimed through one
 * atomic counter tagged with the call's generation: a thread that is descheduled (a busy machine)
 * delays only a piece it has claimed, and the caller never waits for a thread that has not
 * started; a late thread finds nothing left to claim. No OpenMP barrier, no OpenMP at all. The
 * pool is one call at a time; a concurrent call (another Python thread) runs on its own thread.
 * After fork() the child starts its own pool.
 *
 * Tables (in the compute type, made once per lmax and dtype by the caller):
 *   ratio[l-1], l = 1..lmax: c_1, then c_l / c_{l-1} (the sectoral step of degree l);
 *   a[(l-1)^2 + k], k = 0..2l-2: a_l|m| for m = k-(l-1);
 *   ab[(l-2)^2 + k], k = 0..2l-4 (l >= 2): a_l|m| b_l|m| for m = k-(l-2).
 * The input is read through its strides (in elements), so any (N, 3) view works without a copy.
 * Return value: 0, or 1 for bad arguments, 2 when the scratch buffer cannot be allocated.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sched.h>

#if defined(__SSE2__) && !defined(SH_NO_STREAM)
#include <immintrin.h>
#define SH_STREAM 1
#else
#define SH_STREAM 0
#endif

#ifndef SH_BLOCK
#define SH_BLOCK 256 /* points per block (its rows stay in cache) */
#endif
#ifndef SH_GRAB
#define SH_GRAB 4 /* blocks per grab: 4 KiB (float32) of each output row, whole pages per thread */
#endif
#define SH_CHUNK (2 * 1024 * 1024) /* bytes of output mapped per grab of the populate pass: one 2 MiB page */
#define SH_KIND_FORWARD 0  /* the harmonics (sh_f32_block / sh_f64_block) */
#define SH_KIND_DIRS 1     /* unit directions of raw vectors (geodl_sh_dirs_*) */
#define SH_KIND_DIRS_BWD 2 /* their backward (geodl_sh_dirs_backward_*) */
#define SH_KIND_BWD 3      /* the harmonics' first-order backward (geodl_sh_backward_*) */
#define SH_FLAG_STREAM 1   /* streaming stores (see sh_store_*) */
#define SH_FLAG_POPULATE 2 /* map the output's pages first, 2 MiB per piece */

#if defined(__linux__)
#include <sys/mman.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
/* map (and zero) the pages of [p, p + len) in one call, without touching their contents; older
 * kernels refuse (EINVAL) and the pages are then mapped on first write as usual */
static void sh_populate(char *p, int64_t len) {
    uintptr_t start = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, end = ((uintptr_t)p + len) & ~(uintptr_t)4095;
    if (end > start) (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}
#else
static void sh_populate(char *p, int64_t len) { (void)p; (void)len; }
#endif

/* a*b + c rounded once where the CPU has FMA (as torch's addcmul there), else rounded twice */
#ifdef __FMA__
#define FMA_float(a, b, c) fmaf((a), (b), (c))
#define FMA_double(a, b, c) fma((a), (b), (c))
#else
#define FMA_float(a, b, c) ((a) * (b) + (c))
#define FMA_double(a, b, c) ((a) * (b) + (c))
#endif

/* copy nb values to dst; with stream, streaming stores on the 16-byte aligned middle part (no read
 * of the destination's lines; best where they are not in cache, e.g. freshly zeroed 2 MiB pages) */
static void sh_store_float(float *restrict dst, const float *restrict src, int64_t nb, int stream) {
    int64_t j = 0;
#if SH_STREAM
    if (stream) {
        for (; j < nb && ((uintptr_t)(dst + j) & 15); ++j) dst[j] = src[j];
#if defined(__AVX512F__)
        for (; j + 4 <= nb && ((uintptr_t)(dst + j) & 63); j += 4) _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
        for (; j + 16 <= nb; j += 16) _mm512_stream_ps(dst + j, _mm512_loadu_ps(src + j));
#elif defined(__AVX__)
        for (; j + 4 <= nb && ((uintptr_t)(dst + j) & 31); j += 4) _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
        for (; j + 8 <= nb; j += 8) _mm256_stream_ps(dst + j, _mm256_loadu_ps(src + j));
#endif
        for (; j + 4 <= nb; j += 4) _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
    }
#endif
    for (; j < nb; ++j) dst[j] = src[j];
}

static void sh_store_double(double *restrict dst, const double *restrict src, int64_t nb, int stream) {
    int64_t j = 0;
#if SH_STREAM
    if (stream) {
        for (; j < nb && ((uintptr_t)(dst + j) & 15); ++j) dst[j] = src[j];
#if defined(__AVX512F__)
        for (; j + 2 <= nb && ((uintptr_t)(dst + j) & 63); j += 2) _mm_stream_pd(dst + j, _mm_loadu_pd(src + j));
        for (; j + 8 <= nb; j += 8) _mm512_stream_pd(dst + j, _mm512_loadu_pd(src + j));
#elif defined(__AVX__)
        for (; j + 2 <= nb && ((uintptr_t)(dst + j) & 31); j += 2) _mm_stream_pd(dst + j, _mm_loadu_pd(src + j));
        for (; j + 4 <= nb; j += 4) _mm256_stream_pd(dst + j, _mm256_loadu_pd(src + j));
#endif
        for (; j + 2 <= nb; j += 2) _mm_stream_pd(dst + j, _mm_loadu_pd(src + j));
    }
#endif
    for (; j < nb; ++j) dst[j] = src[j];
}

/* scratch: three degrees of rows, slot(l) = scratch + (l % 3) * (2 lmax + 1) * SH_BLOCK; row k of
 * slot(l) (k = 0..2l, m = k - l) is output row l^2 + k */
#define SH_DEFINE(T, NAME)                                                                         \
    static void NAME##_block(const T *restrict xyz, int64_t s0, int64_t s1, T *restrict out,       \
                             int64_t n, int64_t i0, int64_t nb, int lmax, const T *restrict ratio,  \
                             const T *restrict a, const T *restrict ab, T y00, T *scratch,  \
                             int stream) {        \
        T x[SH_BLOCK], y[SH_BLOCK], z[SH_BLOCK];                                                  \
        const int64_t slot = (int64_t)(2 * lmax + 1) * SH_BLOCK;                                  \
        for (int64_t j = 0; j < nb; ++j) {                                                        \
            const T *p = xyz + (i0 + j) * s0;                                                     \
            x[j] = p[0];                                                                          \
            y[j] = p[s1];                                                                         \
            z[j] = p[2 * s1];                                                                     \
        }                                                                                         \
        T *o = out + i0;                                                                          \
        {                                                                                         \
            T *restrict c0 = scratch;                                                             \
            for (int64_t j = 0; j < nb; ++j) c0[j] = y00;                                         \
            sh_store_##T(o, c0, nb, stream);                                                              \
        }                                                                                         \
        for (int l = 1; l <= lmax; ++l) {                                                         \
            const T *prev = scratch + ((l - 1) % 3) * slot;                                       \
            const T *prev2 = scratch + ((l + 1) % 3) * slot; /* slot of l-2 */                    \
            T *cur = scratch + (l % 3) * slot;                                                    \
            const T r = ratio[l - 1];                                                             \
            T *restrict ss = cur, *restrict cc = cur + (int64_t)(2 * l) * SH_BLOCK;               \
            if (l == 1) { /* Y_1^{-1} = c_1 y, Y_1^1 = c_1 x */                                   \
                for (int64_t j = 0; j < nb; ++j) {                                                \
                    ss[j] = y[j] * r;                                                             \
                    cc[j] = x[j] * r;                                                             \
                }                                                                                 \
            } else { /* sectoral seeds of degree l from those of degree l-1 */                    \
                const T *restrict sp = prev, *restrict cp = prev + (int64_t)(2 * l - 2) * SH_BLOCK; \
                for (int64_t j = 0; j < nb; ++j) {                                                \
                    const T c = FMA_##T(-sp[j], y[j], cp[j] * x[j]);                              \
                    const T s = FMA_##T(cp[j], y[j], sp[j] * x[j]);                               \
                    cc[j] = c * r;                                                                \
                    ss[j] = s * r;                                                                \
                }                                                                                 \
            }                                                                                     \
            const T *al = a + (int64_t)(l - 1) * (l - 1);                                         \
            const T *abl = ab + (int64_t)(l - 2) * (l - 2);                                       \
            for (int k = 0; k < 2 * l - 1; ++k) {                                                 \
                const T *restrict p1 = prev + (int64_t)k * SH_BLOCK;                              \
                T *restrict q = cur + (int64_t)(k + 1) * SH_BLOCK;                                \
                const T ak = al[k];                                                               \
                if (k >= 1 && k <= 2 * l - 3) {                                                   \
                    const T *restrict p2 = prev2 + (int64_t)(k - 1) * SH_BLOCK;                   \
                    const T abk = abl[k - 1];                                                     \
                    for (int64_t j = 0; j < nb; ++j) {                                            \
                        T t = p1[j] * ak;                                                         \
                        t = t * z[j];                                                             \
                        q[j] = FMA_##T(-abk, p2[j], t);                                           \
                    }                                                                             \
                } else {                                                                          \
                    for (int64_t j = 0; j < nb; ++j) {                                            \
                        T t = p1[j] * ak;                                                         \
                        q[j] = t * z[j];                                                          \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
            T *dst = o + (int64_t)l * l * n;                                                      \
            for (int k = 0; k <= 2 * l; ++k) sh_store_##T(dst + (int64_t)k * n, cur + (int64_t)k * SH_BLOCK, nb, stream); \
        }                                                                                         \
    }

SH_DEFINE(float, sh_f32)
SH_DEFINE(double, sh_f64)

/* ---- the pool: worker threads that wait for a call, and calls that never wait for a worker
 * that has not started. A call publishes a job under a new generation and works on it itself;
 * work is claimed through one 64-bit counter holding (generation << 32 | next piece), so a worker
 * that wakes late (its core busy with another process) can only claim pieces of the call still
 * running; the caller waits only for the pieces already claimed. Pieces 0..nchunks-1 map 2 MiB of
 * the output each (MADV_POPULATE_WRITE), the rest are grabs of SH_GRAB blocks of points. */

typedef struct {
    int kind; /* SH_KIND_*: what a piece computes (args: that kind's arguments) */
    const void *args;
    int f64;
    const void *xyz;
    int64_t s0, s1;
    void *out;
    int64_t n;
    int lmax;
    const void *ratio, *a, *ab;
    double y00;
    int stream;
    int64_t nchunks, ngrabs, nblocks, nbytes;
    int workers; /* how many pool threads may join */
} sh_job;

static pthread_mutex_t sh_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sh_call = PTHREAD_MUTEX_INITIALIZER; /* one pooled call at a time */
static pthread_cond_t sh_wake = PTHREAD_COND_INITIALIZER, sh_done_cv = PTHREAD_COND_INITIALIZER;
static sh_job sh_cur;
static uint64_t sh_gen = 0;      /* generation of sh_cur (under sh_mu) */
static uint64_t sh_claim = 0;    /* atomic: gen << 32 | next piece */
static int64_t sh_done = 0;      /* atomic: pieces finished in this generation */
static int sh_nworkers = 0;      /* pool threads started (under sh_mu) */
static int sh_failed = 0;        /* atomic: a piece could not get its scratch memory */
static int sh_atfork = 0;

static void sh_after_fork_child(void) { /* the child has none of the parent's threads */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    sh_mu = m;
    sh_call = m;
    sh_wake = c;
    sh_done_cv = c;
    sh_nworkers = 0;
}

typedef struct { void *p; size_t bytes; } sh_scratch;

static void sh_piece_other(const sh_job *j, int64_t piece, sh_scratch *sc);

static void sh_piece(const sh_job *j, int64_t piece, sh_scratch *sc) {
    if (j->kind != SH_KIND_FORWARD) {
        sh_piece_other(j, piece, sc);
        return;
    }
    if (piece < j->nchunks) {
        const int64_t off = piece * SH_CHUNK, len = j->nbytes - off < SH_CHUNK ? j->nbytes - off : SH_CHUNK;
        sh_populate((char *)j->out + off, len);
        return;
    }
    const size_t need = (j->f64 ? sizeof(double) : sizeof(float)) * 3 * (size_t)(2 * j->lmax + 1) * SH_BLOCK;
    if (sc->bytes < need) {
        free(sc->p);
        sc->p = malloc(need);
        sc->bytes = sc->p ? need : 0;
        if (!sc->p) {
            __atomic_store_n(&sh_failed, 1, __ATOMIC_RELAXED);
            return;
        }
    }
    const int64_t g = piece - j->nchunks;
    for (int64_t b = g * SH_GRAB; b < (g + 1) * SH_GRAB && b < j->nblocks; ++b) {
        const int64_t i0 = b * SH_BLOCK, nb = j->n - i0 < SH_BLOCK ? j->n - i0 : SH_BLOCK;
        if (j->f64)
            sh_f64_block((const double *)j->xyz, j->s0, j->s1, (double *)j->out, j->n, i0, nb, j->lmax,
                         (const double *)j->ratio, (const double *)j->a, (const double *)j->ab, j->y00,
                         (double *)sc->p, j->stream);
        else
            sh_f32_block((const float *)j->xyz, j->s0, j->s1, (float *)j->out, j->n, i0, nb, j->lmax,
                         (const float *)j->ratio, (const float *)j->a, (const float *)j->ab, (float)j->y00,
                         (float *)sc->p, j->stream);
    }
}

/* claim and run pieces of generation gen until none is left */
static void sh_work(uint64_t gen, const sh_job *j, sh_scratch *sc) {
    const int64_t total = j->nchunks + j->ngrabs;
    for (;;) {
        uint64_t v = __atomic_load_n(&sh_claim, __ATOMIC_ACQUIRE);
        if ((v >> 32) != (gen & 0xffffffffu) || (int64_t)(v & 0xffffffffu) >= total) break;
        if (!__atomic_compare_exchange_n(&sh_claim, &v, v + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
        sh_piece(j, (int64_t)(v & 0xffffffffu), sc);
        if (__atomic_add_fetch(&sh_done, 1, __ATOMIC_ACQ_REL) == total) {
            pthread_mutex_lock(&sh_mu);
            pthread_cond_broadcast(&sh_done_cv);
            pthread_mutex_unlock(&sh_mu);
        }
    }
#if SH_STREAM
    _mm_sfence(); /* streaming stores visible before the caller reads the output */
#endif
}

static void *sh_worker(void *arg) {
    const int index = (int)(intptr_t)arg;
    sh_scratch sc = {NULL, 0};
    uint64_t seen = 0;
    pthread_mutex_lock(&sh_mu);
    seen = sh_gen;
    for (;;) {
        while (sh_gen == seen) pthread_cond_wait(&sh_wake, &sh_mu);
        seen = sh_gen;
        if (index >= sh_cur.workers) continue; /* not wanted in this call */
        const sh_job job = sh_cur;
        pthread_mutex_unlock(&sh_mu);
        sh_work(seen, &job, &sc);
        pthread_mutex_lock(&sh_mu);
    }
    return NULL;
}

static int sh_run(sh_job *job, int nthreads) {
    static __thread sh_scratch sc = {NULL, 0};
    const int64_t total = job->nchunks + job->ngrabs;
    int pooled = nthreads > 1 && total > 1 && pthread_mutex_trylock(&sh_call) == 0;
    __atomic_store_n(&sh_failed, 0, __ATOMIC_RELAXED);
    if (!pooled) { /* one thread (or another call holds the pool): all pieces here */
        for (int64_t p = 0; p < total; ++p) sh_piece(job, p, &sc);
#if SH_STREAM
        _mm_sfence();
#endif
        return __atomic_load_n(&sh_failed, __ATOMIC_RELAXED) ? 2 : 0;
    }
    pthread_mutex_lock(&sh_mu);
    if (!sh_atfork) {
        pthread_atfork(NULL, NULL, sh_after_fork_child);
        sh_atfork = 1;
    }
    while (sh_nworkers < nthreads - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&t, &attr, sh_worker, (void *)(intptr_t)sh_nworkers);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        ++sh_nworkers;
    }
    job->workers = nthreads - 1 < sh_nworkers ? nthreads - 1 : sh_nworkers;
    sh_cur = *job;
    ++sh_gen;
    const uint64_t gen = sh_gen;
    __atomic_store_n(&sh_done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&sh_claim, (gen & 0xffffffffu) << 32, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&sh_wake);
    pthread_mutex_unlock(&sh_mu);
    sh_work(gen, job, &sc);
    /* wait for the pieces other threads claimed (not for threads that never started) */
    for (int spin = 0; spin < 2000 && __atomic_load_n(&sh_done, __ATOMIC_ACQUIRE) < total; ++spin) sched_yield();
    pthread_mutex_lock(&sh_mu);
    while (__atomic_load_n(&sh_done, __ATOMIC_ACQUIRE) < total) pthread_cond_wait(&sh_done_cv, &sh_mu);
    pthread_mutex_unlock(&sh_mu);
    pthread_mutex_unlock(&sh_call);
    return __atomic_load_n(&sh_failed, __ATOMIC_RELAXED) ? 2 : 0;
}

static int sh_call_kernel(int f64, const void *xyz, int64_t s0, int64_t s1, void *out, int64_t n, int lmax,
                          const void *ratio, const void *a, const void *ab, double y00, int nthreads, int flags) {
    if (lmax < 0 || n < 0) return 1;
    sh_job job;
    job.kind = SH_KIND_FORWARD;
    job.args = NULL;
    job.f64 = f64;
    job.xyz = xyz;
    job.s0 = s0;
    job.s1 = s1;
    job.out = out;
    job.n = n;
    job.lmax = lmax;
    job.ratio = ratio;
    job.a = a;
    job.ab = ab;
    job.y00 = y00;
    job.stream = flags & SH_FLAG_STREAM;
    job.nblocks = (n + SH_BLOCK - 1) / SH_BLOCK;
    job.ngrabs = (job.nblocks + SH_GRAB - 1) / SH_GRAB;
    job.nbytes = (int64_t)(lmax + 1) * (lmax + 1) * n * (int64_t)(f64 ? sizeof(double) : sizeof(float));
    job.nchunks = (flags & SH_FLAG_POPULATE) ? (job.nbytes + SH_CHUNK - 1) / SH_CHUNK : 0;
    job.workers = 0;
    if (job.nchunks + job.ngrabs >= ((int64_t)1 << 31)) return 1;
    if (nthreads < 1) nthreads = 1;
    return sh_run(&job, nthreads);
}

/* out: row-major ((lmax+1)^2, n); returns 0, 1 (bad arguments) or 2 (no scratch memory) */
int geodl_sh_real_f32(const float *xyz, int64_t s0, int64_t s1, float *out, int64_t n, int lmax, const float *ratio,
                      const float *a, const float *ab, double y00, int nthreads, int flags) {
    return sh_call_kernel(0, xyz, s0, s1, out, n, lmax, ratio, a, ab, y00, nthreads, flags);
}

int geodl_sh_real_f64(const double *xyz, int64_t s0, int64_t s1, double *out, int64_t n, int lmax,
                      const double *ratio, const double *a, const double *ab, double y00, int nthreads, int flags) {
    return sh_call_kernel(1, xyz, s0, s1, out, n, lmax, ratio, a, ab, y00, nthreads, flags);
}


/* ---- the public function's prologue: unit directions of raw vectors, in one pass.
 *
 * Row i of x (N, 3), read through its strides: m = max |x_ij|, p = the power of two with m p in
 * [1, 2) (exact: built from m's exponent bits, as geodl.ops._sh._pow2_scale: p = 2^(2 bias - e)
 * clamped to the normal range), s = x p, |s| = sqrt(fma(s2, s2, fma(s1, s1, s0 s0))) (torch's
 * vector_norm: bit for bit the same where the CPU has FMA), and
 * u = s / |s| into u (N, 3) contiguous, aux (N, 2) = (|s|, p) for the backward. A zero row gets
 * the placeholder u = (1, 0, 0), aux (1, 0), zero[i] = 1; a row holding NaN or inf gets u = NaN,
 * aux (1, 0); the numbers of both are added to counts[0]
 * (zero rows) and counts[1] (non-finite rows). */

#define SH_ROWS 8192 /* rows per piece of the direction passes */

typedef struct {
    const void *x;
    int64_t s0, s1;
    void *u, *inv;
    unsigned char *zero;
    int64_t n;
    int64_t *counts;
} sh_dirs_args;

typedef struct {
    const void *g;
    int64_t g0, g1;
    const void *u, *inv;
    void *out;
    int64_t n;
} sh_dirs_bwd_args;

#define SH_DIRS_DEFINE(T, NAME, ITY, MBITS, BIAS) /* T: float or double (FMA_float / FMA_double) */                                                 \
    static void NAME(const sh_dirs_args *a, int64_t r0, int64_t r1) {                             \
        const T *restrict x = (const T *)a->x;                                                    \
        T *restrict u = (T *)a->u, *restrict inv = (T *)a->inv;                                   \
        int64_t nzero = 0, nbad = 0;                                                              \
        for (int64_t i = r0; i < r1; ++i) {                                                       \
            const T *p = x + i * a->s0;                                                           \
            const T x0 = p[0], x1 = p[a->s1], x2 = p[2 * a->s1];                                  \
            T *o = u + 3 * i;                                                                     \
            a->zero[i] = 0;                                                                       \
            if (!(isfinite(x0) && isfinite(x1) && isfinite(x2))) {                                \
                ++nbad;                                                                           \
                o[0] = o[1] = o[2] = (T)NAN;                                                      \
                inv[2 * i] = 1;                                                                   \
                inv[2 * i + 1] = 0;                                                               \
                continue;                                                                         \
            }                                                                                     \
            T m = fabs(x0);                                                                       \
            if (fabs(x1) > m) m = fabs(x1);                                                       \
            if (fabs(x2) > m) m = fabs(x2);                                                       \
            if (m == 0) {                                                                         \
                ++nzero;                                                                          \
                a->zero[i] = 1;                                                                   \
                o[0] = 1;                                                                         \
                o[1] = o[2] = 0;                                                                  \
                inv[2 * i] = 1;                                                                   \
                inv[2 * i + 1] = 0;                                                               \
                continue;                                                                         \
            }                                                                                     \
            ITY bits;                                                                             \
            memcpy(&bits, &m, sizeof bits);                                                       \
            ITY e = (ITY)(2 * BIAS) - (bits >> MBITS);                                            \
            if (e < 1) e = 1;                                                                     \
            if (e > 2 * BIAS) e = 2 * BIAS;                                                       \
            bits = e << MBITS;                                                                    \
            T sc;                                                                                 \
            memcpy(&sc, &bits, sizeof sc);                                                        \
            const T a0 = x0 * sc, a1 = x1 * sc, a2 = x2 * sc;                                     \
            T acc = a0 * a0; /* fused where the CPU has FMA, as torch's vector_norm */            \
            acc = FMA_##T(a1, a1, acc);                                                           \
            acc = FMA_##T(a2, a2, acc);                                                           \
            const T nrm = sqrt(acc);                                                              \
            o[0] = a0 / nrm;                                                                      \
            o[1] = a1 / nrm;                                                                      \
            o[2] = a2 / nrm;                                                                      \
            inv[2 * i] = nrm;                                                                     \
            inv[2 * i + 1] = sc;                                                                  \
        }                                                                                         \
        if (nzero) __atomic_add_fetch(&a->counts[0], nzero, __ATOMIC_RELAXED);                    \
        if (nbad) __atomic_add_fetch(&a->counts[1], nbad, __ATOMIC_RELAXED);                      \
    }

SH_DIRS_DEFINE(float, sh_dirs_f32, int32_t, 23, 127)
SH_DIRS_DEFINE(double, sh_dirs_f64, int64_t, 52, 1023)

/* the backward of u = s / |s|, s = x p, with autograd's operations on the torch composition (bit
 * for bit the same gradient): gs_c = g_c / |s| + u_c Σ_c (-g_c (u_c / |s|)) (the sum in the order
 * c = 0, 1, 2), grad_x = gs p; 0 on zero rows (their direction is a constant). aux[2i] = |s|,
 * aux[2i+1] = p (0 on zero and non-finite rows); rows of g (N, 3) read through its strides; out
 * (N, 3) contiguous. */
#define SH_DIRS_BWD_DEFINE(T, NAME)                                                               \
    static void NAME(const sh_dirs_bwd_args *a, int64_t r0, int64_t r1) {                         \
        const T *restrict g = (const T *)a->g, *restrict u = (const T *)a->u;                     \
        const T *restrict aux = (const T *)a->inv;                                                \
        T *restrict out = (T *)a->out;                                                            \
        for (int64_t i = r0; i < r1; ++i) {                                                       \
            const T *gi = g + i * a->g0;                                                          \
            const T g0 = gi[0], g1 = gi[a->g1], g2 = gi[2 * a->g1];                               \
            const T *ui = u + 3 * i;                                                              \
            const T nrm = aux[2 * i], p = aux[2 * i + 1];                                         \
            if (p == 0) {                                                                         \
                out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = 0;                                 \
                continue;                                                                         \
            }                                                                                     \
            const T t0 = -g0 * (ui[0] / nrm), t1 = -g1 * (ui[1] / nrm), t2 = -g2 * (ui[2] / nrm); \
            const T gn = (t0 + t1) + t2;                                                          \
            out[3 * i] = (g0 / nrm + ui[0] * gn) * p;                                             \
            out[3 * i + 1] = (g1 / nrm + ui[1] * gn) * p;                                         \
            out[3 * i + 2] = (g2 / nrm + ui[2] * gn) * p;                                         \
        }                                                                                         \
    }

SH_DIRS_BWD_DEFINE(float, sh_dirs_bwd_f32)
SH_DIRS_BWD_DEFINE(double, sh_dirs_bwd_f64)

/* ---- the first-order backward of the harmonics: the C twin of
 * geodl.ops._sh._sh_real_backward_analytic (same closed form). Per point, with A_m + i B_m =
 * (x + iy)^m and Q_lm = P̄_lm / ρ^m (Q_mm = consts[m], Q_{m+1,m} = ec[m] z, then
 * Q_lm = a_lm (z Q_{l-1,m} - b_lm Q_{l-2,m})) and its z-derivative
 * Q'_lm = a_lm (Q_{l-1,m} + z Q'_{l-1,m} - b_lm Q'_{l-2,m}) (Q'_{m+1,m} = ec[m], Q'_mm = 0), the
 * sums per order SQc_m = Σ_l g_{l,m} Q_lm, SQs_m = Σ_l g_{l,-m} Q_lm (and SDc, SDs with Q') give
 *   gx = Σ_m √2 m (A_{m-1} SQc_m + B_{m-1} SQs_m), gy = Σ_m √2 m (A_{m-1} SQs_m - B_{m-1} SQc_m),
 *   gz = SDc_0 + √2 Σ_m (A_m SDc_m + B_m SDs_m)       (m = 1..lmax).
 * Blocks of SH_BWD_BLOCK points, orders as rows (points last) in a scratch buffer; the incoming
 * gradient (N, K) is read through its strides, one degree's 2l+1 columns at a time (row- or
 * column-major, no copy of the whole). Tables (compute type): a[(l-2)(l-1)/2 + m] = a_lm and
 * b[...] = b_lm for l >= 2, m = 0..l-2; consts[m], m = 0..lmax; ec[m] = e_m consts[m], m < lmax. */

#ifndef SH_BWD_BLOCK
#define SH_BWD_BLOCK 64
#endif
#define SH_BWD_GRAB 4 /* blocks per piece */

typedef struct {
    const void *x;
    int64_t s0, s1;
    const void *g;
    int64_t g0, g1;
    void *out;
    int64_t n;
    int lmax;
    const void *a, *b, *consts, *ec, *msq; /* msq[m] = m √2 (compute type), m = 0..lmax */
} sh_bwd_args;

static size_t sh_bwd_scratch(int lmax, size_t item) {
    return item * (size_t)SH_BWD_BLOCK * ((size_t)13 * (lmax + 1) + (size_t)(2 * lmax + 1));
}

#define SH_BWD_DEFINE(T, NAME)                                                                    \
    static void NAME(const sh_bwd_args *w, int64_t i0, int64_t nb, T *scratch) {                  \
        const int L = w->lmax, R = L + 1;                                                         \
        const int64_t BS = SH_BWD_BLOCK;                                                          \
        const T *restrict ta = (const T *)w->a, *restrict tb = (const T *)w->b;                   \
        const T *restrict consts = (const T *)w->consts, *restrict ec = (const T *)w->ec;         \
        const T *restrict msq = (const T *)w->msq;                                                \
        T *A = scratch, *B = A + R * BS, *q = B + R * BS, *dq = q + 3 * R * BS;                   \
        T *sqc = dq + 3 * R * BS, *sqs = sqc + R * BS, *sdc = sqs + R * BS, *sds = sdc + R * BS;  \
        T *gb = sds + R * BS;                                                                     \
        T x[SH_BWD_BLOCK], y[SH_BWD_BLOCK], z[SH_BWD_BLOCK];                                      \
        const T *xp = (const T *)w->x, *gp = (const T *)w->g;                                     \
        for (int64_t j = 0; j < nb; ++j) {                                                        \
            const T *p = xp + (i0 + j) * w->s0;                                                   \
            x[j] = p[0];                                                                          \
            y[j] = p[w->s1];                                                                      \
            z[j] = p[2 * w->s1];                                                                  \
        }                                                                                         \
        for (int64_t j = 0; j < nb; ++j) {                                                        \
            A[j] = 1;                                                                             \
            B[j] = 0;                                                                             \
        }                                                                                         \
        for (int k = 1; k <= L; ++k) {                                                            \
            const T *restrict a1 = A + (k - 1) * BS, *restrict b1 = B + (k - 1) * BS;             \
            T *restrict ak = A + k * BS, *restrict bk = B + k * BS;                               \
            for (int64_t j = 0; j < nb; ++j) {                                                    \
                ak[j] = a1[j] * x[j] - b1[j] * y[j];                                              \
                bk[j] = a1[j] * y[j] + b1[j] * x[j];                                              \
            }                                                                                     \
        }                                                                                         \
        for (int64_t r = 0; r < 4 * R * BS; ++r) sqc[r] = 0;                                      \
        for (int l = 0; l <= L; ++l) {                                                            \
            T *cq = q + (l % 3) * R * BS, *cd = dq + (l % 3) * R * BS;                            \
            const T *q1 = q + ((l + 2) % 3) * R * BS, *d1 = dq + ((l + 2) % 3) * R * BS;          \
            const T *q2 = q + ((l + 1) % 3) * R * BS, *d2 = dq + ((l + 1) % 3) * R * BS;          \
            if (l == 0) {                                                                         \
                for (int64_t j = 0; j < nb; ++j) {                                                \
                    cq[j] = consts[0];                                                            \
                    cd[j] = 0;                                                                    \
                }                                                                                 \
            } else {                                                                              \
                const int64_t t0 = (int64_t)(l - 2) * (l - 1) / 2;                                \
                for (int m = 0; m <= l - 2; ++m) {                                                \
                    const T am = ta[t0 + m], bm = tb[t0 + m];                                     \
                    const T *restrict p1 = q1 + m * BS, *restrict p2 = q2 + m * BS;               \
                    const T *restrict e1 = d1 + m * BS, *restrict e2 = d2 + m * BS;               \
                    T *restrict oq = cq + m * BS, *restrict od = cd + m * BS;                     \
                    for (int64_t j = 0; j < nb; ++j) {                                            \
                        oq[j] = am * (z[j] * p1[j] - bm * p2[j]);                                 \
                        od[j] = am * (p1[j] + z[j] * e1[j] - bm * e2[j]);                         \
                    }                                                                             \
                }                                                                                 \
                const T c1 = ec[l - 1], c0 = consts[l];                                           \
                T *restrict oq1 = cq + (l - 1) * BS, *restrict od1 = cd + (l - 1) * BS;           \
                T *restrict oq0 = cq + l * BS, *restrict od0 = cd + l * BS;                       \
                for (int64_t j = 0; j < nb; ++j) {                                                \
                    oq1[j] = c1 * z[j];                                                           \
                    od1[j] = c1;                                                                  \
                    oq0[j] = c0;                                                                  \
                    od0[j] = 0;                                                                   \
                }                                                                                 \
            }                                                                                     \
            /* this degree's 2l+1 gradient columns l^2 .. l^2+2l of the block */                  \
            const int64_t c0l = (int64_t)l * l;                                                   \
            if (w->g0 == 1) {                                                                     \
                for (int k = 0; k <= 2 * l; ++k) {                                                \
                    const T *restrict src = gp + i0 + (c0l + k) * w->g1;                          \
                    T *restrict dst = gb + k * BS;                                                \
                    for (int64_t j = 0; j < nb; ++j) dst[j] = src[j];                             \
                }                                                                                 \
            } else {                                                                              \
                for (int64_t j = 0; j < nb; ++j) {                                                \
                    const T *src = gp + (i0 + j) * w->g0 + c0l * w->g1;                           \
                    for (int k = 0; k <= 2 * l; ++k) gb[k * BS + j] = src[k * w->g1];             \
                }                                                                                 \
            }                                                                                     \
            for (int m = 0; m <= l; ++m) {                                                        \
                const T *restrict gc = gb + (l + m) * BS, *restrict qm = cq + m * BS;             \
                const T *restrict dm = cd + m * BS;                                               \
                T *restrict ac = sqc + m * BS, *restrict ad = sdc + m * BS;                       \
                for (int64_t j = 0; j < nb; ++j) {                                                \
                    ac[j] += gc[j] * qm[j];                                                       \
                    ad[j] += gc[j] * dm[j];                                                       \
                }                                                                                 \
                if (m >= 1) {                                                                     \
                    const T *restrict gs = gb + (l - m) * BS;                                     \
                    T *restrict as = sqs + m * BS, *restrict ds = sds + m * BS;                   \
                    for (int64_t j = 0; j < nb; ++j) {                                            \
                        as[j] += gs[j] * qm[j];                                                   \
                        ds[j] += gs[j] * dm[j];                                                   \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        T gx[SH_BWD_BLOCK], gy[SH_BWD_BLOCK], gz[SH_BWD_BLOCK];                                   \
        const T r2 = (T)1.4142135623730951;                                                       \
        for (int64_t j = 0; j < nb; ++j) {                                                        \
            gx[j] = 0;                                                                            \
            gy[j] = 0;                                                                            \
            gz[j] = 0;                                                                            \
        }                                                                                         \
        for (int m = 1; m <= L; ++m) {                                                            \
            const T mm = msq[m];                                                                  \
            const T *restrict am1 = A + (m - 1) * BS, *restrict bm1 = B + (m - 1) * BS;           \
            const T *restrict am = A + m * BS, *restrict bm = B + m * BS;                         \
            const T *restrict qc = sqc + m * BS, *restrict qs = sqs + m * BS;                     \
            const T *restrict dc = sdc + m * BS, *restrict ds = sds + m * BS;                     \
            for (int64_t j = 0; j < nb; ++j) {                                                    \
                gz[j] += am[j] * dc[j] + bm[j] * ds[j];                                           \
                gx[j] += mm * (am1[j] * qc[j] + bm1[j] * qs[j]);                                  \
                gy[j] += mm * (am1[j] * qs[j] - bm1[j] * qc[j]);                                  \
            }                                                                                     \
        }                                                                                         \
        T *o = (T *)w->out + 3 * i0;                                                              \
        for (int64_t j = 0; j < nb; ++j) {                                                        \
            o[3 * j] = gx[j];                                                                     \
            o[3 * j + 1] = gy[j];                                                                 \
            o[3 * j + 2] = sdc[j] + r2 * gz[j];                                                   \
        }                                                                                         \
    }

SH_BWD_DEFINE(float, sh_bwd_f32)
SH_BWD_DEFINE(double, sh_bwd_f64)

static void sh_piece_other(const sh_job *j, int64_t piece, sh_scratch *sc) {
    if (j->kind == SH_KIND_DIRS || j->kind == SH_KIND_DIRS_BWD) {
        const int64_t n = j->n, r0 = piece * SH_ROWS, r1 = r0 + SH_ROWS < n ? r0 + SH_ROWS : n;
        if (j->kind == SH_KIND_DIRS) {
            if (j->f64) sh_dirs_f64((const sh_dirs_args *)j->args, r0, r1);
            else sh_dirs_f32((const sh_dirs_args *)j->args, r0, r1);
        } else {
            if (j->f64) sh_dirs_bwd_f64((const sh_dirs_bwd_args *)j->args, r0, r1);
            else sh_dirs_bwd_f32((const sh_dirs_bwd_args *)j->args, r0, r1);
        }
        return;
    }
    /* SH_KIND_BWD */
    const sh_bwd_args *w = (const sh_bwd_args *)j->args;
    const size_t need = sh_bwd_scratch(w->lmax, j->f64 ? sizeof(double) : sizeof(float));
    if (sc->bytes < need) {
        free(sc->p);
        sc->p = malloc(need);
        sc->bytes = sc->p ? need : 0;
        if (!sc->p) {
            __atomic_store_n(&sh_failed, 1, __ATOMIC_RELAXED);
            return;
        }
    }
    for (int64_t b = piece * SH_BWD_GRAB; b < (piece + 1) * SH_BWD_GRAB && b < j->nblocks; ++b) {
        const int64_t i0 = b * SH_BWD_BLOCK, nb = w->n - i0 < SH_BWD_BLOCK ? w->n - i0 : SH_BWD_BLOCK;
        if (j->f64) sh_bwd_f64(w, i0, nb, (double *)sc->p);
        else sh_bwd_f32(w, i0, nb, (float *)sc->p);
    }
}

static int sh_run_kind(int kind, int f64, const void *args, int64_t n, int64_t pieces, int64_t nblocks, int nthreads) {
    if (n < 0) return 1;
    if (n == 0) return 0;
    sh_job job;
    memset(&job, 0, sizeof job);
    job.kind = kind;
    job.args = args;
    job.f64 = f64;
    job.n = n;
    job.nblocks = nblocks;
    job.ngrabs = pieces;
    job.nchunks = 0;
    if (pieces >= ((int64_t)1 << 31)) return 1;
    if (nthreads < 1) nthreads = 1;
    return sh_run(&job, nthreads);
}

/* directions (see above); counts[0] += zero rows, counts[1] += non-finite rows */
int geodl_sh_dirs(int f64, const void *x, int64_t s0, int64_t s1, void *u, void *inv, unsigned char *zero, int64_t n,
                  int64_t *counts, int nthreads) {
    sh_dirs_args a = {x, s0, s1, u, inv, zero, n, counts};
    return sh_run_kind(SH_KIND_DIRS, f64, &a, n, (n + SH_ROWS - 1) / SH_ROWS, 0, nthreads);
}

int geodl_sh_dirs_backward(int f64, const void *g, int64_t g0, int64_t g1, const void *u, const void *inv, void *out,
                           int64_t n, int nthreads) {
    sh_dirs_bwd_args a = {g, g0, g1, u, inv, out, n};
    return sh_run_kind(SH_KIND_DIRS_BWD, f64, &a, n, (n + SH_ROWS - 1) / SH_ROWS, 0, nthreads);
}

/* out (N, 3) contiguous: the gradient of (g * sh_real(x)).sum() for unit x (N, 3), g (N, K) */
int geodl_sh_backward(int f64, const void *x, int64_t s0, int64_t s1, const void *g, int64_t g0, int64_t g1, void *out,
                      int64_t n, int lmax, const void *a, const void *b, const void *consts, const void *ec,
                      const void *msq, int nthreads) {
    if (lmax < 1) return 1;
    sh_bwd_args w = {x, s0, s1, g, g0, g1, out, n, lmax, a, b, consts, ec, msq};
    const int64_t nblocks = (n + SH_BWD_BLOCK - 1) / SH_BWD_BLOCK;
    return sh_run_kind(SH_KIND_BWD, f64, &w, n, (nblocks + SH_BWD_GRAB - 1) / SH_BWD_GRAB, nblocks, nthreads);
}
