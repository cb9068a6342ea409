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
 * Threads: one OpenMP parallel region per call (num_threads from the caller), blocks handed out
 * through an atomic counter, so a thread that is descheduled (a busy machine) only delays the
 * block it holds; the others take the rest. Built without OpenMP, the kernel is serial.
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

#ifdef _OPENMP
#include <omp.h>
#endif

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
#define SH_GRAB 8 /* blocks per grab: 8 KiB (float32) of each output row, whole pages per thread */
#endif
#define SH_CHUNK (2 * 1024 * 1024) /* bytes of output mapped per grab of the populate pass: one 2 MiB page */
#define SH_FLAG_STREAM 1
#define SH_FLAG_POPULATE 2

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
    }                                                                                             \
                                                                                                  \
    int NAME(const T *xyz, int64_t s0, int64_t s1, T *out, int64_t n, int lmax, const T *ratio,      \
             const T *a, const T *ab, double y00, int nthreads, int flags) {                     \
        if (lmax < 0 || n < 0) return 1;                                                          \
        const int64_t nblocks = (n + SH_BLOCK - 1) / SH_BLOCK;                                    \
        const int64_t ngrabs = (nblocks + SH_GRAB - 1) / SH_GRAB;                                 \
        const int stream = flags & SH_FLAG_STREAM;                                                \
        const int64_t nbytes = (int64_t)(lmax + 1) * (lmax + 1) * n * (int64_t)sizeof(T);         \
        const int64_t nchunks = (flags & SH_FLAG_POPULATE) ? (nbytes + SH_CHUNK - 1) / SH_CHUNK : 0; \
        int64_t next = 0, pnext = 0, done = 0;                                                    \
        if (nthreads < 1) nthreads = 1;                                                           \
        if (nthreads > ngrabs) nthreads = (int)(ngrabs > 0 ? ngrabs : 1);                         \
        SH_PARALLEL()                                                                             \
        {                                                                                         \
            for (;;) { /* map the output's pages first, each chunk by one thread */               \
                const int64_t c = __atomic_fetch_add(&pnext, 1, __ATOMIC_RELAXED);                \
                if (c >= nchunks) break;                                                          \
                sh_populate((char *)out + c * SH_CHUNK,                                           \
                            nbytes - c * SH_CHUNK < SH_CHUNK ? nbytes - c * SH_CHUNK : SH_CHUNK);  \
            }                                                                                     \
            T *scratch = (T *)malloc(sizeof(T) * 3 * (size_t)(2 * lmax + 1) * SH_BLOCK);          \
            if (scratch != NULL) {                                                                \
                for (;;) {                                                                        \
                    const int64_t g = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);             \
                    if (g >= ngrabs) break;                                                       \
                    for (int64_t b = g * SH_GRAB; b < (g + 1) * SH_GRAB && b < nblocks; ++b) {    \
                        const int64_t i0 = b * SH_BLOCK;                                          \
                        const int64_t nb = n - i0 < SH_BLOCK ? n - i0 : SH_BLOCK;                 \
                        NAME##_block(xyz, s0, s1, out, n, i0, nb, lmax, ratio, a, ab, (T)y00, scratch, \
                                     stream);                                                     \
                    }                                                                             \
                    __atomic_fetch_add(&done, 1, __ATOMIC_RELAXED);                               \
                }                                                                                 \
                free(scratch);                                                                    \
            }                                                                                     \
            SH_FENCE();                                                                           \
        }                                                                                         \
        /* a thread that could not allocate its scratch left its blocks to the others */         \
        return done == ngrabs ? 0 : 2;                                                            \
    }

#ifdef _OPENMP
#define SH_PARALLEL() _Pragma("omp parallel num_threads(nthreads)")
#else
#define SH_PARALLEL()
#endif

#if SH_STREAM
#define SH_FENCE() _mm_sfence() /* streaming stores visible before the caller reads the output */
#else
#define SH_FENCE()
#endif

SH_DEFINE(float, geodl_sh_real_f32)
SH_DEFINE(double, geodl_sh_real_f64)

/* 1 when built with OpenMP (the kernel can use more than one thread), else 0 */
int geodl_sh_parallel(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
