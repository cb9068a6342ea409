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

static void sh_piece(const sh_job *j, int64_t piece, sh_scratch *sc) {
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

