/* C kernels on lane-interleaved quantized matrices: a drop-in for kernels_numba.py, loaded with
 * ctypes by kernels_c.py (a few MB resident, where numba and llvmlite take ~130 MB).
 *
 * Layout (agent/llm/repack.py): every field is [group, block, (field row,) lane], LANES rows of
 * the matrix per group, row index last. SIMD runs across lanes: an activation is broadcast to
 * all lanes, and a block's partial sums and scales stay lane-wise, so no horizontal sums.
 * The code is written with GCC vector extensions, V lanes (one register of float32: 16 with
 * AVX-512, 8 with AVX2, else 4) at a time: gcc lowers wider-than-hardware vectors badly (4-5x
 * slower, measured on AVX2). Codes are widened to 32-bit integers before converting, so every
 * conversion is a 32-bit vector op.
 *
 * Every kernel takes up to six field pointers (in repack.FIELDS order, unused ones NULL), then
 * the f16 table and its own arguments, so kernels_c.py can call them all the same way.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#if defined(__AVX512F__) || defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

#define LANES 128
#if defined(__AVX512F__)
#define V 16
#elif defined(__AVX2__)
#define V 8
#else
#define V 4
#endif
#define NV (LANES / V)

typedef float vf __attribute__((vector_size(4 * V)));
typedef int32_t vi __attribute__((vector_size(4 * V)));
typedef uint32_t vu __attribute__((vector_size(4 * V)));

#define INLINE static inline __attribute__((always_inline))
#define FIELDS const void *f0, const void *f1, const void *f2, const void *f3, const void *f4, const void *f5
#define PARALLEL_FOR _Pragma("omp parallel for schedule(dynamic, 1)")

/* V bytes widened to 32-bit lanes. gcc 12 scalarizes __builtin_convertvector for a 4x widening,
 * hence the intrinsics (one vpmovzxbd / vpmovsxbd from memory) where they exist. */
INLINE vu u8(const uint8_t *p)
{
#if V == 16
    return (vu)_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
#elif V == 8
    return (vu)_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
#else
    vu r;
    for (int i = 0; i < V; i++)
        r[i] = p[i];
    return r;
#endif
}

INLINE vi s8(const int8_t *p)
{
#if V == 16
    return (vi)_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p));
#elif V == 8
    return (vi)_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
#else
    vi r;
    for (int i = 0; i < V; i++)
        r[i] = p[i];
    return r;
#endif
}

INLINE vf fu(vu v) { return __builtin_convertvector((vi)v, vf); } /* codes are small: signed cvt is exact */
INLINE vf fi(vi v) { return __builtin_convertvector(v, vf); }
INLINE void st(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* V f16 scales (uint16 bits) as float32: in hardware where there is F16C, else via the table. */
INLINE vf f16(const uint16_t *p, const float *tab)
{
#if V == 16
    (void)tab;
    return (vf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#elif V == 8 && defined(__F16C__)
    (void)tab;
    return (vf)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#elif V == 4 && defined(__F16C__)
    (void)tab;
    return (vf)_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)p));
#else
    vf r;
    for (int i = 0; i < V; i++)
        r[i] = tab[p[i]];
    return r;
#endif
}

int kernels_lanes(void) { return LANES; }
int kernels_procs(void) { return omp_get_num_procs(); }
void kernels_set_threads(int n) { omp_set_num_threads(n); } /* per calling thread (its ICV) */
int kernels_get_threads(void) { return omp_get_max_threads(); }
/* Frees the calling thread's OpenMP workers (they start again at its next parallel region).
 * libgomp keeps a pool per calling thread, and once the pools together hold more threads than
 * there are CPUs it stops spinning between parallel regions: every region then pays a futex
 * wake-up (measured on 2 cores while another thread's idle pool lived: a 1.1B decode step 30 ->
 * 36 ms, a 4-row batched step 42 -> 59 ms). */
void kernels_release_threads(void) { omp_pause_resource_all(omp_pause_soft); }

/* The loops shared by all types. mv: groups in parallel, then tokens, then blocks; the block
 * function adds block gb's contribution to acc (x and xs point at the block's activations and
 * sub-block sums). dq: (group, block) pairs in parallel; the block function writes its BS rows of
 * wt starting at w (row stride W), lanes at the group's columns. */
#define KERNELS(T, BS, SS)                                                                          \
    void mv_##T(FIELDS, const float *tab, const float *x, const float *xs, float *out,             \
                int64_t G, int64_t nb, int64_t nt)                                                  \
    {                                                                                               \
        const void *f[6] = {f0, f1, f2, f3, f4, f5};                                                \
        PARALLEL_FOR                                                                                \
        for (int64_t g = 0; g < G; g++)                                                             \
            for (int64_t t = 0; t < nt; t++) {                                                      \
                vf acc[NV];                                                                         \
                for (int v = 0; v < NV; v++)                                                        \
                    acc[v] = (vf){0};                                                               \
                for (int64_t b = 0; b < nb; b++)                                                    \
                    mv_blk_##T(f, tab, g * nb + b, x + (t * nb + b) * BS,                           \
                               xs + (t * nb + b) * (BS / SS), acc);                                 \
                memcpy(out + (t * G + g) * LANES, acc, sizeof acc);                                 \
            }                                                                                       \
    }                                                                                               \
    void dq_##T(FIELDS, const float *tab, int64_t g0, int64_t g1, float *wt, int64_t nb)           \
    {                                                                                               \
        const void *f[6] = {f0, f1, f2, f3, f4, f5};                                                \
        const int64_t W = (g1 - g0) * LANES;                                                        \
        PARALLEL_FOR                                                                                \
        for (int64_t k = 0; k < (g1 - g0) * nb; k++) {                                              \
            const int64_t gi = k / nb, b = k % nb;                                                  \
            dq_blk_##T(f, tab, (g0 + gi) * nb + b, wt + b * BS * W + gi * LANES, W);                \
        }                                                                                           \
    }

/* Field i of block gb: a pointer to its rows of LANES values. */
#define FIELD(type, i, rows) ((const type *)f[i] + gb * (rows) * LANES)

/* ------------------------------------------------------------------------------------------- */
/* Block functions. mv reads each field's rows (LANES bytes) whole and in order, into per-chunk  */
/* sums held in registers: reading in order matters as much as the arithmetic (measured, decode  */
/* from DRAM: chunk by chunk, or two rows 4 KB apart in turn, streamed at half the bandwidth).   */
/* Where a byte feeds four sums, to keep them in registers, Q6_K takes the sums in pairs (rows    */
/* whole) and Q2_K/Q3_K the lanes in two halves (as fast as pairs for them, measured).           */
/* dq: the block's scales first, then whole rows of wt.                                          */
/* ------------------------------------------------------------------------------------------- */

#define HALF (NV / 2)
#define ZERO(a, n) for (int z_ = 0; z_ < (n); z_++) (a)[z_] = (vf){0}

/* 32-value blocks: element j < 16 is the low nibble of qs[j], element 16 + j the high one. */
INLINE void mv_blk_q4_0(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 16);
    const uint16_t *d = FIELD(uint16_t, 1, 1);
    vf s[NV];
    ZERO(s, NV);
    for (int j = 0; j < 16; j++)
        for (int v = 0; v < NV; v++) {
            vu c = u8(qs + j * LANES + v * V);
            s[v] += fu(c & 15) * x[j] + fu(c >> 4) * x[16 + j];
        }
    for (int v = 0; v < NV; v++)
        acc[v] += f16(d + v * V, tab) * (s[v] - 8 * xs[0]); /* codes are offset by 8 */
}

INLINE void dq_blk_q4_0(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 16);
    const uint16_t *d = FIELD(uint16_t, 1, 1);
    vf dv[NV];
    for (int v = 0; v < NV; v++)
        dv[v] = f16(d + v * V, tab);
    for (int j = 0; j < 16; j++)
        for (int v = 0; v < NV; v++) {
            vu c = u8(qs + j * LANES + v * V);
            st(w + j * W + v * V, dv[v] * (fu(c & 15) - 8));
            st(w + (16 + j) * W + v * V, dv[v] * (fu(c >> 4) - 8));
        }
}

INLINE void mv_blk_q4_1(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 16);
    const uint16_t *d = FIELD(uint16_t, 1, 1), *m = FIELD(uint16_t, 2, 1);
    vf s[NV];
    ZERO(s, NV);
    for (int j = 0; j < 16; j++)
        for (int v = 0; v < NV; v++) {
            vu c = u8(qs + j * LANES + v * V);
            s[v] += fu(c & 15) * x[j] + fu(c >> 4) * x[16 + j];
        }
    for (int v = 0; v < NV; v++)
        acc[v] += f16(d + v * V, tab) * s[v] + f16(m + v * V, tab) * xs[0];
}

INLINE void dq_blk_q4_1(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 16);
    const uint16_t *d = FIELD(uint16_t, 1, 1), *m = FIELD(uint16_t, 2, 1);
    vf dv[NV], mv[NV];
    for (int v = 0; v < NV; v++)
        dv[v] = f16(d + v * V, tab), mv[v] = f16(m + v * V, tab);
    for (int j = 0; j < 16; j++)
        for (int v = 0; v < NV; v++) {
            vu c = u8(qs + j * LANES + v * V);
            st(w + j * W + v * V, dv[v] * fu(c & 15) + mv[v]);
            st(w + (16 + j) * W + v * V, dv[v] * fu(c >> 4) + mv[v]);
        }
}

/* Q5: element j's fifth bit is bit j of the little-endian 32-bit qh (4 field rows). */
INLINE void qh32(const uint8_t *qh, vu *h)
{
    for (int v = 0; v < NV; v++)
        h[v] = u8(qh + v * V) | u8(qh + LANES + v * V) << 8 | u8(qh + 2 * LANES + v * V) << 16
               | u8(qh + 3 * LANES + v * V) << 24;
}

#define Q5_LO(c, h, j) (((c) & 15) | (((h) >> (j)) & 1) << 4)
#define Q5_HI(c, h, j) (((c) >> 4) | (((h) >> (16 + (j))) & 1) << 4)

INLINE void mv_blk_q5_0(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 16), *qh = FIELD(uint8_t, 1, 4);
    const uint16_t *d = FIELD(uint16_t, 2, 1);
    vu h[NV];
    vf s[NV];
    qh32(qh, h);
    ZERO(s, NV);
    for (int j = 0; j < 16; j++)
        for (int v = 0; v < NV; v++) {
            vu c = u8(qs + j * LANES + v * V);
            s[v] += fu(Q5_LO(c, h[v], j)) * x[j] + fu(Q5_HI(c, h[v], j)) * x[16 + j];
        }
    for (int v = 0; v < NV; v++)
        acc[v] += f16(d + v * V, tab) * (s[v] - 16 * xs[0]);
}

INLINE void dq_blk_q5_0(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 16), *qh = FIELD(uint8_t, 1, 4);
    const uint16_t *d = FIELD(uint16_t, 2, 1);
    vu h[NV];
    vf dv[NV];
    qh32(qh, h);
    for (int v = 0; v < NV; v++)
        dv[v] = f16(d + v * V, tab);
    for (int j = 0; j < 16; j++)
        for (int v = 0; v < NV; v++) {
            vu c = u8(qs + j * LANES + v * V);
            st(w + j * W + v * V, dv[v] * (fu(Q5_LO(c, h[v], j)) - 16));
            st(w + (16 + j) * W + v * V, dv[v] * (fu(Q5_HI(c, h[v], j)) - 16));
        }
}

INLINE void mv_blk_q5_1(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 16), *qh = FIELD(uint8_t, 1, 4);
    const uint16_t *d = FIELD(uint16_t, 2, 1), *m = FIELD(uint16_t, 3, 1);
    vu h[NV];
    vf s[NV];
    qh32(qh, h);
    ZERO(s, NV);
    for (int j = 0; j < 16; j++)
        for (int v = 0; v < NV; v++) {
            vu c = u8(qs + j * LANES + v * V);
            s[v] += fu(Q5_LO(c, h[v], j)) * x[j] + fu(Q5_HI(c, h[v], j)) * x[16 + j];
        }
    for (int v = 0; v < NV; v++)
        acc[v] += f16(d + v * V, tab) * s[v] + f16(m + v * V, tab) * xs[0];
}

INLINE void dq_blk_q5_1(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 16), *qh = FIELD(uint8_t, 1, 4);
    const uint16_t *d = FIELD(uint16_t, 2, 1), *m = FIELD(uint16_t, 3, 1);
    vu h[NV];
    vf dv[NV], mv[NV];
    qh32(qh, h);
    for (int v = 0; v < NV; v++)
        dv[v] = f16(d + v * V, tab), mv[v] = f16(m + v * V, tab);
    for (int j = 0; j < 16; j++)
        for (int v = 0; v < NV; v++) {
            vu c = u8(qs + j * LANES + v * V);
            st(w + j * W + v * V, dv[v] * fu(Q5_LO(c, h[v], j)) + mv[v]);
            st(w + (16 + j) * W + v * V, dv[v] * fu(Q5_HI(c, h[v], j)) + mv[v]);
        }
}

INLINE void mv_blk_q8_0(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    const int8_t *qs = FIELD(int8_t, 0, 32);
    const uint16_t *d = FIELD(uint16_t, 1, 1);
    vf s[NV];
    (void)xs;
    ZERO(s, NV);
    for (int j = 0; j < 32; j++)
        for (int v = 0; v < NV; v++)
            s[v] += fi(s8(qs + j * LANES + v * V)) * x[j];
    for (int v = 0; v < NV; v++)
        acc[v] += f16(d + v * V, tab) * s[v];
}

INLINE void dq_blk_q8_0(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    const int8_t *qs = FIELD(int8_t, 0, 32);
    const uint16_t *d = FIELD(uint16_t, 1, 1);
    vf dv[NV];
    for (int v = 0; v < NV; v++)
        dv[v] = f16(d + v * V, tab);
    for (int j = 0; j < 32; j++)
        for (int v = 0; v < NV; v++)
            st(w + j * W + v * V, dv[v] * fi(s8(qs + j * LANES + v * V)));
}

/* K-quants: 256-value super-blocks. */

/* Q2_K: value 128h + 32k + l = d * (sc & 15) * ((qs[32h + l] >> 2k) & 3) - dmin * (sc >> 4), sc
 * the scale byte of 16-value sub-block 8h + 2k + l / 16: one code byte feeds four sub-blocks. */
INLINE void mv_blk_q2_k(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 64), *sc = FIELD(uint8_t, 1, 16);
    const uint16_t *d = FIELD(uint16_t, 2, 1), *dm = FIELD(uint16_t, 3, 1);
    for (int v0 = 0; v0 < NV; v0 += HALF) {
        vf a[HALF], m[HALF]; /* sums of scale * partial sum, and of min * sub-block sum of x */
        ZERO(a, HALF);
        ZERO(m, HALF);
        for (int h = 0; h < 2; h++)
            for (int lh = 0; lh < 2; lh++) {
                vf s[4][HALF];
                for (int k = 0; k < 4; k++)
                    ZERO(s[k], HALF);
                for (int i = 0; i < 16; i++) {
                    const int l = 16 * lh + i;
                    for (int v = 0; v < HALF; v++) {
                        vu c = u8(qs + (32 * h + l) * LANES + (v0 + v) * V);
                        for (int k = 0; k < 4; k++)
                            s[k][v] += fu((c >> (2 * k)) & 3) * x[128 * h + 32 * k + l];
                    }
                }
                for (int k = 0; k < 4; k++) {
                    const int sub = 8 * h + 2 * k + lh;
                    for (int v = 0; v < HALF; v++) {
                        vu c = u8(sc + sub * LANES + (v0 + v) * V);
                        a[v] += fu(c & 15) * s[k][v];
                        m[v] += fu(c >> 4) * xs[sub];
                    }
                }
            }
        for (int v = 0; v < HALF; v++)
            acc[v0 + v] += f16(d + (v0 + v) * V, tab) * a[v] - f16(dm + (v0 + v) * V, tab) * m[v];
    }
}

INLINE void dq_blk_q2_k(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 64), *sc = FIELD(uint8_t, 1, 16);
    const uint16_t *d = FIELD(uint16_t, 2, 1), *dm = FIELD(uint16_t, 3, 1);
    vf dl[16][NV], ml[16][NV]; /* per sub-block: d * scale, dmin * min */
    for (int v = 0; v < NV; v++) {
        vf dv = f16(d + v * V, tab), mv = f16(dm + v * V, tab);
        for (int j = 0; j < 16; j++) {
            vu c = u8(sc + j * LANES + v * V);
            dl[j][v] = dv * fu(c & 15), ml[j][v] = mv * fu(c >> 4);
        }
    }
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++)
            for (int v = 0; v < NV; v++) {
                vu c = u8(qs + (32 * h + l) * LANES + v * V);
                for (int k = 0; k < 4; k++) {
                    const int sub = 8 * h + 2 * k + l / 16;
                    st(w + (128 * h + 32 * k + l) * W + v * V, dl[sub][v] * fu((c >> (2 * k)) & 3) - ml[sub][v]);
                }
            }
}

/* Q3_K: value 128h + 32k + l = d * sc[8h + 2k + l / 16] * (q - 4), q = bits 2k..2k+1 of
 * qs[32h + l] plus bit 4h + k of hm[l] as bit 2. The -4 is folded in through xs. */
INLINE vu q3(vu c, vu hb, int h, int k) { return ((c >> (2 * k)) & 3) | ((hb >> (4 * h + k)) & 1) << 2; }

INLINE void mv_blk_q3_k(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 64), *hm = FIELD(uint8_t, 1, 32);
    const int8_t *sc = FIELD(int8_t, 2, 16);
    const uint16_t *d = FIELD(uint16_t, 3, 1);
    for (int v0 = 0; v0 < NV; v0 += HALF) {
        vf a[HALF];
        ZERO(a, HALF);
        for (int h = 0; h < 2; h++)
            for (int lh = 0; lh < 2; lh++) {
                vf s[4][HALF];
                for (int k = 0; k < 4; k++)
                    ZERO(s[k], HALF);
                for (int i = 0; i < 16; i++) {
                    const int l = 16 * lh + i;
                    for (int v = 0; v < HALF; v++) {
                        vu c = u8(qs + (32 * h + l) * LANES + (v0 + v) * V);
                        vu hb = u8(hm + l * LANES + (v0 + v) * V);
                        for (int k = 0; k < 4; k++)
                            s[k][v] += fu(q3(c, hb, h, k)) * x[128 * h + 32 * k + l];
                    }
                }
                for (int k = 0; k < 4; k++) {
                    const int sub = 8 * h + 2 * k + lh;
                    for (int v = 0; v < HALF; v++)
                        a[v] += fi(s8(sc + sub * LANES + (v0 + v) * V)) * (s[k][v] - 4 * xs[sub]);
                }
            }
        for (int v = 0; v < HALF; v++)
            acc[v0 + v] += f16(d + (v0 + v) * V, tab) * a[v];
    }
}

/* The 16 sub-block scales of a Q3_K / Q6_K block, d * sc[j], lane-wise. */
INLINE void sub_scales16(const uint16_t *d, const int8_t *sc, const float *tab, vf dl[16][NV])
{
    for (int v = 0; v < NV; v++) {
        vf dv = f16(d + v * V, tab);
        for (int j = 0; j < 16; j++)
            dl[j][v] = dv * fi(s8(sc + j * LANES + v * V));
    }
}

INLINE void dq_blk_q3_k(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 64), *hm = FIELD(uint8_t, 1, 32);
    const int8_t *sc = FIELD(int8_t, 2, 16);
    const uint16_t *d = FIELD(uint16_t, 3, 1);
    vf dl[16][NV];
    sub_scales16(d, sc, tab, dl);
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++)
            for (int v = 0; v < NV; v++) {
                vu c = u8(qs + (32 * h + l) * LANES + v * V), hb = u8(hm + l * LANES + v * V);
                for (int k = 0; k < 4; k++)
                    st(w + (128 * h + 32 * k + l) * W + v * V, dl[8 * h + 2 * k + l / 16][v] * (fu(q3(c, hb, h, k)) - 4));
            }
}

/* Q4_K / Q5_K: chunk c (64 values): the low nibbles of qs[32c + l] are 32-value sub-block 2c, the
 * high nibbles 2c + 1; Q5_K adds bit j of qh[l] as the fifth bit of sub-block j. */
INLINE void k4_codes(const uint8_t *qs, const uint8_t *qh, int c, int l, int v, vu *lo, vu *hi)
{
    vu q = u8(qs + (32 * c + l) * LANES + v * V);
    *lo = q & 15, *hi = q >> 4;
    if (qh) {
        vu hb = u8(qh + l * LANES + v * V) >> (2 * c);
        *lo |= (hb & 1) << 4;
        *hi |= (hb & 2) << 3;
    }
}

INLINE void mv_blk_k4(const uint8_t *qs, const uint8_t *qh, const uint8_t *sc, const uint8_t *mn,
                      const uint16_t *d, const uint16_t *dm, const float *tab, const float *x,
                      const float *xs, vf *acc)
{
    for (int c = 0; c < 4; c++) {
        vf sl[NV], sh[NV];
        ZERO(sl, NV);
        ZERO(sh, NV);
        for (int l = 0; l < 32; l++)
            for (int v = 0; v < NV; v++) {
                vu lo, hi;
                k4_codes(qs, qh, c, l, v, &lo, &hi);
                sl[v] += fu(lo) * x[64 * c + l];
                sh[v] += fu(hi) * x[64 * c + 32 + l];
            }
        for (int v = 0; v < NV; v++) {
            vf a = fu(u8(sc + 2 * c * LANES + v * V)) * sl[v] + fu(u8(sc + (2 * c + 1) * LANES + v * V)) * sh[v];
            vf m = fu(u8(mn + 2 * c * LANES + v * V)) * xs[2 * c] + fu(u8(mn + (2 * c + 1) * LANES + v * V)) * xs[2 * c + 1];
            acc[v] += f16(d + v * V, tab) * a - f16(dm + v * V, tab) * m;
        }
    }
}

INLINE void dq_blk_k4(const uint8_t *qs, const uint8_t *qh, const uint8_t *sc, const uint8_t *mn,
                      const uint16_t *d, const uint16_t *dm, const float *tab, float *w, int64_t W)
{
    vf dl[8][NV], ml[8][NV]; /* per sub-block: d * scale, dmin * min */
    for (int v = 0; v < NV; v++) {
        vf dv = f16(d + v * V, tab), mv = f16(dm + v * V, tab);
        for (int j = 0; j < 8; j++)
            dl[j][v] = dv * fu(u8(sc + j * LANES + v * V)), ml[j][v] = mv * fu(u8(mn + j * LANES + v * V));
    }
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            for (int v = 0; v < NV; v++) {
                vu lo, hi;
                k4_codes(qs, qh, c, l, v, &lo, &hi);
                st(w + (64 * c + l) * W + v * V, dl[2 * c][v] * fu(lo) - ml[2 * c][v]);
                st(w + (64 * c + 32 + l) * W + v * V, dl[2 * c + 1][v] * fu(hi) - ml[2 * c + 1][v]);
            }
}

INLINE void mv_blk_q4_k(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    mv_blk_k4(FIELD(uint8_t, 0, 128), NULL, FIELD(uint8_t, 1, 8), FIELD(uint8_t, 2, 8),
              FIELD(uint16_t, 3, 1), FIELD(uint16_t, 4, 1), tab, x, xs, acc);
}

INLINE void dq_blk_q4_k(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    dq_blk_k4(FIELD(uint8_t, 0, 128), NULL, FIELD(uint8_t, 1, 8), FIELD(uint8_t, 2, 8),
              FIELD(uint16_t, 3, 1), FIELD(uint16_t, 4, 1), tab, w, W);
}

INLINE void mv_blk_q5_k(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    mv_blk_k4(FIELD(uint8_t, 0, 128), FIELD(uint8_t, 1, 32), FIELD(uint8_t, 2, 8), FIELD(uint8_t, 3, 8),
              FIELD(uint16_t, 4, 1), FIELD(uint16_t, 5, 1), tab, x, xs, acc);
}

INLINE void dq_blk_q5_k(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    dq_blk_k4(FIELD(uint8_t, 0, 128), FIELD(uint8_t, 1, 32), FIELD(uint8_t, 2, 8), FIELD(uint8_t, 3, 8),
              FIELD(uint16_t, 4, 1), FIELD(uint16_t, 5, 1), tab, w, W);
}

/* Q6_K: half h, quarter k (32 values each): low four bits from ql[64h + l] (k = 0, 2: low / high
 * nibble) or ql[64h + 32 + l] (k = 1, 3), high two bits from qh[32h + l] >> 2k; minus 32 (folded
 * in through xs). 16-value sub-block 8h + 2k + l / 16 has its own int8 scale. */
#define Q6(q0, q1, hb, k) (((k) == 0 ? (q0) & 15 : (k) == 1 ? (q1) & 15 : (k) == 2 ? (q0) >> 4 : (q1) >> 4) \
                           | (((k) == 0 ? (hb) << 4 : (k) == 1 ? (hb) << 2 : (k) == 2 ? (hb) : (hb) >> 2) & 48))

/* A register of bytes (4V lanes): Q6_K's codes are built 4V lanes per op, then widened (faster
 * than at 32 bits here; not for Q2_K/Q3_K, measured). */
typedef uint8_t vq __attribute__((vector_size(4 * V)));

INLINE void mv_blk_q6_k(const void *const *f, const float *tab, int64_t gb, const float *x,
                        const float *xs, vf *acc)
{
    const uint8_t *ql = FIELD(uint8_t, 0, 128), *qh = FIELD(uint8_t, 1, 64);
    const int8_t *sc = FIELD(int8_t, 2, 16);
    const uint16_t *d = FIELD(uint16_t, 3, 1);
    vf a[NV];
    ZERO(a, NV);
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 2; p++) /* quarters p and p + 2: low and high nibbles of ql[64h + 32p + l] */
            for (int lh = 0; lh < 2; lh++) {
                vf s0[NV], s1[NV];
                ZERO(s0, NV);
                ZERO(s1, NV);
                for (int i = 0; i < 16; i++) {
                    const int l = 16 * lh + i;
                    const float x0 = x[128 * h + 32 * p + l], x1 = x[128 * h + 32 * (p + 2) + l];
                    for (int o = 0; o < LANES; o += 4 * V) {
                        vq q, hb, c0, c1;
                        memcpy(&q, ql + (64 * h + 32 * p + l) * LANES + o, sizeof q);
                        memcpy(&hb, qh + (32 * h + l) * LANES + o, sizeof hb);
                        c0 = Q6(q, q, hb, p);
                        c1 = Q6(q, q, hb, p + 2);
                        for (int v = 0; v < 4; v++) {
                            s0[o / V + v] += fu(u8((const uint8_t *)&c0 + v * V)) * x0;
                            s1[o / V + v] += fu(u8((const uint8_t *)&c1 + v * V)) * x1;
                        }
                    }
                }
                const int sub0 = 8 * h + 2 * p + lh, sub1 = sub0 + 4;
                for (int v = 0; v < NV; v++)
                    a[v] += fi(s8(sc + sub0 * LANES + v * V)) * (s0[v] - 32 * xs[sub0])
                            + fi(s8(sc + sub1 * LANES + v * V)) * (s1[v] - 32 * xs[sub1]);
            }
    for (int v = 0; v < NV; v++)
        acc[v] += f16(d + v * V, tab) * a[v];
}

INLINE void dq_blk_q6_k(const void *const *f, const float *tab, int64_t gb, float *w, int64_t W)
{
    const uint8_t *ql = FIELD(uint8_t, 0, 128), *qh = FIELD(uint8_t, 1, 64);
    const int8_t *sc = FIELD(int8_t, 2, 16);
    const uint16_t *d = FIELD(uint16_t, 3, 1);
    vf dl[16][NV];
    sub_scales16(d, sc, tab, dl);
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++)
            for (int v = 0; v < NV; v++) {
                vu q0 = u8(ql + (64 * h + l) * LANES + v * V), q1 = u8(ql + (64 * h + 32 + l) * LANES + v * V);
                vu hb = u8(qh + (32 * h + l) * LANES + v * V);
                for (int k = 0; k < 4; k++)
                    st(w + (128 * h + 32 * k + l) * W + v * V, dl[8 * h + 2 * k + l / 16][v] * (fu(Q6(q0, q1, hb, k)) - 32));
            }
}

KERNELS(q4_0, 32, 32)
KERNELS(q4_1, 32, 32)
KERNELS(q5_0, 32, 32)
KERNELS(q5_1, 32, 32)
KERNELS(q8_0, 32, 32)
KERNELS(q2_k, 256, 16)
KERNELS(q3_k, 256, 16)
KERNELS(q4_k, 256, 32)
KERNELS(q5_k, 256, 32)
KERNELS(q6_k, 256, 16)

/* ------------------------------------------------------------------------------------------- */
/* Repacking: out[g, b, k, r] = blocks[g * LANES + r, b, start + k] (rows past the end read as 0) */
/* ------------------------------------------------------------------------------------------- */

/* Rows of a group that exist in blocks (the last group is padded). */
INLINE int64_t valid_rows(int64_t g, int64_t n_rows)
{
    int64_t n = n_rows - g * LANES;
    return n < 0 ? 0 : n > LANES ? LANES : n;
}

/* blocks may be any strided (e.g. read-only, memory-mapped) view: strides in bytes. */
void interleave(const uint8_t *blocks, int64_t n_rows, int64_t s_row, int64_t s_blk, int64_t s_byte,
                int64_t start, uint8_t *out, int64_t G, int64_t nb, int64_t width)
{
    PARALLEL_FOR
    for (int64_t gb = 0; gb < G * nb; gb++) {
        const int64_t g = gb / nb, b = gb % nb, n = valid_rows(g, n_rows);
        uint8_t *o = out + gb * width * LANES;
        for (int64_t r = 0; r < n; r++) { /* reads along a row's bytes; the writes stay in L1 */
            const uint8_t *src = blocks + (g * LANES + r) * s_row + b * s_blk + start * s_byte;
            for (int64_t k = 0; k < width; k++)
                o[k * LANES + r] = src[k * s_byte];
        }
        for (int64_t k = 0; k < width; k++)
            memset(o + k * LANES + n, 0, LANES - n);
    }
}

/* out[g, b, r] = the little-endian uint16 at byte start of row g * LANES + r, block b. */
void interleave_u16(const uint8_t *blocks, int64_t n_rows, int64_t s_row, int64_t s_blk, int64_t s_byte,
                    int64_t start, uint16_t *out, int64_t G, int64_t nb)
{
    PARALLEL_FOR
    for (int64_t gb = 0; gb < G * nb; gb++) {
        const int64_t g = gb / nb, b = gb % nb, n = valid_rows(g, n_rows);
        uint16_t *o = out + gb * LANES;
        for (int64_t r = 0; r < n; r++) {
            const uint8_t *src = blocks + (g * LANES + r) * s_row + b * s_blk + start * s_byte;
            o[r] = (uint16_t)(src[0] | src[s_byte] << 8);
        }
        for (int64_t r = n; r < LANES; r++)
            o[r] = 0;
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Attention over the f16 KV cache, for a few query rows (decode): numpy would first convert    */
/* every cached key and value of the layer to float32, per token, which at 2000 positions cost   */
/* 4x the matrix products. Here each (row, KV head) item reads its keys and values once, as     */
/* f16, for the whole group of query heads that share them.                                     */
/* ------------------------------------------------------------------------------------------- */

int kernels_vector_width(void) { return V; }

/* The sum of a's lanes, halving the vector each step (a lane-by-lane loop is a chain of V
 * dependent adds: most of a long context's attention time). */
INLINE float hsum(vf a)
{
#if V == 16
    return _mm512_reduce_add_ps((__m512)a);
#elif V == 8
    __m128 h = _mm_add_ps(_mm256_castps256_ps128((__m256)a), _mm256_extractf128_ps((__m256)a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
#else
    return (a[0] + a[2]) + (a[1] + a[3]);
#endif
}

/* e^x, V lanes: x = n ln2 + r (|r| <= ln2 / 2, ln2 in two parts for exactness), e^r by its Taylor
 * polynomial to degree 6 (truncation below 1.3e-7 relative: about an ulp, as libm's expf), times
 * 2^n built in the exponent bits; below -87 (e^x < 2^-126) it gives ~1e-38, NaN stays NaN. With
 * big (x may be above 0), 2^n is applied in two halves, so that e^88.5 stays finite and e^x
 * overflows to inf from 88.73 on, as expf does; without (softmax, x <= 0), one multiply less. */
INLINE vf vexp(vf x, const int big)
{
    const vi low = x < -87.0f; /* lanes of all ones where x is below */
    x = (vf)(((vi)x & ~low) | ((vi)((vf){0} - 87.0f) & low));
    if (big) {
        const vi high = x > 89.0f; /* e^89 is already inf; n must stay small enough to build */
        x = (vf)(((vi)x & ~high) | ((vi)((vf){0} + 89.0f) & high));
    }
    const vf shifter = (vf){0} + 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const vf n = (x * 1.44269504f + shifter) - shifter;
    const vf r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    vf p = (vf){0} + (1.0f / 720);
    p = p * r + (1.0f / 120);
    p = p * r + (1.0f / 24);
    p = p * r + (1.0f / 6);
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const vi ni = __builtin_convertvector(n, vi);
    if (big) { /* 2^128 has no exponent bits: p 2^h first, then 2^(n - h), each exact but the last */
        const vi h = ni >> 1;
        return p * (vf)((h + 127) << 23) * (vf)((ni - h + 127) << 23);
    }
    return p * (vf)((ni + 127) << 23);
}

/* sg[0..T) = exp(sg - max), the max subtracted first; returns 1 / their sum. */
INLINE float softmax_inplace(float *sg, int64_t T)
{
    float m = sg[0], sum = 0;
    for (int64_t t = 1; t < T; t++)
        m = sg[t] > m ? sg[t] : m;
    vf vsum = {0};
    int64_t t = 0;
    for (; t + V <= T; t += V) { /* V at a time: scalar expf was most of a long context's time */
        vf e;
        memcpy(&e, sg + t, sizeof e);
        e = vexp(e - m, 0);
        memcpy(sg + t, &e, sizeof e);
        vsum += e;
    }
    for (; t < T; t++)
        sum += (sg[t] = expf(sg[t] - m));
    return 1.0f / (sum + hsum(vsum));
}

/* A head's K or V row of a later position, n f16 values: rows of one head are n_kv * hd apart,
 * a page or more with many KV heads (7B: 8 KB), where the hardware prefetchers stop, so a long
 * context's attention waited on memory latency row by row. */
#ifndef ATT_AHEAD
#define ATT_AHEAD 8
#endif
INLINE void prefetch_row(const uint16_t *p, int64_t n)
{
    for (int64_t i = 0; i < n; i += 32) /* 64-byte lines */
        __builtin_prefetch(p + i, 0, 3);
}

/* One (query row, KV head) item: the group of query heads qi (n_head / n_kv of them, hd values
 * each) over positions 0..T-1 of one layer's cache k, v [positions, n_kv, hd] (f16 bits), into
 * oi. hd must be a multiple of V (kernels_vector_width). */
INLINE void attend_item(const uint16_t *k, const uint16_t *v, const float *qi, float *oi,
                        const float *tab, int64_t T, int64_t h, int64_t group, int64_t n_kv,
                        int64_t hd, float scale)
{
    const int64_t nvec = hd / V;
    float *s = malloc(sizeof(float) * group * T); /* scores, then weights: [group, T] */
    vf qv[group * nvec], kv[nvec], acc[group * nvec];
    float inv[group];
    for (int64_t c = 0; c < group * nvec; c++)
        memcpy(&qv[c], qi + c * V, sizeof(vf));
    for (int64_t t = 0; t < T; t++) {
        if (t + ATT_AHEAD < T)
            prefetch_row(k + ((t + ATT_AHEAD) * n_kv + h) * hd, hd);
        for (int64_t c = 0; c < nvec; c++)
            kv[c] = f16(k + (t * n_kv + h) * hd + c * V, tab);
        for (int64_t g = 0; g < group; g++) {
            vf d = qv[g * nvec] * kv[0];
            for (int64_t c = 1; c < nvec; c++)
                d += qv[g * nvec + c] * kv[c];
            s[g * T + t] = hsum(d) * scale;
        }
    }
    for (int64_t g = 0; g < group; g++)
        inv[g] = softmax_inplace(s + g * T, T);
    for (int64_t c = 0; c < group * nvec; c++)
        acc[c] = (vf){0};
    for (int64_t t = 0; t < T; t++) {
        if (t + ATT_AHEAD < T)
            prefetch_row(v + ((t + ATT_AHEAD) * n_kv + h) * hd, hd);
        for (int64_t c = 0; c < nvec; c++)
            kv[c] = f16(v + (t * n_kv + h) * hd + c * V, tab);
        for (int64_t g = 0; g < group; g++) {
            const float p = s[g * T + t];
            for (int64_t c = 0; c < nvec; c++)
                acc[g * nvec + c] += p * kv[c];
        }
    }
    for (int64_t g = 0; g < group; g++)
        for (int64_t c = 0; c < nvec; c++) {
            vf r = acc[g * nvec + c] * inv[g];
            memcpy(oi + g * hd + c * V, &r, sizeof r);
        }
    free(s);
}

/* k, v: one layer's cache [positions, n_kv, hd] (f16 bits); q, out: [n, n_head, hd] float32.
 * Row i sits at position n_past + i and sees positions 0..n_past + i. Query head j uses KV head
 * j / (n_head / n_kv). */
/* One row over T positions, the threads splitting the positions rather than the heads: each
 * reads whole cache rows (all KV heads of a position, contiguous) in order, where a head per
 * thread reads hd values every n_kv * hd (7B: 256 bytes every 8 KB, a new page every other row:
 * 7 GB/s at 2,000 positions). Scores [n_head, T], then each head's softmax, then the weighted
 * V rows into per-thread sums that are added at the end. */
static int attend_streamed(const uint16_t *k, const uint16_t *v, const float *q, float *out,
                           const float *tab, int64_t T, int64_t n_head, int64_t n_kv, int64_t hd,
                           float scale)
{
    const int64_t group = n_head / n_kv, nvec = hd / V, nth = omp_get_max_threads();
    float *s = malloc(sizeof(float) * n_head * T), *inv = malloc(sizeof(float) * n_head);
    vf *part = aligned_alloc(64, sizeof(vf) * nth * n_head * nvec);
    if (!s || !inv || !part) {
        free(s), free(inv), free(part);
        return -1;
    }
#pragma omp parallel
    {
        const int64_t tid = omp_get_thread_num(), team = omp_get_num_threads(); /* <= nth */
        vf *acc = part + tid * n_head * nvec;
        for (int64_t c = 0; c < n_head * nvec; c++)
            acc[c] = (vf){0};
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < n_kv; h++) {
                vf kv[nvec];
                for (int64_t c = 0; c < nvec; c++)
                    kv[c] = f16(k + (t * n_kv + h) * hd + c * V, tab);
                for (int64_t g = 0; g < group; g++) {
                    const float *qg = q + (h * group + g) * hd;
                    vf qv, d;
                    memcpy(&qv, qg, sizeof qv);
                    d = qv * kv[0];
                    for (int64_t c = 1; c < nvec; c++) {
                        memcpy(&qv, qg + c * V, sizeof qv);
                        d += qv * kv[c];
                    }
                    s[(h * group + g) * T + t] = hsum(d) * scale;
                }
            }
#pragma omp for schedule(static)
        for (int64_t j = 0; j < n_head; j++)
            inv[j] = softmax_inplace(s + j * T, T);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < n_kv; h++) {
                vf vv[nvec];
                for (int64_t c = 0; c < nvec; c++)
                    vv[c] = f16(v + (t * n_kv + h) * hd + c * V, tab);
                for (int64_t g = 0; g < group; g++) {
                    const float p = s[(h * group + g) * T + t];
                    vf *a = acc + (h * group + g) * nvec;
                    for (int64_t c = 0; c < nvec; c++)
                        a[c] += p * vv[c];
                }
            }
#pragma omp for schedule(static)
        for (int64_t j = 0; j < n_head; j++)
            for (int64_t c = 0; c < nvec; c++) {
                vf r = part[j * nvec + c];
                for (int64_t i = 1; i < team; i++) /* only the team's sums were written */
                    r += part[(i * n_head + j) * nvec + c];
                r *= inv[j];
                memcpy(out + j * hd + c * V, &r, sizeof r);
            }
    }
    free(s), free(inv), free(part);
    return 0;
}

/* From this many bytes of one layer's K per position range read by a decode row on, the threads
 * split positions (attend_streamed) instead of heads. */
#define STREAMED_BYTES (1 << 20)

void attention_f16(const uint16_t *k, const uint16_t *v, const float *q, float *out, const float *tab,
                   int64_t n, int64_t n_past, int64_t n_head, int64_t n_kv, int64_t hd, float scale)
{
    const int64_t group = n_head / n_kv;
    if (n == 1 && (n_past + 1) * n_kv * hd * 2 >= STREAMED_BYTES
        && !attend_streamed(k, v, q, out, tab, n_past + 1, n_head, n_kv, hd, scale))
        return;
    PARALLEL_FOR
    for (int64_t item = 0; item < n * n_kv; item++) {
        const int64_t i = item / n_kv, h = item % n_kv, off = (i * n_head + h * group) * hd;
        attend_item(k, v, q + off, out + off, tab, n_past + i + 1, h, group, n_kv, hd, scale);
    }
}

/* The same for rows of several sequences (a batched step): row i reads the caches k[i], v[i]
 * (each one layer's [positions, n_kv, hd]) and sits at position pos[i]. One call a layer, all
 * (row, KV head) items in parallel, instead of one call per sequence. */
void attention_rows(const uint16_t *const *k, const uint16_t *const *v, const int64_t *pos,
                    const float *q, float *out, const float *tab, int64_t n, int64_t n_head,
                    int64_t n_kv, int64_t hd, float scale)
{
    const int64_t group = n_head / n_kv;
    PARALLEL_FOR
    for (int64_t item = 0; item < n * n_kv; item++) {
        const int64_t i = item / n_kv, h = item % n_kv, off = (i * n_head + h * group) * hd;
        attend_item(k[i], v[i], q + off, out + off, tab, pos[i] + 1, h, group, n_kv, hd, scale);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Integer prefill (many tokens): activations quantized to int8, one scale per 32 values of a    */
/* token (as llama.cpp's Q8_0), or per 256 for K-quants (as its Q8_K), multiplied with the weight  */
/* codes by integer dot products, 4 bytes at a time: AVX-512 VNNI vpdpbusd where the CPU has it, */
/* AVX-VNNI on 256-bit CPUs, exact 16-bit multiply-adds on plain AVX2, portable C elsewhere.      */
/*                                                                                              */
/* Every type is written as value = A * code + B per sub-block of SS values (code an unsigned    */
/* byte; A, B floats per sub-block and row), or, for types with a fixed offset, B = -off * A: the */
/* offset is then folded into the integer sum (it starts at -off * the sub-block's sum of int8   */
/* activations), and only min-carrying types pay a float B term. A group's blocks are first     */
/* unpacked, QB values at a time, into codes laid out [QB/4][LANES][4] (4 consecutive values of */
/* a row in one 32-bit lane: what vpdpbusd multiplies) and A, B [QB/SS][LANES]; the unpacked     */
/* chunk (32 KB) is then reused by every token of the batch.                                    */
/* ------------------------------------------------------------------------------------------- */

#if defined(__AVX512VNNI__) && V == 16
#define ISA "avx512-vnni"
#elif defined(__AVXVNNI__) && V == 8
#define ISA "avx-vnni"
#elif V == 8
#define ISA "avx2"
#else
#define ISA "portable"
#endif
#if V == 16
#define MR 6 /* tokens x row vectors per micro-tile: float and int sums stay in registers */
#define NR 2
#else
#define MR 4
#define NR 1
#endif
#define QMAX 256 /* largest QB */
#define MMS_MAX 12 /* up to this many tokens the fused kernels take them in even passes over a group */
#if V == 16
#define MMS_MAX_Q4_0 MMS_MAX
#define MRS 6 /* most tokens of one pass of the fused kernels (mms_q4_0, mms_q4_k) */
#define MMS_CASES(X) X(1) X(2) X(3) X(4) X(5) X(6)
#define MRS_Q4_0 MRS
#define MMS_CASES_Q4_0 MMS_CASES
#else
/* AVX2: the fused Q4_0 product beats the buffered one at any token count (its passes of up to 8
 * tokens find the group in L2), 1.1B Q4_0 projections on Zen 3: 16 / 128 / 512 tokens 191-196 /
 * 1417-1456 / 6763 -> 145-151 / 1135-1151 / 4131 ms (passes of 4). Q4_K's is no faster from 13
 * tokens on. */
#define MMS_MAX_Q4_0 INT64_MAX
#define MRS 4 /* 16 ymm registers: 4 tokens x 2 vectors of 16-bit sums, the codes, the activations */
#define MMS_CASES(X) X(1) X(2) X(3) X(4)
/* Q4_0: 8 tokens x 1 vector of 16-bit sums (one pass for 5-8 tokens instead of two of 4: single
 * thread, L2-resident group, 6 / 8 tokens 13.3 / 12.6 -> 11.8 / 11.6 ps a product; all projections
 * of 8 rows 64.7-65.9 -> 63.6-63.8 ms, of a 128-token prompt 1134-1239 -> 1060-1086 ms) */
#define MRS_Q4_0 8
#define MMS_CASES_Q4_0(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8)
#endif

const char *kernels_isa(void) { return ISA; }

/* acc + sum over the 4 bytes of each lane of w (unsigned) times the 4 bytes of b (signed). */
INLINE vi dot4(vi acc, vi w, int32_t b)
{
#if defined(__AVX512VNNI__) && V == 16
    return (vi)_mm512_dpbusd_epi32((__m512i)acc, (__m512i)w, _mm512_set1_epi32(b));
#elif defined(__AVXVNNI__) && V == 8
    return (vi)_mm256_dpbusd_avx_epi32((__m256i)acc, (__m256i)w, _mm256_set1_epi32(b));
#elif V == 8
    /* maddubs would saturate (255 * 127 * 2 > 32767): 16-bit halves, exact */
    const __m256i bb = _mm256_set1_epi32(b), m = _mm256_set1_epi16(0xff);
    const __m256i w0 = _mm256_and_si256((__m256i)w, m), w1 = _mm256_srli_epi16((__m256i)w, 8);
    const __m256i b0 = _mm256_srai_epi16(_mm256_slli_epi16(bb, 8), 8), b1 = _mm256_srai_epi16(bb, 8);
    return acc + (vi)_mm256_add_epi32(_mm256_madd_epi16(w0, b0), _mm256_madd_epi16(w1, b1));
#else
    for (int i = 0; i < 4; i++)
        acc += (vi)(((vu)w >> (8 * i)) & 255) * (int32_t)(int8_t)(b >> (8 * i));
    return acc;
#endif
}

/* dot4 where every code of w is below 64 (all types but Q8_0): on plain AVX2 one vpmaddubsw (its
 * pairs of products are exact in 16 bits: 2 x 63 x 127 < 32768) and one vpmaddwd, instead of the
 * 16-bit halves above. 1.1B Q4_0, all projections of a 128-token prompt on Zen 3: 1.95-2.02 ->
 * 1.42-1.46 s (float tiles + sgemm: 2.01-2.11 s). */
INLINE vi dot4_small(vi acc, vi w, int32_t b)
{
#if V == 8 && !defined(__AVXVNNI__)
    const __m256i pairs = _mm256_maddubs_epi16((__m256i)w, _mm256_set1_epi32(b));
    return acc + (vi)_mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
#else
    return dot4(acc, w, b);
#endif
}

/* max |x[k]| over one block of n values; *bad says whether any value is NaN or infinite (the
 * comparison above skips NaN, so it is tracked apart). */
static inline float block_amax(const float *x, int64_t n, int *bad)
{
    float amax = 0;
    int nonfinite = 0;
    for (int64_t k = 0; k < n; k++) {
        amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
        nonfinite |= !(fabsf(x[k]) <= FLT_MAX);
    }
    *bad = nonfinite;
    return amax;
}

/* Quantize nt rows of x [nt, n] to int8, one scale per qb values: q [nt, n], d [nt, n / qb], and
 * per sub-block of ss values the sum of q (qsum: the offset and min terms use these quantized
 * sums, as llama.cpp does, so that the product is exactly that of the dequantized rows). */
void quantize_q8(const float *x, int64_t nt, int64_t n, int64_t qb, int64_t ss, int8_t *q, float *d,
                 int32_t *qsum)
{
    /* a few rows are quicker on this thread than waking the others (a decode token's ~2 us
     * against ~4 us for each parallel region) */
    const int many = nt >= 8;
#pragma omp parallel for schedule(dynamic, 1) if (many)
    for (int64_t t = 0; t < nt; t++)
        for (int64_t c = 0; c < n / qb; c++) {
            const float *xc = x + t * n + c * qb;
            int8_t *qc = q + t * n + c * qb;
            int bad; /* NaN or inf: the products must say so, not turn it into codes */
            const float amax = block_amax(xc, qb, &bad);
            const float id = amax > 0 && !bad ? 127 / amax : 0;
            d[t * (n / qb) + c] = bad ? NAN : amax / 127;
            for (int64_t k = 0; k < qb; k++)
                qc[k] = (int8_t)nearbyintf(xc[k] * id);
        }
#pragma omp parallel for schedule(dynamic, 1) if (many)
    for (int64_t t = 0; t < nt; t++)
        for (int64_t s = 0; s < n / ss; s++) {
            int32_t sq = 0;
            for (int64_t k = s * ss; k < (s + 1) * ss; k++)
                sq += q[t * n + k];
            qsum[t * (n / ss) + s] = sq;
        }
}

/* Four codes (vu, one per lane) of consecutive values, as one 32-bit lane each, stored at quad kq. */
INLINE void put4(uint8_t *codes, int64_t kq, int v, vu c0, vu c1, vu c2, vu c3)
{
    vu w = c0 | c1 << 8 | c2 << 16 | c3 << 24;
    memcpy(codes + (kq * LANES + v * V) * 4, &w, sizeof w);
}

INLINE void put_ab(float *A, float *B, int64_t sub, int v, vf a, vf b)
{
    memcpy(A + sub * LANES + v * V, &a, sizeof a);
    if (B)
        memcpy(B + sub * LANES + v * V, &b, sizeof b);
}

/* Unpackers: block gb into codes at quad 0, A and B at sub-block 0 (the caller offsets them). */
#define UNPACK(T) INLINE void up_##T(const void *const *f, const float *tab, int64_t gb, uint8_t *codes, float *A, float *B)

/* 32-value types: codes of element j < 16 in the low nibble of qs[j], 16 + j in the high one. */
INLINE void nibbles32(const uint8_t *qs, const uint8_t *qh, uint8_t *codes)
{
    vu h[NV];
    if (qh)
        qh32(qh, h);
    for (int j4 = 0; j4 < 4; j4++)
        for (int v = 0; v < NV; v++) {
            vu lo[4], hi[4];
            for (int i = 0; i < 4; i++) {
                vu c = u8(qs + (4 * j4 + i) * LANES + v * V);
                lo[i] = qh ? Q5_LO(c, h[v], 4 * j4 + i) : c & 15;
                hi[i] = qh ? Q5_HI(c, h[v], 4 * j4 + i) : c >> 4;
            }
            put4(codes, j4, v, lo[0], lo[1], lo[2], lo[3]);
            put4(codes, 4 + j4, v, hi[0], hi[1], hi[2], hi[3]);
        }
}

UNPACK(q4_0)
{
    nibbles32(FIELD(uint8_t, 0, 16), NULL, codes);
    for (int v = 0; v < NV; v++)
        put_ab(A, B, 0, v, f16(FIELD(uint16_t, 1, 1) + v * V, tab), (vf){0});
}

UNPACK(q4_1)
{
    nibbles32(FIELD(uint8_t, 0, 16), NULL, codes);
    for (int v = 0; v < NV; v++)
        put_ab(A, B, 0, v, f16(FIELD(uint16_t, 1, 1) + v * V, tab), f16(FIELD(uint16_t, 2, 1) + v * V, tab));
}

UNPACK(q5_0)
{
    nibbles32(FIELD(uint8_t, 0, 16), FIELD(uint8_t, 1, 4), codes);
    for (int v = 0; v < NV; v++)
        put_ab(A, B, 0, v, f16(FIELD(uint16_t, 2, 1) + v * V, tab), (vf){0});
}

UNPACK(q5_1)
{
    nibbles32(FIELD(uint8_t, 0, 16), FIELD(uint8_t, 1, 4), codes);
    for (int v = 0; v < NV; v++)
        put_ab(A, B, 0, v, f16(FIELD(uint16_t, 2, 1) + v * V, tab), f16(FIELD(uint16_t, 3, 1) + v * V, tab));
}

UNPACK(q8_0)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 32); /* int8 codes + 128 (flip the sign bit): unsigned */
    for (int kq = 0; kq < 8; kq++)
        for (int v = 0; v < NV; v++) {
            vu c[4];
            for (int i = 0; i < 4; i++)
                c[i] = u8(qs + (4 * kq + i) * LANES + v * V) ^ 0x80;
            put4(codes, kq, v, c[0], c[1], c[2], c[3]);
        }
    for (int v = 0; v < NV; v++)
        put_ab(A, B, 0, v, f16(FIELD(uint16_t, 1, 1) + v * V, tab), (vf){0});
}

/* Q2_K / Q3_K / Q6_K: value 128h + 32k + l comes from row 32h + l (Q6_K: 64h + l, 64h + 32 + l). */
UNPACK(q2_k)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 64), *sc = FIELD(uint8_t, 1, 16);
    for (int h = 0; h < 2; h++)
        for (int l4 = 0; l4 < 8; l4++)
            for (int v = 0; v < NV; v++) {
                vu c[4];
                for (int i = 0; i < 4; i++)
                    c[i] = u8(qs + (32 * h + 4 * l4 + i) * LANES + v * V);
                for (int k = 0; k < 4; k++)
                    put4(codes, 32 * h + 8 * k + l4, v, (c[0] >> 2 * k) & 3, (c[1] >> 2 * k) & 3,
                         (c[2] >> 2 * k) & 3, (c[3] >> 2 * k) & 3);
            }
    for (int v = 0; v < NV; v++) {
        vf dv = f16(FIELD(uint16_t, 2, 1) + v * V, tab), mv = f16(FIELD(uint16_t, 3, 1) + v * V, tab);
        for (int j = 0; j < 16; j++) {
            vu s = u8(sc + j * LANES + v * V);
            put_ab(A, B, j, v, dv * fu(s & 15), -mv * fu(s >> 4));
        }
    }
}

UNPACK(q3_k)
{
    const uint8_t *qs = FIELD(uint8_t, 0, 64), *hm = FIELD(uint8_t, 1, 32);
    const int8_t *sc = FIELD(int8_t, 2, 16);
    for (int h = 0; h < 2; h++)
        for (int l4 = 0; l4 < 8; l4++)
            for (int v = 0; v < NV; v++) {
                vu c[4], hb[4];
                for (int i = 0; i < 4; i++) {
                    c[i] = u8(qs + (32 * h + 4 * l4 + i) * LANES + v * V);
                    hb[i] = u8(hm + (4 * l4 + i) * LANES + v * V);
                }
                for (int k = 0; k < 4; k++)
                    put4(codes, 32 * h + 8 * k + l4, v, q3(c[0], hb[0], h, k), q3(c[1], hb[1], h, k),
                         q3(c[2], hb[2], h, k), q3(c[3], hb[3], h, k));
            }
    for (int v = 0; v < NV; v++) {
        vf dv = f16(FIELD(uint16_t, 3, 1) + v * V, tab);
        for (int j = 0; j < 16; j++)
            put_ab(A, B, j, v, dv * fi(s8(sc + j * LANES + v * V)), (vf){0});
    }
}

/* Q4_K / Q5_K: chunk c's low nibbles are sub-block 2c, its high nibbles 2c + 1 (k4_codes). */
INLINE void up_k4(const uint8_t *qs, const uint8_t *qh, const uint8_t *sc, const uint8_t *mn,
                  const uint16_t *d, const uint16_t *dm, const float *tab, uint8_t *codes, float *A, float *B)
{
    for (int c = 0; c < 4; c++)
        for (int l4 = 0; l4 < 8; l4++)
            for (int v = 0; v < NV; v++) {
                vu lo[4], hi[4];
                for (int i = 0; i < 4; i++)
                    k4_codes(qs, qh, c, 4 * l4 + i, v, &lo[i], &hi[i]);
                put4(codes, 16 * c + l4, v, lo[0], lo[1], lo[2], lo[3]);
                put4(codes, 16 * c + 8 + l4, v, hi[0], hi[1], hi[2], hi[3]);
            }
    for (int v = 0; v < NV; v++) {
        vf dv = f16(d + v * V, tab), mv = f16(dm + v * V, tab);
        for (int j = 0; j < 8; j++)
            put_ab(A, B, j, v, dv * fu(u8(sc + j * LANES + v * V)), -mv * fu(u8(mn + j * LANES + v * V)));
    }
}

UNPACK(q4_k)
{
    up_k4(FIELD(uint8_t, 0, 128), NULL, FIELD(uint8_t, 1, 8), FIELD(uint8_t, 2, 8),
          FIELD(uint16_t, 3, 1), FIELD(uint16_t, 4, 1), tab, codes, A, B);
}

UNPACK(q5_k)
{
    up_k4(FIELD(uint8_t, 0, 128), FIELD(uint8_t, 1, 32), FIELD(uint8_t, 2, 8), FIELD(uint8_t, 3, 8),
          FIELD(uint16_t, 4, 1), FIELD(uint16_t, 5, 1), tab, codes, A, B);
}

UNPACK(q6_k)
{
    const uint8_t *ql = FIELD(uint8_t, 0, 128), *qh = FIELD(uint8_t, 1, 64);
    const int8_t *sc = FIELD(int8_t, 2, 16);
    for (int h = 0; h < 2; h++)
        for (int l4 = 0; l4 < 8; l4++)
            for (int v = 0; v < NV; v++) {
                vu q0[4], q1[4], hb[4];
                for (int i = 0; i < 4; i++) {
                    const int l = 4 * l4 + i;
                    q0[i] = u8(ql + (64 * h + l) * LANES + v * V);
                    q1[i] = u8(ql + (64 * h + 32 + l) * LANES + v * V);
                    hb[i] = u8(qh + (32 * h + l) * LANES + v * V);
                }
#define Q6Q(i, k) Q6(q0[i], q1[i], hb[i], k)
                for (int k = 0; k < 4; k++)
                    put4(codes, 32 * h + 8 * k + l4, v, Q6Q(0, k), Q6Q(1, k), Q6Q(2, k), Q6Q(3, k));
#undef Q6Q
            }
    for (int v = 0; v < NV; v++) {
        vf dv = f16(FIELD(uint16_t, 3, 1) + v * V, tab);
        for (int j = 0; j < 16; j++)
            put_ab(A, B, j, v, dv * fi(s8(sc + j * LANES + v * V)), (vf){0});
    }
}

/* One chunk (QC values) of a micro-tile: tokens t0.. (mr of them), rows r0.. (NR vectors) of the
 * group. q, qsum, d, out point at token t0's chunk; *_s are their token strides. Activation
 * scales are per sub-block (per_sub: 32-value types, as llama.cpp's Q8_0) or per chunk (K-quants,
 * as Q8_K: applied once at the end). */
INLINE void micro(const uint8_t *codes, const float *A, const float *B, int ss, int off, const int small, int qc,
                  int per_sub, const int8_t *q, int64_t q_s, const int32_t *qsum, int64_t sum_s,
                  const float *d, int64_t d_s, float *out, int64_t out_s, int r0, const int mr)
{
    vf F[MR][NR];
    for (int t = 0; t < mr; t++)
        for (int r = 0; r < NR; r++)
            F[t][r] = (vf){0};
    for (int s = 0; s < qc / ss; s++) {
        vi I[MR][NR];
        for (int t = 0; t < mr; t++)
            for (int r = 0; r < NR; r++)
                I[t][r] = (vi){0} - off * qsum[t * sum_s + s];
        for (int kq = s * ss / 4; kq < (s + 1) * ss / 4; kq++) {
            vi w[NR];
            for (int r = 0; r < NR; r++)
                memcpy(&w[r], codes + (kq * LANES + r0 + r * V) * 4, sizeof w[r]);
            for (int t = 0; t < mr; t++) {
                int32_t b;
                memcpy(&b, q + t * q_s + 4 * kq, 4);
                for (int r = 0; r < NR; r++)
                    I[t][r] = small ? dot4_small(I[t][r], w[r], b) : dot4(I[t][r], w[r], b);
            }
        }
        for (int r = 0; r < NR; r++) {
            vf a, b = {0};
            memcpy(&a, A + s * LANES + r0 + r * V, sizeof a);
            if (B)
                memcpy(&b, B + s * LANES + r0 + r * V, sizeof b);
            for (int t = 0; t < mr; t++) {
                const float ds = per_sub ? d[t * d_s + s] : 1;
                F[t][r] += fi(I[t][r]) * (per_sub ? a * ds : a);
                if (B)
                    F[t][r] += b * (qsum[t * sum_s + s] * ds);
            }
        }
    }
    for (int t = 0; t < mr; t++)
        for (int r = 0; r < NR; r++) {
            vf o;
            memcpy(&o, out + t * out_s + r0 + r * V, sizeof o);
            o += per_sub ? F[t][r] : F[t][r] * d[t * d_s];
            memcpy(out + t * out_s + r0 + r * V, &o, sizeof o);
        }
}

#define MICRO_CASE(m) \
    case m: micro(codes, A, Bp, ss_, off_, small_, qc, qb == ss_, qt, n, st_, n / ss_, dt, n / qb, ot, LANES, r0, m); break;
#if MR == 6
#define MICRO_CASES(X) X(1) X(2) X(3) X(4) X(5) X(6)
#else
#define MICRO_CASES(X) X(1) X(2) X(3) X(4)
#endif

/* out[t, g * LANES + r] (t < nt, groups g0..g1 of the matrix) = W[row] . x[t], x given quantized
 * by quantize_q8 with this qb and ss. Groups in parallel; per group, QB values at a time: unpack,
 * then every token. */
#define MATMUL(T, BS, SS, OFF, HAS_B, CODE_MAX)                                                               \
    void mm_##T(FIELDS, const float *tab, const int8_t *q, const float *d, const int32_t *qsum,    \
                float *out, int64_t g0, int64_t g1, int64_t nb, int64_t nt, int64_t qb)            \
    {                                                                                               \
        const void *f[6] = {f0, f1, f2, f3, f4, f5};                                                \
        /* few tokens: one block per chunk, so that reading the weights keeps pace with using them \
         * (bench/batch_step.py, 1.1B Q4_0, same run: 2-row step 49.7 -> 36.8 ms, 4 rows 58.2 -> 46.2) */ \
        const int64_t n = nb * BS, qc = n % QMAX || nt <= MR ? BS : QMAX, per = qc / BS;            \
        const int64_t W = (g1 - g0) * LANES;                                                        \
        const int ss_ = SS, off_ = OFF, small_ = CODE_MAX < 64;                                     \
        PARALLEL_FOR                                                                                \
        for (int64_t g = g0; g < g1; g++) {                                                         \
            uint8_t codes[QMAX * LANES] __attribute__((aligned(64)));                               \
            float A[QMAX / SS * LANES] __attribute__((aligned(64)));                                \
            float B[HAS_B ? QMAX / SS * LANES : 1] __attribute__((aligned(64)));                   \
            /* the group's outputs, contiguous: out's rows are far apart (one page each) */         \
            float *o = aligned_alloc(64, nt * LANES * sizeof(float));                               \
            memset(o, 0, nt * LANES * sizeof(float));                                               \
            for (int64_t c = 0; c < n / qc; c++) {                                                  \
                for (int64_t i = 0; i < per; i++)                                                   \
                    up_##T(f, tab, g * nb + c * per + i, codes + i * BS * LANES,                    \
                           A + i * (BS / SS) * LANES, HAS_B ? B + i * (BS / SS) * LANES : NULL);     \
                /* a slab of rows' codes (8 KB) stays in L1 while every token passes over it */    \
                for (int r0 = 0; r0 < LANES; r0 += NR * V)                                          \
                    for (int64_t t0 = 0; t0 < nt; t0 += MR) {                                       \
                        const int64_t mr = nt - t0 < MR ? nt - t0 : MR;                             \
                        const int8_t *qt = q + t0 * n + c * qc;                                     \
                        const int32_t *st_ = qsum + t0 * (n / SS) + c * (qc / SS);                  \
                        const float *dt = d + t0 * (n / qb) + c * (qc / qb), *Bp = HAS_B ? B : NULL; \
                        float *ot = o + t0 * LANES;                                                 \
                        switch (mr) { /* constant token counts: the sums stay in registers */       \
                            MICRO_CASES(MICRO_CASE)                                                 \
                        }                                                                           \
                    }                                                                               \
            }                                                                                       \
            for (int64_t t = 0; t < nt; t++)                                                        \
                memcpy(out + t * W + (g - g0) * LANES, o + t * LANES, LANES * sizeof(float));       \
            free(o);                                                                                \
        }                                                                                           \
    }

MATMUL(q4_0, 32, 32, 8, 0, 15)
MATMUL(q4_1, 32, 32, 0, 1, 15)
MATMUL(q5_0, 32, 32, 16, 0, 31)
MATMUL(q5_1, 32, 32, 0, 1, 31)
MATMUL(q8_0, 32, 32, 128, 0, 255)
MATMUL(q2_k, 256, 16, 0, 1, 3)
MATMUL(q3_k, 256, 16, 4, 0, 7)
MATMUL(q4_k, 256, 32, 0, 1, 15)
MATMUL(q5_k, 256, 32, 0, 1, 31)
MATMUL(q6_k, 256, 16, 32, 0, 63)

/* ------------------------------------------------------------------------------------------- */
/* Q4_0, Q4_K (Q6_K) for a few tokens (decode, batched decode), with no unpack buffer: 4 rows of */
/* code bytes (16 lanes each) are transposed in a register by one byte permute (AVX-512 VBMI),  */
/* so each 32-bit lane holds 4 consecutive bytes of one weight row; their low and high nibbles   */
/* are multiplied with the int8 activations by vpdpbusd straight away, reading each row's bytes  */
/* in order. 5632x2048 from memory, 2 threads: Q4_0 1 / 4 / 8 tokens 0.18-0.21 / 0.26-0.32 /     */
/* 0.44 ms (the matvec 0.31 / 1.07 / 2.1, the buffered mm 0.33 / 0.40 / 0.66); Q4_K 0.23-0.25 / */
/* 0.44 / 0.66 (matvec 0.30 / 0.98 / 1.96, mm 0.53 / 0.60 / 0.81). Q6_K (mms_q6_k) for 1-2     */
/* tokens the same way: one token from DRAM, 11008x4096, 2 threads, 22.7 GB/s against the        */
/* matvec's 14.6 and mm_q6_k's 17.8. Plain AVX2 has its own Q4_0 and Q4_K (below); elsewhere,    */
/* and from 13 tokens on (Q4_0 on AVX2: never), mms_* is mm_*.                                   */
/* ------------------------------------------------------------------------------------------- */

#if V >= 8 /* the fused kernels (AVX2 and AVX-512) */
#ifndef PF_AHEAD
#define PF_AHEAD 4096
#endif
#ifndef PF_FAR
#define PF_FAR 16384
#endif
/* Software prefetch of the weights PF_AHEAD bytes ahead of the block in use (bytes from p, not
 * past end): with the vector units busy the hardware prefetchers fall behind (one token, Q4_0
 * 11008x4096 from DRAM: 1.25 -> 1.15 ms; 4 tokens 1.80 -> 1.23). With far (1-2 tokens, whose
 * products wait on memory) also PF_FAR bytes ahead into L2, more requests in flight: a decode
 * step of the 1.1B Q4_0 model 31.4-34.0 -> 27.8-30.6 ms, of the 7B Q4_K_M one 241-242 -> 220-227
 * ms (batch_step, alternating builds); from 4 tokens on it slowed the 7B step by 5-7%. */
INLINE void prefetch_ahead(const uint8_t *p, int64_t bytes, const uint8_t *end, const int far)
{
    for (const uint8_t *a = p + PF_AHEAD; a < p + PF_AHEAD + bytes && a < end; a += 64)
        _mm_prefetch((const char *)a, _MM_HINT_T0);
    if (far)
        for (const uint8_t *a = p + PF_FAR; a < p + PF_FAR + bytes && a < end; a += 64)
            _mm_prefetch((const char *)a, _MM_HINT_T1);
}
#endif

#if defined(__AVX512VBMI__) && defined(__AVX512VNNI__) && V == 16
#define MMS_FUSED 1
#define MMS_Q4_0 1
#define MMS_Q4_K 1
#define MMS_Q6_K 1
/* byte 4l + i of the result = byte 16i + l of the input: four 16-byte rows become 16 lanes of 4 */
#define ROWS4_PERM                                                                                   \
    _mm512_set_epi8(63, 47, 31, 15, 62, 46, 30, 14, 61, 45, 29, 13, 60, 44, 28, 12, 59, 43, 27, 11,  \
                    58, 42, 26, 10, 57, 41, 25, 9, 56, 40, 24, 8, 55, 39, 23, 7, 54, 38, 22, 6, 53,  \
                    37, 21, 5, 52, 36, 20, 4, 51, 35, 19, 3, 50, 34, 18, 2, 49, 33, 17, 1, 48, 32,   \
                    16, 0)

/* Code rows p, p + LANES, p + 2 LANES, p + 3 LANES (16 lanes each) as 16 lanes of their 4 bytes. */
INLINE __m512i rows4(const uint8_t *p, __m512i perm)
{
    __m512i w = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p));
    w = _mm512_inserti32x4(w, _mm_loadu_si128((const __m128i *)(p + LANES)), 1);
    w = _mm512_inserti32x4(w, _mm_loadu_si128((const __m128i *)(p + 2 * LANES)), 2);
    w = _mm512_inserti32x4(w, _mm_loadu_si128((const __m128i *)(p + 3 * LANES)), 3);
    return _mm512_permutexvar_epi8(perm, w);
}

/* The fused kernels take a group's blocks in order and, within a block, its 128 rows in slabs
 * of nc 16-lane vectors: every cache line of a block is read before the next block's, so memory
 * sees one forward stream (slabs over all blocks read half of each line per pass, 15-20% slower
 * from DRAM, measured). Integer sums stay in registers (mr x nc of them, so nc shrinks as mr
 * grows); the float sums F of the whole group persist across blocks. */
#define SLAB_VECTORS(mr) ((mr) <= 2 ? 8 : (mr) <= 4 ? 4 : 2)

/* One slab's integer sums over 4 codes of each row: the nc 16-lane vectors of code rows from p
 * (rows4), low nibbles times the tokens' int8 xl, high nibbles times xh, into lo[t] and hi[t].
 * Q4_0 passes one array for both (its two nibbles share a scale); Q4_K two (two sub-blocks). */
INLINE void slab_dot(const uint8_t *p, const int32_t *xl, const int32_t *xh, __m512i (*lo)[8],
                     __m512i (*hi)[8], const int nc, const int mr)
{
    const __m512i perm = ROWS4_PERM, low = _mm512_set1_epi8(15);
    for (int c = 0; c < nc; c++) {
        const __m512i w = rows4(p + 16 * c, perm);
        const __m512i wl = _mm512_and_si512(w, low);
        const __m512i wh = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
        for (int t = 0; t < mr; t++) {
            lo[t][c] = _mm512_dpbusd_epi32(lo[t][c], wl, _mm512_set1_epi32(xl[t]));
            hi[t][c] = _mm512_dpbusd_epi32(hi[t][c], wh, _mm512_set1_epi32(xh[t]));
        }
    }
}

/* Q4_K: 256-value blocks; code row 32c + l holds value 64c + l (low nibble, sub-block 2c) and
 * 64c + 32 + l (high nibble, sub-block 2c + 1); value = d sc[s] code - dmin mn[s]. Activations:
 * one scale a block (Q8_K), sums per 32 values. */
INLINE void mmsk_group(const uint8_t *qs, const uint8_t *sc, const uint8_t *mn, const uint16_t *dd,
                       const uint16_t *dm, const int8_t *q, const float *d, const int32_t *qsum,
                       float *out, int64_t nb, int64_t n, int64_t W, const int mr)
{
    const int nc = SLAB_VECTORS(mr);
    __m512 F[MRS][8];
    for (int t = 0; t < mr; t++)
        for (int v = 0; v < 8; v++)
            F[t][v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = qs + b * 128 * LANES;
        for (int c = 0; c < 4; c++) {
            prefetch_ahead(blk + 32 * c * LANES, 32 * LANES, qs + nb * 128 * LANES, mr <= 2);
            for (int r0 = 0; r0 < 8; r0 += nc) {
                __m512i Il[MRS][8], Ih[MRS][8];
                for (int t = 0; t < mr; t++)
                    for (int cc = 0; cc < nc; cc++)
                        Il[t][cc] = Ih[t][cc] = _mm512_setzero_si512();
                for (int l = 0; l < 32; l += 4) {
                    int32_t xl[MRS], xh[MRS];
                    for (int t = 0; t < mr; t++) {
                        memcpy(&xl[t], q + t * n + 256 * b + 64 * c + l, 4);
                        memcpy(&xh[t], q + t * n + 256 * b + 64 * c + 32 + l, 4);
                    }
                    slab_dot(blk + (32 * c + l) * LANES + 16 * r0, xl, xh, Il, Ih, nc, mr);
                }
                for (int cc = 0; cc < nc; cc++) {
                    const int64_t r = 16 * (r0 + cc), s0 = (b * 8 + 2 * c) * LANES + r, s1 = s0 + LANES;
                    const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dd + b * LANES + r)));
                    const __m512 mv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dm + b * LANES + r)));
                    const __m512 a0 = dv * _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sc + s0))));
                    const __m512 a1 = dv * _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sc + s1))));
                    const __m512 m0 = mv * _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(mn + s0))));
                    const __m512 m1 = mv * _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(mn + s1))));
                    for (int t = 0; t < mr; t++) {
                        const int32_t *qt = qsum + t * (n / 32) + b * 8 + 2 * c;
                        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(Il[t][cc]), a0);
                        f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(Ih[t][cc]), a1, f);
                        f = _mm512_fnmadd_ps(m0, _mm512_set1_ps((float)qt[0]), f);
                        f = _mm512_fnmadd_ps(m1, _mm512_set1_ps((float)qt[1]), f);
                        F[t][r0 + cc] = _mm512_fmadd_ps(f, _mm512_set1_ps(d[t * nb + b]), F[t][r0 + cc]);
                    }
                }
            }
        }
    }
    for (int t = 0; t < mr; t++)
        for (int v = 0; v < 8; v++)
            _mm512_storeu_ps(out + t * W + 16 * v, F[t][v]);
}

/* Q4_0: 32-value blocks, code row j holds values j (low nibble) and 16 + j (high), offset by 8. */
INLINE void mms_group(const uint8_t *qs, const uint16_t *dw, const int8_t *q, const float *d,
                      const int32_t *qsum, float *out, int64_t nb, int64_t n, int64_t W, const int mr)
{
    const int nc = SLAB_VECTORS(mr);
    __m512 F[MRS][8];
    for (int t = 0; t < mr; t++)
        for (int v = 0; v < 8; v++)
            F[t][v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = qs + b * 16 * LANES;
        prefetch_ahead(blk, 16 * LANES, qs + nb * 16 * LANES, mr <= 2);
        for (int r0 = 0; r0 < 8; r0 += nc) {
            __m512i I[MRS][8];
            for (int t = 0; t < mr; t++)
                for (int c = 0; c < nc; c++)
                    I[t][c] = _mm512_set1_epi32(-8 * qsum[t * nb + b]); /* codes are offset by 8 */
            for (int j = 0; j < 16; j += 4) {
                int32_t xl[MRS], xh[MRS];
                for (int t = 0; t < mr; t++) {
                    memcpy(&xl[t], q + t * n + 32 * b + j, 4);
                    memcpy(&xh[t], q + t * n + 32 * b + 16 + j, 4);
                }
                slab_dot(blk + j * LANES + 16 * r0, xl, xh, I, I, nc, mr);
            }
            for (int c = 0; c < nc; c++) {
                const __m512 sc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dw + b * LANES + 16 * (r0 + c))));
                for (int t = 0; t < mr; t++)
                    F[t][r0 + c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I[t][c]),
                                                   _mm512_mul_ps(sc, _mm512_set1_ps(d[t * nb + b])), F[t][r0 + c]);
            }
        }
    }
    for (int t = 0; t < mr; t++)
        for (int v = 0; v < 8; v++)
            _mm512_storeu_ps(out + t * W + 16 * v, F[t][v]);
}

/* Q6_K (see Q6 above): per half h and 4 values l..l+3 of each quarter k, ql rows 64h + l (k = 0,
 * 2) and 64h + 32 + l (k = 1, 3) give the low nibbles and qh row 32h + l the two high bits of all
 * four quarters; codes are offset by 32 (folded in through the sums per 16 values). The 16
 * sub-blocks' int8 scales are applied in float per sub-block, the row's d once a block. */
#define MRS6 2 /* most tokens (one pass): from 3 on, the buffered mm_q6_k is as fast or faster */
INLINE void mms6_group(const uint8_t *ql, const uint8_t *qh, const int8_t *sc, const uint16_t *dd,
                       const int8_t *q, const float *d, const int32_t *qsum, float *out, int64_t nb,
                       int64_t n, int64_t W, const int mr)
{
    const __m512i perm = ROWS4_PERM, low = _mm512_set1_epi8(15), top = _mm512_set1_epi8(48);
    const int nc = mr == 1 ? 4 : 2; /* 4 int sums a vector: one token 22 GB/s, 2 vectors 18 */
    __m512 F[MRS6][8];
    for (int t = 0; t < mr; t++)
        for (int v = 0; v < 8; v++)
            F[t][v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *lb = ql + b * 128 * LANES, *hb = qh + b * 64 * LANES;
        const int8_t *sb = sc + b * 16 * LANES;
        for (int r0 = 0; r0 < 8; r0 += nc) {
            __m512 G[MRS6][4];
            for (int t = 0; t < mr; t++)
                for (int cc = 0; cc < nc; cc++)
                    G[t][cc] = _mm512_setzero_ps();
            for (int h = 0; h < 2; h++)
                for (int lh = 0; lh < 2; lh++) {
                    __m512i I[MRS6][4][4];
                    for (int t = 0; t < mr; t++)
                        for (int k = 0; k < 4; k++) {
                            const __m512i o = _mm512_set1_epi32(-32 * qsum[t * (n / 16) + b * 16 + 8 * h + 2 * k + lh]);
                            for (int cc = 0; cc < nc; cc++)
                                I[t][cc][k] = o;
                        }
                    for (int l = 16 * lh; l < 16 * lh + 16; l += 4) {
                        int32_t x[MRS6][4];
                        for (int t = 0; t < mr; t++)
                            for (int k = 0; k < 4; k++)
                                memcpy(&x[t][k], q + t * n + 256 * b + 128 * h + 32 * k + l, 4);
                        for (int cc = 0; cc < nc; cc++) {
                            const int64_t r = 16 * (r0 + cc);
                            const __m512i A = rows4(lb + (64 * h + l) * LANES + r, perm);
                            const __m512i B = rows4(lb + (64 * h + 32 + l) * LANES + r, perm);
                            const __m512i H = rows4(hb + (32 * h + l) * LANES + r, perm);
                            __m512i c[4];
                            c[0] = _mm512_or_si512(_mm512_and_si512(A, low), _mm512_and_si512(_mm512_slli_epi16(H, 4), top));
                            c[1] = _mm512_or_si512(_mm512_and_si512(B, low), _mm512_and_si512(_mm512_slli_epi16(H, 2), top));
                            c[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(A, 4), low), _mm512_and_si512(H, top));
                            c[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(B, 4), low), _mm512_and_si512(_mm512_srli_epi16(H, 2), top));
                            for (int t = 0; t < mr; t++)
                                for (int k = 0; k < 4; k++)
                                    I[t][cc][k] = _mm512_dpbusd_epi32(I[t][cc][k], c[k], _mm512_set1_epi32(x[t][k]));
                        }
                    }
                    for (int cc = 0; cc < nc; cc++)
                        for (int k = 0; k < 4; k++) {
                            const int s = 8 * h + 2 * k + lh;
                            const __m512 sf = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                _mm_loadu_si128((const __m128i *)(sb + s * LANES + 16 * (r0 + cc)))));
                            for (int t = 0; t < mr; t++)
                                G[t][cc] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I[t][cc][k]), sf, G[t][cc]);
                        }
                }
            for (int cc = 0; cc < nc; cc++) {
                const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dd + b * LANES + 16 * (r0 + cc))));
                for (int t = 0; t < mr; t++)
                    F[t][r0 + cc] = _mm512_fmadd_ps(G[t][cc], _mm512_mul_ps(dv, _mm512_set1_ps(d[t * nb + b])), F[t][r0 + cc]);
            }
        }
    }
    for (int t = 0; t < mr; t++)
        for (int v = 0; v < 8; v++)
            _mm512_storeu_ps(out + t * W + 16 * v, F[t][v]);
}
#endif

#if !defined(MMS_FUSED) && defined(__AVX2__) && defined(__F16C__) && V == 8
/* Q4_0 (any number of tokens) and Q4_K (up to MMS_MAX) on AVX2 without VNNI: vpmaddubsw multiplies 32 unsigned codes by 32 int8
 * activations and adds adjacent pairs into 16-bit sums, exactly (a code is at most 15: 2 x 15 x
 * 127 = 3810, and a block's 8 such sums a lane, 30480, stay below 32768), then vpmaddwd adds a
 * row's two 16-bit sums into 32 bits once a block. Two rounds of byte and word unpacks put 4
 * consecutive codes of one row in each 32-bit lane (the layout keeps a row's codes LANES apart);
 * unpacks work within 128-bit halves, so vector k of a 32-row slab holds rows 4k..4k+3 and
 * 16+4k..16+4k+3, its scales are read in that order and its sums stored back in row order.
 * 1.1B Q4_0 on a 2-core AMD EPYC (Zen 3, AVX2 only): all projections of a step 1 / 2 / 4 / 8 rows
 * 36 / 68 / 94 / 146 ms with the matvec and the buffered mm_q4_0, 22-25 / 27-31 / 36-38 / 66-70
 * with these; a whole step (bench/batch_step.py) 48 / 99 / 157 / 205 -> 29 / 31 / 47 / 74 ms.
 * Four tokens stay bound by vpmaddubsw and its 16-bit adds (~5.6 and ~11 a ns a core measured:
 * 64 of them per token and 1024 weights, against one vpdpbusd per 64 with VNNI). */
#define MMS_Q4_0 1
#define MMS_Q4_K 1

/* Vectors k0..k0+nc-1 (of 4) of 4 code rows of 32 lanes (p, p + LANES, ...): 4 consecutive code
 * bytes of one row a lane, split into their low nibbles lo and high nibbles hi (the bytes are
 * unpacked first, so the split costs 3 ops a vector, not 3 a row). */
INLINE void quads(const uint8_t *p, const int k0, const int nc, __m256i *lo, __m256i *hi)
{
    const __m256i low = _mm256_set1_epi8(15);
    __m256i r[4];
    for (int i = 0; i < 4; i++)
        r[i] = _mm256_loadu_si256((const __m256i *)(p + i * LANES));
    for (int c = 0; c < nc; c++) {
        const int k = k0 + c;
        const __m256i a = k < 2 ? _mm256_unpacklo_epi8(r[0], r[1]) : _mm256_unpackhi_epi8(r[0], r[1]);
        const __m256i b = k < 2 ? _mm256_unpacklo_epi8(r[2], r[3]) : _mm256_unpackhi_epi8(r[2], r[3]);
        const __m256i w = k % 2 ? _mm256_unpackhi_epi16(a, b) : _mm256_unpacklo_epi16(a, b);
        lo[c] = _mm256_and_si256(w, low);
        hi[c] = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
    }
}

/* The f16 scales (or any 16-bit values) of rows p[0..3] and p[16..19], in a quad vector's order. */
INLINE __m256 quad_scales(const uint16_t *p)
{
    int64_t lo, hi;
    memcpy(&lo, p, 8);
    memcpy(&hi, p + 16, 8);
    return _mm256_cvtph_ps(_mm_set_epi64x(hi, lo));
}

/* X[t * stride + i] = values 4i..4i+3 of token t's block (from x + t * n), broadcast, i < count:
 * read from L1 by the products, rather than held in registers the sums need. */
INLINE void broadcast_quads(__m256i *X, const int stride, const int8_t *x, int64_t n, const int count,
                            const int mr)
{
    for (int t = 0; t < mr; t++)
        for (int i = 0; i < count; i++) {
            int32_t x4;
            memcpy(&x4, x + t * n + 4 * i, 4);
            X[t * stride + i] = _mm256_set1_epi32(x4);
        }
}

/* The group's float sums, 16 quad vectors a token (slab v / 4, vector v % 4), in row order. */
INLINE void store_quad_sums(__m256 (*F)[16], float *out, int64_t W, const int mr)
{
    for (int t = 0; t < mr; t++)
        for (int v = 0; v < 16; v++) {
            float *o = out + t * W + 32 * (v / 4) + 4 * (v % 4);
            _mm_storeu_ps(o, _mm256_castps256_ps128(F[t][v]));
            _mm_storeu_ps(o + 16, _mm256_extractf128_ps(F[t][v], 1));
        }
}

/* Q4_0: 32-value blocks, code row j holds values j (low nibble) and 16 + j (high), offset by 8.
 * Per block, 32-row slabs, and within a slab nc of its 4 quad vectors at a time (the 16-bit sums
 * of mr tokens x nc vectors stay in registers: nc = 1 from 3 tokens on); the float sums F of the
 * group persist across blocks (in L1). The offset -8 x (sum of the block's activations) starts
 * a lane's first 16-bit sum: every partial sum of (code - 8) x activation terms stays within
 * 32 x 8 x 127 = 32512, so the lane's two sums need no correction once in 32 bits. */
INLINE void mms_group(const uint8_t *qs, const uint16_t *dw, const int8_t *q, const float *d,
                      const int32_t *qsum, float *out, int64_t nb, int64_t n, int64_t W, const int mr)
{
    const int nc = mr == 1 ? 4 : mr == 2 ? 2 : 1; /* 16 ymm registers: mr x nc sums, 2 nc codes */
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 F[MRS_Q4_0][16]; /* per token, 16 quad vectors of 8 rows */
    memset(F, 0, sizeof F);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = qs + b * 16 * LANES;
        prefetch_ahead(blk, 16 * LANES, qs + nb * 16 * LANES, mr <= 2);
        __m256i X[MRS_Q4_0][8], O[MRS_Q4_0]; /* activations (low nibbles' values j, high 16 + j), offsets */
        __m256 D[MRS_Q4_0];
        broadcast_quads(X[0], 8, q + 32 * b, n, 8, mr);
        for (int t = 0; t < mr; t++) {
            O[t] = _mm256_set1_epi32((uint16_t)(-8 * qsum[t * nb + b]));
            D[t] = _mm256_set1_ps(d[t * nb + b]);
        }
        for (int s = 0; s < 4; s++)
#pragma GCC unroll 4
            for (int k0 = 0; k0 < 4; k0 += nc) {
                __m256i S[MRS_Q4_0][4];
                for (int t = 0; t < mr; t++)
                    for (int c = 0; c < nc; c++)
                        S[t][c] = O[t];
#pragma GCC unroll 1
                for (int j = 0; j < 4; j++) {
                    __m256i lo[4], hi[4];
                    quads(blk + 4 * j * LANES + 32 * s, k0, nc, lo, hi);
                    for (int t = 0; t < mr; t++)
                        for (int c = 0; c < nc; c++) {
                            S[t][c] = _mm256_add_epi16(S[t][c], _mm256_maddubs_epi16(lo[c], X[t][j]));
                            S[t][c] = _mm256_add_epi16(S[t][c], _mm256_maddubs_epi16(hi[c], X[t][4 + j]));
                        }
                }
                for (int c = 0; c < nc; c++) {
                    const __m256 sc = quad_scales(dw + b * LANES + 32 * s + 4 * (k0 + c));
                    for (int t = 0; t < mr; t++)
                        F[t][4 * s + k0 + c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(S[t][c], ones)),
                                                               _mm256_mul_ps(sc, D[t]), F[t][4 * s + k0 + c]);
                }
            }
    }
    store_quad_sums(F, out, W, mr);
}

/* 8 bytes of rows p[0..3] and p[16..19] (a quad vector's order) as floats. */
INLINE __m256 quad_bytes(const uint8_t *p)
{
    int32_t lo, hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 16, 4);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, hi, lo)));
}

/* Q4_K (layout as in the AVX-512 mmsk_group): per block, slab and sub-block pair c, the low
 * nibbles (sub-block 2c) and high nibbles (2c + 1) of 32 code rows sum apart, 8 vpmaddubsw each
 * (exact in 16 bits as for Q4_0); their scales and mins are applied in float. Two 16-bit sums per
 * token and vector: nc = 4 / mr vectors at a time. 1.1B Q4_K on Zen 3, all projections of a step:
 * 1 / 2 / 4 / 8 rows 34-35 / 58-64 / 71-75 / 114-118 ms (matvec, buffered mm) -> 30-31 / 38 /
 * 52-54 / 92-93. */
INLINE void mmsk_group(const uint8_t *qs, const uint8_t *sc, const uint8_t *mn, const uint16_t *dd,
                       const uint16_t *dm, const int8_t *q, const float *d, const int32_t *qsum,
                       float *out, int64_t nb, int64_t n, int64_t W, const int mr)
{
    const int nc = mr == 1 ? 4 : mr == 2 ? 2 : 1;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 F[MRS][16]; /* per token, 16 quad vectors of 8 rows */
    memset(F, 0, sizeof F);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = qs + b * 128 * LANES;
        __m256i X[MRS][64]; /* the block's activations */
        broadcast_quads(X[0], 64, q + 256 * b, n, 64, mr);
        for (int c = 0; c < 4; c++) {
            prefetch_ahead(blk + 32 * c * LANES, 32 * LANES, qs + nb * 128 * LANES, mr <= 2);
            for (int s = 0; s < 4; s++)
                for (int k0 = 0; k0 < 4; k0 += nc) {
                    __m256i Sl[MRS][4], Sh[MRS][4];
                    for (int t = 0; t < mr; t++)
                        for (int cc = 0; cc < nc; cc++)
                            Sl[t][cc] = Sh[t][cc] = _mm256_setzero_si256();
#pragma GCC unroll 1
                    for (int j = 0; j < 8; j++) {
                        __m256i lo[4], hi[4];
                        quads(blk + (32 * c + 4 * j) * LANES + 32 * s, k0, nc, lo, hi);
                        for (int t = 0; t < mr; t++)
                            for (int cc = 0; cc < nc; cc++) {
                                Sl[t][cc] = _mm256_add_epi16(Sl[t][cc], _mm256_maddubs_epi16(lo[cc], X[t][16 * c + j]));
                                Sh[t][cc] = _mm256_add_epi16(Sh[t][cc], _mm256_maddubs_epi16(hi[cc], X[t][16 * c + 8 + j]));
                            }
                    }
                    for (int cc = 0; cc < nc; cc++) {
                        const int64_t r = 32 * s + 4 * (k0 + cc), s0 = (b * 8 + 2 * c) * LANES + r, s1 = s0 + LANES;
                        const __m256 dv = quad_scales(dd + b * LANES + r), mv = quad_scales(dm + b * LANES + r);
                        const __m256 a0 = dv * quad_bytes(sc + s0), a1 = dv * quad_bytes(sc + s1);
                        const __m256 m0 = mv * quad_bytes(mn + s0), m1 = mv * quad_bytes(mn + s1);
                        for (int t = 0; t < mr; t++) {
                            const int32_t *qt = qsum + t * (n / 32) + b * 8 + 2 * c;
                            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(Sl[t][cc], ones)), a0);
                            f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(Sh[t][cc], ones)), a1, f);
                            f = _mm256_fnmadd_ps(m0, _mm256_set1_ps((float)qt[0]), f);
                            f = _mm256_fnmadd_ps(m1, _mm256_set1_ps((float)qt[1]), f);
                            F[t][4 * s + k0 + cc] = _mm256_fmadd_ps(f, _mm256_set1_ps(d[t * nb + b]), F[t][4 * s + k0 + cc]);
                        }
                    }
                }
        }
    }
    store_quad_sums(F, out, W, mr);
}
#endif

#if defined(MMS_FUSED) && defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__linux__)
/* Q4_0 for 2-16 tokens on AMX: per block, the group's 8 row vectors become 8 B tiles (the same
 * rows4 bytes as above, 4 consecutive codes a lane: AMX's VNNI layout) and one TDPBSUD per vector
 * multiplies them with all tokens' int8 activations (the A tile) at once; the int sums are scaled
 * into float per block. vpdpbusd needs one instruction per token and 64 codes, so from 2 tokens
 * on the tiles do the multiplies and the vector units only unpack and scale. */
#define MMS_AMX 1
#include <sys/syscall.h>
#include <unistd.h> /* syscall */
#define AMX_TOKENS 16
#define AMX_MIN 7 /* fewer tokens: vpdpbusd keeps pace with memory (mms_q4_0), AMX adds latency */

static int amx_permitted = 0; /* 0 not asked yet, 1 granted, -1 refused, -2 turned off */

/* Linux lends a process the tile registers' state only on request (ARCH_REQ_XCOMP_PERM for
 * XTILEDATA); a kernel or hypervisor that refuses keeps the vpdpbusd path, as does AGENT_AMX=0. */
static int amx_ready(void)
{
    if (amx_permitted == 0) {
        const char *env = getenv("AGENT_AMX");
        amx_permitted = env && strcmp(env, "0") == 0 ? -2 : syscall(SYS_arch_prctl, 0x1023, 18) == 0 ? 1 : -1;
    }
    return amx_permitted > 0;
}

static void amx_configure(int nt)
{
    uint8_t cfg[64] __attribute__((aligned(64))) = {0};
    uint16_t *colsb = (uint16_t *)(cfg + 16);
    cfg[0] = 1;                        /* palette 1 */
    colsb[0] = 32, cfg[48] = nt;       /* tmm0 = A: the tokens' 32 int8 of a block */
    for (int i = 1; i <= 2; i++)       /* tmm1, tmm2 = B: 8 rows of 16 lanes x 4 codes */
        colsb[i] = 64, cfg[48 + i] = 8;
    for (int i = 3; i <= 6; i++)       /* tmm3..6 = C: tokens x 16 int32 */
        colsb[i] = 64, cfg[48 + i] = nt;
    _tile_loadconfig(cfg);
}

/* Block b's int sums, scaled into the float sums o: C holds each vector's tokens x 16 sums. */
INLINE void mma_scale(const int32_t (*C)[AMX_TOKENS * 16], const uint16_t *dw, const float *d, float *o,
                      int64_t b, int64_t nb, int nt)
{
    __m512 sc[8];
    for (int c = 0; c < 8; c++)
        sc[c] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dw + b * LANES + 16 * c)));
    for (int t = 0; t < nt; t++) {
        const __m512 dt = _mm512_set1_ps(d[t * nb + b]);
        float *ot = o + t * LANES;
        for (int c = 0; c < 8; c++)
            _mm512_store_ps(ot + 16 * c, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const __m512i *)(C[c] + 16 * t))),
                                                         _mm512_mul_ps(sc[c], dt), _mm512_load_ps(ot + 16 * c)));
    }
}

/* One group's 128 rows for nt tokens; o = nt x LANES float sums (zeroed by the caller, 64-byte
 * aligned). Software-pipelined: block b's sums are scaled while the tiles multiply block b + 1
 * (C alternates between two buffers), and the tiles start from each token's -8 x its sum of
 * activations (the codes' offset) instead of zero. */
static void mma_group(const uint8_t *qs, const uint16_t *dw, const int8_t *q, const float *d,
                      const int32_t *qsum, float *o, int64_t nb, int64_t n, int nt)
{
    const __m512i perm = ROWS4_PERM, low = _mm512_set1_epi8(15);
    uint8_t B[8][8 * 64] __attribute__((aligned(64)));
    int32_t C[2][8][AMX_TOKENS * 16] __attribute__((aligned(64)));
    int32_t C0[AMX_TOKENS * 16] __attribute__((aligned(64)));
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = qs + b * 16 * LANES;
        int32_t (*Cb)[AMX_TOKENS * 16] = C[b & 1];
        prefetch_ahead(blk, 16 * LANES, qs + nb * 16 * LANES, 0);
        for (int c = 0; c < 8; c++)
            for (int j = 0; j < 16; j += 4) { /* B row j/4: codes j..j+3; row 4 + j/4: 16 + j.. */
                const __m512i w = rows4(blk + j * LANES + 16 * c, perm);
                _mm512_store_si512((__m512i *)(B[c] + 16 * j), _mm512_and_si512(w, low));
                _mm512_store_si512((__m512i *)(B[c] + 16 * j + 256),
                                   _mm512_and_si512(_mm512_srli_epi16(w, 4), low));
            }
        for (int t = 0; t < nt; t++)
            _mm512_store_si512((__m512i *)(C0 + 16 * t), _mm512_set1_epi32(-8 * qsum[t * nb + b]));
        _tile_loadd(0, q + 32 * b, n);
        for (int h = 0; h < 8; h += 4) {
            /* tile numbers are immediates: the 4 vectors spelt out, B alternating tmm1/tmm2 */
            _tile_loadd(3, C0, 64);
            _tile_loadd(4, C0, 64);
            _tile_loadd(5, C0, 64);
            _tile_loadd(6, C0, 64);
            _tile_loadd(1, B[h], 64);
            _tile_dpbsud(3, 0, 1);
            _tile_loadd(2, B[h + 1], 64);
            _tile_dpbsud(4, 0, 2);
            _tile_loadd(1, B[h + 2], 64);
            _tile_dpbsud(5, 0, 1);
            _tile_loadd(2, B[h + 3], 64);
            _tile_dpbsud(6, 0, 2);
            _tile_stored(3, Cb[h], 64);
            _tile_stored(4, Cb[h + 1], 64);
            _tile_stored(5, Cb[h + 2], 64);
            _tile_stored(6, Cb[h + 3], 64);
        }
        if (b > 0)
            mma_scale((const int32_t (*)[AMX_TOKENS * 16])C[(b - 1) & 1], dw, d, o, b - 1, nb, nt);
    }
    if (nb > 0)
        mma_scale((const int32_t (*)[AMX_TOKENS * 16])C[(nb - 1) & 1], dw, d, o, nb - 1, nb, nt);
}
#endif

void mms_q4_0(FIELDS, const float *tab, const int8_t *q, const float *d, const int32_t *qsum,
              float *out, int64_t g0, int64_t g1, int64_t nb, int64_t nt, int64_t qb)
{
#ifdef MMS_AMX
    if (qb == 32 && nt >= AMX_MIN && nt <= AMX_TOKENS && amx_ready()) {
        const int64_t n = nb * 32, W = (g1 - g0) * LANES;
        (void)f2, (void)f3, (void)f4, (void)f5, (void)tab;
#pragma omp parallel
        {
            float o[AMX_TOKENS * LANES] __attribute__((aligned(64)));
            amx_configure((int)nt); /* per thread: the tile configuration is thread state */
#pragma omp for schedule(dynamic, 1)
            for (int64_t g = g0; g < g1; g++) {
                memset(o, 0, nt * LANES * sizeof(float));
                mma_group((const uint8_t *)f0 + g * nb * 16 * LANES, (const uint16_t *)f1 + g * nb * LANES,
                          q, d, qsum, o, nb, n, (int)nt);
                for (int64_t t = 0; t < nt; t++)
                    memcpy(out + t * W + (g - g0) * LANES, o + t * LANES, LANES * sizeof(float));
            }
            _tile_release();
        }
        return;
    }
#endif
#ifdef MMS_Q4_0
    if (qb == 32 && nt <= MMS_MAX_Q4_0) {
        const int64_t n = nb * 32, W = (g1 - g0) * LANES;
        const int64_t passes = (nt + MRS_Q4_0 - 1) / MRS_Q4_0, tile = (nt + passes - 1) / passes;
        const uint8_t *qs = f0;
        const uint16_t *dw = f1;
        (void)f2, (void)f3, (void)f4, (void)f5, (void)tab;
        PARALLEL_FOR
        for (int64_t g = g0; g < g1; g++) {
            const uint8_t *gq = qs + g * nb * 16 * LANES;
            const uint16_t *gd = dw + g * nb * LANES;
            for (int64_t t0 = 0; t0 < nt; t0 += tile) { /* later passes find the group in L2 */
                const int8_t *qt = q + t0 * n;
                const float *dt = d + t0 * nb;
                const int32_t *st_ = qsum + t0 * nb;
                float *o = out + t0 * W + (g - g0) * LANES;
                switch (nt - t0 < tile ? nt - t0 : tile) {
#define MMS_CASE(m) case m: mms_group(gq, gd, qt, dt, st_, o, nb, n, W, m); break;
                    MMS_CASES_Q4_0(MMS_CASE)
#undef MMS_CASE
                }
            }
        }
        return;
    }
#endif
    mm_q4_0(f0, f1, f2, f3, f4, f5, tab, q, d, qsum, out, g0, g1, nb, nt, qb);
}
void mms_q4_k(FIELDS, const float *tab, const int8_t *q, const float *d, const int32_t *qsum,
              float *out, int64_t g0, int64_t g1, int64_t nb, int64_t nt, int64_t qb)
{
#ifdef MMS_Q4_K
    if (qb == 256 && nt <= MMS_MAX) {
        const int64_t n = nb * 256, W = (g1 - g0) * LANES;
        const int64_t passes = (nt + MRS - 1) / MRS, tile = (nt + passes - 1) / passes;
        (void)f5, (void)tab;
        PARALLEL_FOR
        for (int64_t g = g0; g < g1; g++) {
            const uint8_t *gq = (const uint8_t *)f0 + g * nb * 128 * LANES;
            const uint8_t *gs = (const uint8_t *)f1 + g * nb * 8 * LANES;
            const uint8_t *gm = (const uint8_t *)f2 + g * nb * 8 * LANES;
            const uint16_t *gd = (const uint16_t *)f3 + g * nb * LANES;
            const uint16_t *gdm = (const uint16_t *)f4 + g * nb * LANES;
            for (int64_t t0 = 0; t0 < nt; t0 += tile) {
                const int8_t *qt = q + t0 * n;
                const float *dt = d + t0 * nb;
                const int32_t *st_ = qsum + t0 * (n / 32);
                float *o = out + t0 * W + (g - g0) * LANES;
                switch (nt - t0 < tile ? nt - t0 : tile) {
#define MMSK_CASE(m) case m: mmsk_group(gq, gs, gm, gd, gdm, qt, dt, st_, o, nb, n, W, m); break;
                    MMS_CASES(MMSK_CASE)
#undef MMSK_CASE
                }
            }
        }
        return;
    }
#endif
    mm_q4_k(f0, f1, f2, f3, f4, f5, tab, q, d, qsum, out, g0, g1, nb, nt, qb);
}

void mms_q6_k(FIELDS, const float *tab, const int8_t *q, const float *d, const int32_t *qsum,
              float *out, int64_t g0, int64_t g1, int64_t nb, int64_t nt, int64_t qb)
{
#ifdef MMS_Q6_K
    if (qb == 256 && nt <= MRS6) { /* every token in one pass */
        const int64_t n = nb * 256, W = (g1 - g0) * LANES;
        (void)f4, (void)f5, (void)tab;
        PARALLEL_FOR
        for (int64_t g = g0; g < g1; g++) {
            const uint8_t *gl = (const uint8_t *)f0 + g * nb * 128 * LANES;
            const uint8_t *gh = (const uint8_t *)f1 + g * nb * 64 * LANES;
            const int8_t *gs = (const int8_t *)f2 + g * nb * 16 * LANES;
            const uint16_t *gd = (const uint16_t *)f3 + g * nb * LANES;
            float *o = out + (g - g0) * LANES;
            if (nt == 1)
                mms6_group(gl, gh, gs, gd, q, d, qsum, o, nb, n, W, 1);
            else
                mms6_group(gl, gh, gs, gd, q, d, qsum, o, nb, n, W, 2);
        }
        return;
    }
#endif
    mm_q6_k(f0, f1, f2, f3, f4, f5, tab, q, d, qsum, out, g0, g1, nb, nt, qb);
}

/* 1: AMX tiles in use; 0: not built for them; -1: the OS refused them; -2: AGENT_AMX=0 */
int kernels_amx(void)
{
#ifdef MMS_AMX
    return amx_ready() ? 1 : amx_permitted;
#else
    return 0;
#endif
}

/* The types whose mms_* kernel is fused on this build (space-separated), "" where none is. */
const char *kernels_fused_types(void)
{
    return "" /* read off the same macros that choose the kernels, so the two cannot disagree */
#ifdef MMS_Q4_0
           " q4_0"
#endif
#ifdef MMS_Q4_K
           " q4_k"
#endif
#ifdef MMS_Q6_K
           " q6_k"
#endif
        ;
}

/* y = x rounded to what quantize_q8 keeps (q * d per qb values): the matvec kernels multiply these,
 * so that decoding a token and prefilling it give the same products (up to float rounding). */
void round_q8(const float *x, int64_t nt, int64_t n, int64_t qb, float *y)
{
    for (int64_t t = 0; t < nt; t++)
        for (int64_t c = 0; c < n / qb; c++) {
            const float *xc = x + t * n + c * qb;
            float *yc = y + t * n + c * qb;
            int bad; /* NaN or inf pass through, as in quantize_q8's NaN scale */
            const float amax = block_amax(xc, qb, &bad);
            const float d = amax / 127, id = amax > 0 ? 127 / amax : 0;
            for (int64_t k = 0; k < qb; k++)
                yc[k] = bad ? xc[k] : (float)(int8_t)nearbyintf(xc[k] * id) * d;
        }
}

/* ---------------------------------------------------------------------------------------------
 * One call per projection: quantize x, then multiply (mm) -- the quantized activations live in a
 * per-thread scratch, so Python makes one kernel call and allocates nothing but the output
 * (decode: ~155 projections a token, each a few microseconds of call overhead). Projections that
 * read the same activation (q, k, v; gate, up) pass reuse: the scratch then keeps the rows it
 * holds if they are of this x with these sizes, so they are quantized once.
 * --------------------------------------------------------------------------------------------- */
typedef void (*mm_fn)(FIELDS, const float *tab, const int8_t *q, const float *d,
                      const int32_t *qsum, float *out, int64_t g0, int64_t g1, int64_t nb,
                      int64_t nt, int64_t qb);

static _Thread_local struct {
    void *buf;
    size_t size;
    const float *x; /* what buf holds the quantization of (NULL: nothing) */
    int64_t nt, n, qb, ss;
} q8_scratch;

/* 0 on success, -1 when the scratch cannot be allocated (out is then left untouched). reuse: the
 * caller knows x has not changed since it was last quantized here, if it was. */
int mm_x(const void *fn, FIELDS, const float *tab, const float *x, float *out, int64_t G,
         int64_t nb, int64_t nt, int64_t qb, int64_t ss, int64_t reuse)
{
    const int64_t n = nb * qb;
    /* q, then the scales and the sums, each 64-byte aligned */
    const size_t q_bytes = ((size_t)(nt * n) + 63) / 64 * 64;
    const size_t d_bytes = ((size_t)(nt * (n / qb)) * sizeof(float) + 63) / 64 * 64;
    const size_t need = q_bytes + d_bytes + (size_t)(nt * (n / ss)) * sizeof(int32_t);
    if (need > q8_scratch.size) {
        free(q8_scratch.buf);
        q8_scratch.x = NULL;
        q8_scratch.buf = aligned_alloc(64, (need + 63) / 64 * 64);
        q8_scratch.size = q8_scratch.buf ? (need + 63) / 64 * 64 : 0;
        if (!q8_scratch.buf)
            return -1;
    }
    int8_t *q = q8_scratch.buf;
    float *d = (float *)((char *)q8_scratch.buf + q_bytes);
    int32_t *qsum = (int32_t *)((char *)q8_scratch.buf + q_bytes + d_bytes);
    if (!(reuse && q8_scratch.x == x && q8_scratch.nt == nt && q8_scratch.n == n
          && q8_scratch.qb == qb && q8_scratch.ss == ss)) {
        quantize_q8(x, nt, n, qb, ss, q, d, qsum);
        q8_scratch.x = x, q8_scratch.nt = nt, q8_scratch.n = n, q8_scratch.qb = qb, q8_scratch.ss = ss;
    }
    ((mm_fn)fn)(f0, f1, f2, f3, f4, f5, tab, q, d, qsum, out, 0, G, nb, nt, qb);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The transformer's element-wise steps, one call each instead of 5-8 numpy operations: at one
 * token a row is a few thousand floats and the numpy calls' overhead was the cost.
 * --------------------------------------------------------------------------------------------- */

/* out = x / sqrt(mean(x^2) + eps) * w for each of nt rows of n (float32 squares summed in double,
 * then a float32 scale: as ggml_rms_norm). out may be x. */
void rms_norm(const float *x, const float *w, float *out, int64_t nt, int64_t n, double eps)
{
    for (int64_t t = 0; t < nt; t++) {
        const float *xt = x + t * n;
        double s = 0;
        for (int64_t k = 0; k < n; k++) {
            const float sq = xt[k] * xt[k];
            s += sq;
        }
        const float scale = (float)(1.0 / sqrt(s / (double)n + eps));
        for (int64_t k = 0; k < n; k++) {
            const float y = xt[k] * scale;
            out[t * n + k] = y * w[k];
        }
    }
}

/* Rotate pairs (2i, 2i + 1) of every head of x [nt, n_head, hd] in place by the angles of row t:
 * cos, sin [nt, hd / 2]. */
void rope(float *x, const float *cos_, const float *sin_, int64_t nt, int64_t n_head, int64_t hd)
{
    for (int64_t t = 0; t < nt; t++)
        for (int64_t h = 0; h < n_head; h++) {
            float *p = x + (t * n_head + h) * hd;
            const float *c = cos_ + t * (hd / 2), *s = sin_ + t * (hd / 2);
            for (int64_t i = 0; i < hd / 2; i++) {
                const float x0 = p[2 * i], x1 = p[2 * i + 1];
                const float a = x0 * c[i], b = x1 * s[i], e = x0 * s[i], f = x1 * c[i];
                p[2 * i] = a - b;
                p[2 * i + 1] = e + f;
            }
        }
}

/* silu(x) * y for V lanes: x / (1 + e^-x) * y. */
INLINE vf silu_lanes(vf x, vf y) { return x / (1.0f + vexp(-x, 1)) * y; }

/* g = silu(g) * u = g / (1 + exp(-g)) * u, n values, in place. On AVX-512 V at a time, the tail in
 * a padded vector so that a value's result does not depend on where it falls in the batch (libm's
 * scalar expf was ~2% of an 8-row decode step). Elsewhere libm's expf, as before: on an AVX2
 * build the seeded-reproducibility test (a fresh prompt against one read from the prefix cache,
 * flat random-model logits) flips with a silu that is not correctly rounded (one ulp off, made
 * deterministically, was enough; numpy's and libm's pass). */
void silu_mul(float *g, const float *u, int64_t n)
{
#if V == 16
    int64_t k = 0;
    for (; k + V <= n; k += V) {
        vf x, y;
        memcpy(&x, g + k, sizeof x);
        memcpy(&y, u + k, sizeof y);
        x = silu_lanes(x, y);
        memcpy(g + k, &x, sizeof x);
    }
    if (k < n) {
        vf x = {0}, y = {0};
        memcpy(&x, g + k, (size_t)(n - k) * sizeof(float));
        memcpy(&y, u + k, (size_t)(n - k) * sizeof(float));
        x = silu_lanes(x, y);
        memcpy(g + k, &x, (size_t)(n - k) * sizeof(float));
    }
#else
    for (int64_t k = 0; k < n; k++)
        g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
#endif
}

/* ---------------------------------------------------------------------------------------------
 * Decode rows (one token each, every row its own sequence and KV cache) through every layer in one
 * call: the Python loop around ~155 kernel calls a step cost ~2 ms of a ~20 ms 1.1B step. Every
 * projection must have an integer kernel for few tokens (mm_x); the plan holds, per layer,
 * DECODE_LAYER int64 words: the two norm weights, then 7 projections (q, k, v, o, gate, up, down)
 * of DECODE_LINEAR words: kernel, six fields, groups, blocks, block size, sum size. The same
 * kernels run in the same order as the layer-by-layer path, so the results are identical. Built
 * where F16C converts the K and V rows to half precision (any CPU with the integer kernels).
 * --------------------------------------------------------------------------------------------- */
#if defined(__F16C__)
#define DECODE_LINEAR 11
#define DECODE_LAYER (2 + 7 * DECODE_LINEAR)

/* reuse: x is unchanged since the previous projection (q, k, v of one h; gate, up) */
static int decode_linear(const int64_t *L, const float *tab, const float *x, float *out, int64_t nt,
                         int reuse)
{
    const void *const *f = (const void *const *)(L + 1);
    return mm_x((const void *)L[0], f[0], f[1], f[2], f[3], f[4], f[5], tab, x, out, L[7], L[8], nt,
                L[9], L[10], reuse);
}

/* x [nt, dim] (the rows' embeddings) -> the hidden states after the last layer, in place. Row r's
 * cache: k_base[r], v_base[r] [n_layer, layer / (n_kv hd), n_kv, hd] f16 (layer: elements of one
 * layer), its token at position pos[r]; cos, sin [nt, hd / 2]. scratch: nt (5 dim + 2 ff) floats
 * (projections' outputs have no padded rows: checked by the caller). 0 on success, -1 when the
 * quantized activations' scratch could not be had. */
int decode_layers(const int64_t *plan, int64_t n_layer, int64_t nt, float *x, const float *cos_,
                  const float *sin_, const int64_t *k_base, const int64_t *v_base, int64_t layer,
                  const int64_t *pos, int64_t dim, int64_t n_head, int64_t n_kv, int64_t hd,
                  int64_t ff, double eps, const float *tab, float *scratch)
{
    float *h = scratch, *q = h + nt * dim, *k = q + nt * dim, *v = k + nt * dim, *att = v + nt * dim,
          *g = att + nt * dim, *u = g + nt * ff;
    const int64_t kv_dim = n_kv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const uint16_t *kl[nt], *vl[nt];
    for (int64_t li = 0; li < n_layer; li++) {
        const int64_t *P = plan + li * DECODE_LAYER, *W = P + 2;
        rms_norm(x, (const float *)P[0], h, nt, dim, eps);
        if (decode_linear(W, tab, h, q, nt, 0) || decode_linear(W + DECODE_LINEAR, tab, h, k, nt, 1)
            || decode_linear(W + 2 * DECODE_LINEAR, tab, h, v, nt, 1))
            return -1;
        rope(q, cos_, sin_, nt, n_head, hd);
        rope(k, cos_, sin_, nt, n_kv, hd);
        for (int64_t r = 0; r < nt; r++) {
            uint16_t *kc = (uint16_t *)k_base[r] + li * layer, *vc = (uint16_t *)v_base[r] + li * layer;
            for (int64_t i = 0; i < kv_dim; i++) {
                kc[pos[r] * kv_dim + i] = _cvtss_sh(k[r * kv_dim + i], _MM_FROUND_TO_NEAREST_INT);
                vc[pos[r] * kv_dim + i] = _cvtss_sh(v[r * kv_dim + i], _MM_FROUND_TO_NEAREST_INT);
            }
            kl[r] = kc;
            vl[r] = vc;
        }
        if (nt == 1) /* as the layer-by-layer path: one sequence, one call */
            attention_f16(kl[0], vl[0], q, att, tab, 1, pos[0], n_head, n_kv, hd, scale);
        else
            attention_rows(kl, vl, pos, q, att, tab, nt, n_head, n_kv, hd, scale);
        if (decode_linear(W + 3 * DECODE_LINEAR, tab, att, q, nt, 0))
            return -1;
        for (int64_t i = 0; i < nt * dim; i++)
            x[i] += q[i];
        rms_norm(x, (const float *)P[1], h, nt, dim, eps);
        if (decode_linear(W + 4 * DECODE_LINEAR, tab, h, g, nt, 0)
            || decode_linear(W + 5 * DECODE_LINEAR, tab, h, u, nt, 1))
            return -1;
        silu_mul(g, u, nt * ff);
        if (decode_linear(W + 6 * DECODE_LINEAR, tab, g, q, nt, 0))
            return -1;
        for (int64_t i = 0; i < nt * dim; i++)
            x[i] += q[i];
    }
    return 0;
}
#endif
