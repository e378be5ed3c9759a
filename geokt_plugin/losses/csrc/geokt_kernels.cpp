// The native CPU kernels of the GeoKT losses: one block of whole point sets per call, fused row passes.
//
// The math is docs/losses.md; the derivation of the gradient is the comment block of losses/kernel.py. Python
// (losses/native.py) computes the Gram matrices of a block with one batched matmul per network and hands them to
// one entry point below, which turns them into the raw squared distances as it first reads each row,
//     Q[a, i, j] = |x_i|^2 - 2 <x_i, x_j> + |x_j|^2     (b sets of n points, (b, n, n), not clamped).
// Every entry point
//   1. walks the rows once for the scales s = mean_{i != j} D (only the losses that use them),
//   2. walks the rows once more: the instructor's neighbourhood of the row (kNN or tree ball), the row's value,
//      its share of dL/ds, and c[i, j] = dL/dQ[i, j] without the scale's share, written over the instructor's row,
//   3. folds the scale's share in, in place: C' = c + beta W, beta = (dL/ds) / (2 n (n-1)), W = [Q >= 0] / D, so that
//      dL/dx_i = 2 sum_j S_ij (x_i - x_j) with S = C' + C'^T,
//   4. stores -(rowsum + colsum) / 2 of C' on its diagonal, so that dL/dX = -2 (C' X + C'^T X): two matmuls in
//      Python (BLAS reads the transpose in place).
// With gradients the student's Q is overwritten by W once each row is done. Everything a row needs stays in
// per-thread row buffers (L1); per-row partial sums are reduced per set in a fixed order, so results do not depend
// on the number of threads.
//
// Values are those of the eager path up to rounding: the same formulas (clamp, + 1e-12, sqrt, log-softmax), a
// vectorisable exp for float (Cephes' polynomial, within 2 ulp of the true value), std::exp for double. Ties in a
// kNN are broken towards the lower index; the tree is the unique one under the order (D, min(i, j), max(i, j)).
// Built by losses/native.py with -O3 -march=native -fopenmp (OpenMP shares torch's runtime in the process).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif


namespace {

using i64 = std::int64_t;
constexpr int kLanes = 16;  // independent accumulators: vectorised sums without reassociation flags
constexpr double kDistEps = 1e-12;  // DIST_EPS in losses/geometry.py
constexpr double kScaleEps = 1e-12;  // SCALE_EPS
constexpr double kNacEps = 1e-12;  // NAC_EPS in losses/neighborhood_contrast.py

template <class T> inline T clamp0(T q) { return q < T(0) ? T(0) : q; }  // NaN stays NaN, as torch's clamp_min
template <class T> inline T dist(T q) { return std::sqrt(clamp0(q) + T(kDistEps)); }
template <class T> inline T inv_dist(T q) { return q < T(0) ? T(0) : T(1) / dist(q); }  // W = [Q >= 0] / D

// exp(x) for x <= 0 (every call site subtracts a row maximum first); NaN propagates, x < -87.3 gives 0.
inline float exp_nonpos(float x) {
  const float lo = -87.3365447504019f;
  float xc = x < lo ? lo : x;
  float fx = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  float z = r * r;
  float y = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
              1.6666665459e-1f) * r + 5.0000001201e-1f) * z + r + 1.0f;
  std::int32_t bits = (static_cast<std::int32_t>(fx) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < lo ? 0.0f : y * scale;
}
inline double exp_nonpos(double x) { return std::exp(x); }

template <class T> struct KeyOf;  // non-negative floats (and NaN) order like their bit patterns
template <> struct KeyOf<float> { using type = std::uint32_t; };
template <> struct KeyOf<double> { using type = std::uint64_t; };
template <class T> inline typename KeyOf<T>::type key_of(T v) {
  typename KeyOf<T>::type u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

template <class T, class F> inline T lane_sum(i64 n, F f) {
  T acc[kLanes] = {};
  i64 j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += f(j + l);
  T total = T(0);
  for (; j < n; ++j) total += f(j);
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  return total;
}

template <class T> inline T lane_max(const T* x, i64 n) {
  T acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = -std::numeric_limits<T>::infinity();
  i64 j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l];
  T m = -std::numeric_limits<T>::infinity();
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  for (int l = 0; l < kLanes; ++l) m = acc[l] > m ? acc[l] : m;
  return m;
}

// A key and its index as one integer ordered like (key, index): selections then compare plain integers.
inline std::uint64_t packed(std::uint32_t key, i64 j) { return (std::uint64_t(key) << 32) | std::uint64_t(j); }
inline unsigned __int128 packed(std::uint64_t key, i64 j) {
  return (static_cast<unsigned __int128>(key) << 64) | std::uint64_t(j);
}

// The k smallest keys[j], j != i, ties towards the lower j, into nb (unordered); keys[i] is overwritten.
// For k <= kLanes: the minima of kLanes interleaved column groups are k distinct entries no smaller than the k-th
// smallest, so the k-th smallest of those minima is a threshold every one of the k nearest passes. One vectorised
// pass finds the minima, an insertion the threshold, a branch-free compare-and-append pass the
// few candidates (about 10 of 256 on these maps), and an insertion sort of (key, index) integers picks k of them.
template <class K, class P> void knn_row(K* keys, i64 n, i64 i, i64 k, i64* nb, std::vector<P>& cand) {
  const K top = std::numeric_limits<K>::max();
  keys[i] = top;
  cand.resize(2 * n + 16);  // candidates, then scratch for the vector compress below
  i64 count = 0;
  K threshold = top;
  if (k <= kLanes && n >= 4 * kLanes) {
    K m[kLanes];
    for (int l = 0; l < kLanes; ++l) m[l] = top;
    i64 j = 0;
    for (; j + kLanes <= n; j += kLanes)
      for (int l = 0; l < kLanes; ++l) m[l] = keys[j + l] < m[l] ? keys[j + l] : m[l];
    for (; j < n; ++j) m[0] = keys[j] < m[0] ? keys[j] : m[0];
    K low[kLanes];  // the k smallest minima, ascending, by insertion
    i64 filled = 0;
    for (int l = 0; l < kLanes; ++l) {
      if (filled == k && !(m[l] < low[k - 1])) continue;
      i64 p = filled < k ? filled++ : k - 1;
      for (; p > 0 && m[l] < low[p - 1]; --p) low[p] = low[p - 1];
      low[p] = m[l];
    }
    threshold = low[k - 1];
  }
  i64 j = 0;
#if defined(__AVX512F__)
  if constexpr (sizeof(K) == 4) {  // 16 compares, a compress in registers, one full store per step
    std::int32_t* picked = reinterpret_cast<std::int32_t*>(cand.data() + n);  // scratch past every candidate
    const __m512i limit = _mm512_set1_epi32(static_cast<std::int32_t>(threshold));
    __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    i64 found = 0;
    for (; j + 16 <= n; j += 16) {
      const __mmask16 pass = _mm512_cmple_epu32_mask(_mm512_loadu_si512(static_cast<const void*>(keys + j)), limit);
      _mm512_storeu_si512(static_cast<void*>(picked + found), _mm512_maskz_compress_epi32(pass, index));
      found += __builtin_popcount(pass);
      index = _mm512_add_epi32(index, _mm512_set1_epi32(16));
    }
    for (i64 p = 0; p < found; ++p) {  // about 10: pack them, dropping i
      cand[count] = packed(keys[picked[p]], picked[p]);
      count += picked[p] != i;
    }
  }
#endif
  for (; j < n; ++j) {  // branch-free append: the test rarely passes, a branch would mispredict
    cand[count] = packed(keys[j], j);
    count += (keys[j] <= threshold) & (j != i);
  }
  if (count <= 4 * kLanes) {
    for (i64 a = 1; a < count; ++a) {
      const P v = cand[a];
      i64 p = a;
      for (; p > 0 && v < cand[p - 1]; --p) cand[p] = cand[p - 1];
      cand[p] = v;
    }
  } else if (count > k) {
    std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.begin() + count);
  }
  for (i64 m = 0; m < k; ++m) nb[m] = i64(cand[m] & 0xFFFFFFFFu);
}

// One thread's kNN of rows: the keys of a row (non-negative floats, as their bits), then knn_row. `nearest` uses
// A = max(Q, 0) + 1e-12 of an instructor row (the kNN of D, since sqrt is monotone); `by_value` any keys.
template <class T> struct RowKnn {
  std::vector<typename KeyOf<T>::type> keys;
  std::vector<i64> nb;
  std::vector<decltype(packed(key_of(T(0)), 0))> cand;
  RowKnn(i64 n, i64 k) : keys(n), nb(k) {}
  const i64* by_value(const T* row, i64 n, i64 i, i64 k) {
    for (i64 j = 0; j < n; ++j) keys[j] = key_of(row[j]);
    knn_row(keys.data(), n, i, k, nb.data(), cand);
    return nb.data();
  }
  const i64* nearest(const T* q_row, i64 n, i64 i, i64 k) {
    for (i64 j = 0; j < n; ++j) keys[j] = key_of(T(clamp0(q_row[j]) + T(kDistEps)));
    knn_row(keys.data(), n, i, k, nb.data(), cand);
    return nb.data();
  }
};

// Row i of a set's Gram matrix G (sq: the set's squared norms) becomes Q_ij = |x_i|^2 - 2 G_ij + |x_j|^2, in place.
template <class T> inline void from_gram(T* row, const T* sq, i64 i, i64 n) {
  const T sq_i = sq[i];
  for (i64 j = 0; j < n; ++j) row[j] = (sq_i - T(2) * row[j]) + sq[j];
}

template <class T> void from_gram_all(T* g, const T* sq, i64 b, i64 n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (i64 r = 0; r < b * n; ++r) from_gram(g + r * n, sq + (r / n) * n, r % n, n);
}

// Per-set mean off-diagonal distance, max(., 1e-12), of b sets; q: their (b, n, n) Gram matrices, turned into Q.
template <class T> void scales(T* q, const T* sq, i64 b, i64 n, int threads, std::vector<double>& out) {
  std::vector<double> rows(b * n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (i64 r = 0; r < b * n; ++r) {
    T* row = q + r * n;
    const i64 i = r % n;
    from_gram(row, sq + (r / n) * n, i, n);
    rows[r] = lane_sum<T>(n, [&](i64 j) { return j == i ? T(0) : dist(row[j]); });
  }
  out.assign(b, 0.0);
  for (i64 a = 0; a < b; ++a) {
    double total = 0.0;
    for (i64 i = 0; i < n; ++i) total += rows[a * n + i];
    out[a] = std::max(total / double(n * (n - 1)), kScaleEps);
  }
}

// Steps 3 and 4 of the header: c (over the instructor's buffer) becomes C' = c + beta W row by row, w holding
// W = [Q >= 0] / D (over the student's buffer; only read where beta != 0), and the diagonal of C' becomes
// -(rowsum_i + colsum_i) / 2 of its off-diagonal entries. Then S = C' + C'^T has -rowsum(S) on its diagonal and
// dL/dX = -2 (C' X + C'^T X): two matmuls in Python, no transpose here. Column sums are accumulated per chunk of
// kChunk rows and reduced in chunk order, so they do not depend on the number of threads.
template <class T> void fold_scale(const T* w, T* c, i64 b, i64 n, const std::vector<double>& beta, int threads) {
  constexpr i64 kChunk = 64;
  const i64 chunks = (n + kChunk - 1) / kChunk;
  std::vector<T> rows(b * n), cols(b * chunks * n, T(0));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (i64 job = 0; job < b * chunks; ++job) {
    const i64 a = job / chunks, r0 = a * n + (job % chunks) * kChunk, r1 = std::min(a * n + n, r0 + kChunk);
    const T be = T(beta[a]);
    T* col = cols.data() + job * n;
    for (i64 r = r0; r < r1; ++r) {
      T* row = c + r * n;
      const T* wr = w + r * n;
      if (be != T(0))
        for (i64 j = 0; j < n; ++j) row[j] += be * wr[j];
      row[r - a * n] = T(0);
      rows[r] = lane_sum<T>(n, [&](i64 j) { return row[j]; });
      for (i64 j = 0; j < n; ++j) col[j] += row[j];
    }
  }
  for (i64 a = 0; a < b; ++a)
    for (i64 i = 0; i < n; ++i) {
      T total = T(0);
      for (i64 q = 0; q < chunks; ++q) total += cols[(a * chunks + q) * n + i];
      c[(a * n + i) * n + i] = -(rows[a * n + i] + total) / T(2);
    }
}

// Sum over sets of per-row partials, in row order.
inline void per_set(const std::vector<double>& rows, i64 b, i64 n, double factor, std::vector<double>& out) {
  out.assign(b, 0.0);
  for (i64 a = 0; a < b; ++a) {
    double total = 0.0;
    for (i64 i = 0; i < n; ++i) total += rows[a * n + i];
    out[a] = total * factor;
  }
}

template <class T> void store(const std::vector<double>& v, T* out) {
  for (std::size_t a = 0; a < v.size(); ++a) out[a] = T(v[a]);
}

// The end of a loss with a scale: per-set values (row sums times value_factor), then, with gradients, dL/ds of
// set a = its row_dscale sum times dscale_factor(a), folded into C' (beta = dL/ds / (2 n (n - 1))).
template <class T, class F>
void finish(const std::vector<double>& row_value, double value_factor, const std::vector<double>& row_dscale,
            F dscale_factor, T* qs, T* qt, i64 b, i64 n, int need_grad, T* value, int threads) {
  std::vector<double> v;
  per_set(row_value, b, n, value_factor, v);
  store(v, value);
  if (!need_grad) return;
  std::vector<double> beta;
  per_set(row_dscale, b, n, 1.0, beta);
  for (i64 a = 0; a < b; ++a) beta[a] *= dscale_factor(a) / (2.0 * double(n * (n - 1)));
  fold_scale(qs, qt, b, n, beta, threads);
}

// ------------------------------------------------------------------------------------------------------------
// neighbor_rank_loss: q[j|i] = softmax_{j != i}(-D_s / (T s_s)), L = 1/n sum_i (-log k - 1/k sum_{K(i)} log q).
// ------------------------------------------------------------------------------------------------------------
template <class T>
void rank(T* qs, T* qt, const T* sq_s, const T* sq_t, i64 b, i64 n, i64 k, double temperature, int need_grad,
          T* value, int threads) {
  std::vector<double> sc;
  scales(qs, sq_s, b, n, threads, sc);
  std::vector<double> row_value(b * n), row_dscale(b * n);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> d(n), logit(n), e(n);
    RowKnn<T> knn(n, k);
    std::vector<char> in(n, 0);
#pragma omp for schedule(static)
    for (i64 r = 0; r < b * n; ++r) {
      const i64 a = r / n, i = r % n;
      T* q = qs + r * n;
      T* t = qt + r * n;
      from_gram(t, sq_t + a * n, i, n);
      const i64* nb = knn.nearest(t, n, i, k);
      const T f = T(-1.0 / temperature / sc[a]);
      for (i64 j = 0; j < n; ++j) {
        d[j] = dist(q[j]);
        logit[j] = d[j] * f;
      }
      logit[i] = -std::numeric_limits<T>::infinity();
      const T mx = lane_max(logit.data(), n);
      for (i64 j = 0; j < n; ++j) e[j] = exp_nonpos(logit[j] - mx);
      e[i] = T(0);
      const T total = lane_sum<T>(n, [&](i64 j) { return e[j]; });
      double nb_logit = 0.0;
      for (i64 m = 0; m < k; ++m) nb_logit += logit[nb[m]];
      row_value[r] = double(mx) + std::log(double(total)) - nb_logit / double(k) - std::log(double(k));
      if (!need_grad) continue;
      // g = dL/dlogit = (q - [j in K(i)] / k) / n;  c = dL/dQ = -g W / (2 T s).
      const T inv_total = T(1) / total, inv_n = T(1.0 / double(n));
      for (i64 m = 0; m < k; ++m) in[nb[m]] = 1;
      for (i64 j = 0; j < n; ++j) e[j] = (e[j] * inv_total - (in[j] ? T(1.0 / double(k)) : T(0))) * inv_n;
      for (i64 m = 0; m < k; ++m) in[nb[m]] = 0;
      e[i] = T(0);
      row_dscale[r] = double(lane_sum<T>(n, [&](i64 j) { return e[j] * d[j]; }));
      const T cf = T(-0.5 / (temperature * sc[a]));
      for (i64 j = 0; j < n; ++j) {
        const T w = inv_dist(q[j]);
        t[j] = e[j] * w * cf;
        q[j] = w;  // W for fold_scale
      }
      t[i] = T(0);
    }
  }
  finish(row_value, 1.0 / double(n), row_dscale, [&](i64 a) { return 1.0 / (temperature * sc[a] * sc[a]); }, qs, qt,
         b, n, need_grad, value, threads);
}

// ------------------------------------------------------------------------------------------------------------
// neighbor_kl_loss: P[j|i] = softmax_{j != i}(-Dn^2 / bw) per network, L = 1/n sum_i KL(P_t[.|i] || P_s[.|i]).
// ------------------------------------------------------------------------------------------------------------
template <class T>
void kl(T* qs, T* qt, const T* sq_s, const T* sq_t, i64 b, i64 n, double bandwidth, int need_grad, T* value,
        int threads) {
  std::vector<double> sc_s, sc_t;
  scales(qs, sq_s, b, n, threads, sc_s);
  scales(qt, sq_t, b, n, threads, sc_t);
  std::vector<double> row_value(b * n), row_dscale(b * n);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> ls(n), lt(n), es(n), et(n);
#pragma omp for schedule(static)
    for (i64 r = 0; r < b * n; ++r) {
      const i64 a = r / n, i = r % n;
      T* q = qs + r * n;
      T* t = qt + r * n;
      const T fs = T(-1.0 / bandwidth / (sc_s[a] * sc_s[a])), ft = T(-1.0 / bandwidth / (sc_t[a] * sc_t[a]));
      for (i64 j = 0; j < n; ++j) {
        ls[j] = (clamp0(q[j]) + T(kDistEps)) * fs;
        lt[j] = (clamp0(t[j]) + T(kDistEps)) * ft;
      }
      ls[i] = lt[i] = -std::numeric_limits<T>::infinity();
      const T ms = lane_max(ls.data(), n), mt = lane_max(lt.data(), n);
      for (i64 j = 0; j < n; ++j) {
        es[j] = exp_nonpos(ls[j] - ms);
        et[j] = exp_nonpos(lt[j] - mt);
      }
      es[i] = et[i] = T(0);
      const T sum_s = lane_sum<T>(n, [&](i64 j) { return es[j]; });
      const T sum_t = lane_sum<T>(n, [&](i64 j) { return et[j]; });
      const T lse_s = ms + std::log(sum_s), lse_t = mt + std::log(sum_t);
      const T inv_s = T(1) / sum_s, inv_t = T(1) / sum_t;
      // sum_j P_t (log P_t - log P_s) = sum_j P_t (lt - ls) - lse_t + lse_s  (sum_j P_t = 1 up to rounding)
      row_value[r] = double(lane_sum<T>(n, [&](i64 j) {
        return j == i ? T(0) : et[j] * inv_t * ((lt[j] - lse_t) - (ls[j] - lse_s));
      }));
      if (!need_grad) continue;
      // g = dL/dlogit_s = (P_s - P_t) / n;  c = dL/dQ = g fs [Q >= 0];  dL/ds_s = -2 / s_s sum g logit_s.
      const T inv_n = T(1.0 / double(n));
      for (i64 j = 0; j < n; ++j) es[j] = (es[j] * inv_s - et[j] * inv_t) * inv_n;
      es[i] = T(0);
      ls[i] = T(0);
      row_dscale[r] = double(lane_sum<T>(n, [&](i64 j) { return es[j] * ls[j]; }));
      for (i64 j = 0; j < n; ++j) {
        t[j] = q[j] < T(0) ? T(0) : es[j] * fs;
        q[j] = inv_dist(q[j]);  // W for fold_scale
      }
      t[i] = T(0);
    }
  }
  finish(row_value, 1.0 / double(n), row_dscale, [&](i64 a) { return -2.0 / sc_s[a]; }, qs, qt, b, n, need_grad,
         value, threads);
}

// ------------------------------------------------------------------------------------------------------------
// local_distance_loss: L = 1/(n k) sum_i sum_{K(i)} huber(Dn_s - Dn_t); k = 0 means every pair (1/(n (n-1))).
// ------------------------------------------------------------------------------------------------------------
template <class T>
void distance(T* qs, T* qt, const T* sq_s, const T* sq_t, i64 b, i64 n, i64 k, int need_grad, T* value,
              int threads) {
  std::vector<double> sc_s, sc_t;
  scales(qs, sq_s, b, n, threads, sc_s);
  scales(qt, sq_t, b, n, threads, sc_t);
  const bool all = k == 0;
  const double pairs = double(n) * double(all ? n - 1 : k);
  std::vector<double> row_value(b * n), row_dscale(b * n);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> dt(n), u(n);
    RowKnn<T> knn(n, all ? 0 : k);
#pragma omp for schedule(static)
    for (i64 r = 0; r < b * n; ++r) {
      const i64 a = r / n, i = r % n;
      T* q = qs + r * n;
      T* t = qt + r * n;
      const T inv_ss = T(1.0 / sc_s[a]), inv_st = T(1.0 / sc_t[a]);
      for (i64 j = 0; j < n; ++j) dt[j] = dist(t[j]);
      double val = 0.0, dsc = 0.0;
      if (all) {
        const T cf = T(0.5 / pairs / sc_s[a]);
        for (i64 j = 0; j < n; ++j) {
          const T ds = dist(q[j]);
          const T e = ds * inv_ss - dt[j] * inv_st;
          const T hp = e < T(-1) ? T(-1) : (e > T(1) ? T(1) : e);
          u[j] = hp * (e - T(0.5) * hp);
          dt[j] = -hp * ds;  // reused: dL/ds_s share
          if (need_grad) {
            const T w = inv_dist(q[j]);
            t[j] = hp * w * cf;
            q[j] = w;  // W for fold_scale
          }
        }
        u[i] = dt[i] = T(0);
        if (need_grad) t[i] = T(0);
        val = double(lane_sum<T>(n, [&](i64 j) { return u[j]; }));
        dsc = double(lane_sum<T>(n, [&](i64 j) { return dt[j]; }));
      } else {
        const i64* nb = knn.by_value(dt.data(), n, i, k);
        if (need_grad)
          for (i64 j = 0; j < n; ++j) u[j] = T(0);
        const T cf = T(1.0 / (pairs * 2.0 * sc_s[a]));
        for (i64 m = 0; m < k; ++m) {
          const i64 j = nb[m];
          const T ds = dist(q[j]);
          const T e = ds * inv_ss - dt[j] * inv_st;
          const T hp = e < T(-1) ? T(-1) : (e > T(1) ? T(1) : e);
          val += double(hp * (e - T(0.5) * hp));
          dsc += double(-hp * ds);
          if (need_grad) u[j] = q[j] < T(0) ? T(0) : hp / ds * cf;
        }
        if (need_grad) {
          std::memcpy(t, u.data(), sizeof(T) * n);
          for (i64 j = 0; j < n; ++j) q[j] = inv_dist(q[j]);  // W for fold_scale
        }
      }
      row_value[r] = val;
      row_dscale[r] = dsc;
    }
  }
  finish(row_value, 1.0 / pairs, row_dscale, [&](i64 a) { return 1.0 / (pairs * sc_s[a] * sc_s[a]); }, qs, qt, b, n,
         need_grad, value, threads);
}

// ------------------------------------------------------------------------------------------------------------
// neighborhood_contrast_loss: NAC[i] = sum_j M_ij Q_ij / max(sum_{j != i} Q_ij, 1e-12), L = 1/n sum_i (NAC_s -
// NAC_t)^2 with the instructor's M: the hop ball of radius `radius` on its minimum spanning tree, or its kNN.
// ------------------------------------------------------------------------------------------------------------

// Each point's first exact copy among the n points (C channels) of one set: rep[i] = the lowest j with x_j == x_i
// in every channel (-0.0 == 0.0; NaN equals nothing, so such a point is its own). Points are grouped by a hash of
// their bits (after + 0.0, which turns -0.0 into 0.0), then compared exactly within a group.
template <class T> void first_copies(const T* x, i64 n, i64 C, std::vector<i64>& rep, std::vector<std::uint64_t>& hash,
                                     std::vector<i64>& order) {
  hash.resize(n);
  for (i64 i = 0; i < n; ++i) {
    std::uint64_t h = 1469598103934665603ull;
    for (i64 c = 0; c < C; ++c) {
      const T v = x[i * C + c] + T(0);
      h = (h ^ std::uint64_t(key_of(v))) * 1099511628211ull;
    }
    hash[i] = h;
  }
  order.resize(n);
  for (i64 i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](i64 a, i64 b) { return hash[a] < hash[b] || (hash[a] == hash[b] && a < b); });
  rep.resize(n);
  auto same = [&](i64 a, i64 b) {
    for (i64 c = 0; c < C; ++c)
      if (!(x[a * C + c] == x[b * C + c])) return false;
    return true;
  };
  for (i64 g = 0; g < n;) {
    i64 e = g;
    while (e < n && hash[order[e]] == hash[order[g]]) ++e;
    for (i64 p = g; p < e; ++p) {  // in index order: the first equal earlier member is the lowest copy
      const i64 i = order[p];
      rep[i] = i;
      for (i64 q = g; q < p; ++q)
        if (rep[order[q]] == order[q] && same(order[q], i)) {
          rep[i] = order[q];
          break;
        }
    }
    g = e;
  }
}

// Edge (x, y) of weight w as one integer ordered like (w, min, max): w's bits (w >= 0), then the two ends.
inline unsigned __int128 edge_code(double w, i64 lo, i64 hi) {
  return (static_cast<unsigned __int128>(key_of(w)) << 64) | (std::uint64_t(lo) << 32) | std::uint64_t(hi);
}
inline std::uint64_t edge_code(float w, i64 lo, i64 hi) {
  return (std::uint64_t(key_of(w)) << 32) | (std::uint64_t(lo) << 16) | std::uint64_t(hi);  // n <= 65536
}

// The tree of one set (Prim, O(n^2)) as adjacency lists. Edge weights are read from the upper triangle of the
// instructor's Q (D = sqrt(max(Q, 0) + 1e-12); NaN and inf become the largest finite value); copies (rep) take
// their first copy's weights and weigh sqrt(1e-12) to each other. Edges are ordered by (D, min, max), packed into
// one integer: a strict order, so the tree is the one every exact algorithm finds (losses/tree.py's Borůvka).
// The weights go into a symmetric matrix first, so that each of Prim's n steps is two vectorised passes over a row.
template <class T>
void tree(const T* q, i64 n, const i64* rep, std::vector<T>& w, std::vector<i64>& adj_start, std::vector<i64>& adj) {
  using Code = decltype(edge_code(T(0), 0, 0));
  constexpr i64 kTile = 16;
  const T top = std::numeric_limits<T>::max();
  w.resize(2 * n * n);
  T* sym = w.data();
  for (i64 i = 0; i < n; ++i)  // upper triangle, row by row
    for (i64 j = i + 1; j < n; ++j) {
      const T v = dist(q[i * n + j]);
      sym[i * n + j] = v <= top ? v : top;  // NaN and +inf
    }
  for (i64 i0 = 0; i0 < n; i0 += kTile)  // mirrored into the lower triangle tile by tile
    for (i64 j0 = 0; j0 <= i0; j0 += kTile)
      for (i64 i = i0; i < std::min(n, i0 + kTile); ++i)
        for (i64 j = j0; j < std::min(i, j0 + kTile); ++j) sym[i * n + j] = sym[j * n + i];
  bool copies = false;
  for (i64 i = 0; i < n; ++i) copies |= rep[i] != i;
  if (copies) {  // every copy takes its first copy's row and column
    T* with = w.data() + n * n;
    for (i64 i = 0; i < n; ++i)
      for (i64 j = 0; j < n; ++j)
        with[i * n + j] = rep[i] == rep[j] ? T(std::sqrt(kDistEps)) : sym[rep[i] * n + rep[j]];
    sym = with;
  }
  const Code none = ~Code(0);
  const int shift = std::is_same<T, float>::value ? 16 : 32;
  std::vector<Code> best(n, none), taken(n, 0);  // taken: none for points in the tree, kept out of every minimum
  std::vector<i64> ends;
  ends.reserve(2 * (n - 1));
  i64 v = 0;
  taken[0] = none;
  for (i64 step = 1; step < n; ++step) {
    const T* row = sym + v * n;
    Code least = none;
    for (i64 u = 0; u < n; ++u) {
      const Code code = edge_code(row[u], std::min(u, v), std::max(u, v)) | taken[u];
      best[u] = code < best[u] ? code : best[u];
      least = best[u] < least ? best[u] : least;
    }
    const i64 lo = i64((least >> shift) & ((Code(1) << shift) - 1)), hi = i64(least & ((Code(1) << shift) - 1));
    const i64 pick = taken[lo] ? hi : lo;
    taken[pick] = none;
    best[pick] = none;
    ends.push_back(lo);
    ends.push_back(hi);
    v = pick;
  }
  adj_start.assign(n + 1, 0);
  for (i64 e : ends) ++adj_start[e + 1];
  for (i64 i = 0; i < n; ++i) adj_start[i + 1] += adj_start[i];
  adj.assign(ends.size(), 0);
  std::vector<i64> fill(adj_start.begin(), adj_start.end() - 1);
  for (std::size_t e = 0; e < ends.size(); e += 2) {
    adj[fill[ends[e]]++] = ends[e + 1];
    adj[fill[ends[e + 1]]++] = ends[e];
  }
}

// The hop balls of one tree as bitsets (words = ceil(n / 64) per point): bit j of row i is set iff
// 1 <= hops(i, j) <= radius. Ball_h(i) = Ball_{h-1}(i) | the union of Ball_{h-1}(j) over i's tree neighbours j, from
// Ball_0(i) = {i}: radius rounds of 2 (n - 1) word-wise ORs, stopping early once a round changes nothing.
inline void hop_bits(const std::vector<i64>& start, const std::vector<i64>& adj, i64 n, i64 radius,
                     std::vector<std::uint64_t>& reach, std::vector<std::uint64_t>& scratch) {
  const i64 words = (n + 63) / 64;
  reach.assign(n * words, 0);
  for (i64 i = 0; i < n; ++i) reach[i * words + i / 64] |= std::uint64_t(1) << (i % 64);
  for (i64 hop = 0; hop < radius; ++hop) {
    scratch = reach;
    for (i64 i = 0; i < n; ++i)
      for (i64 p = start[i]; p < start[i + 1]; ++p)
        for (i64 w = 0; w < words; ++w) scratch[i * words + w] |= reach[adj[p] * words + w];
    const bool same = scratch == reach;
    reach.swap(scratch);
    if (same) break;
  }
  for (i64 i = 0; i < n; ++i) reach[i * words + i / 64] &= ~(std::uint64_t(1) << (i % 64));
}

template <class T>
void nac(T* qs, T* qt, const T* sq_s, const T* sq_t, i64 b, i64 n, int mst, i64 radius, i64 k, const T* points,
         i64 channels, int need_grad, T* value, int threads) {
  const i64 words = (n + 63) / 64;
  std::vector<std::vector<std::uint64_t>> reach(b);
  if (mst) {
    from_gram_all(qt, sq_t, b, n, threads);  // the tree reads whole sets; every other Q is formed row by row
#pragma omp parallel num_threads(threads)
    {
      std::vector<T> w;
      std::vector<i64> rep, order, start, adj;
      std::vector<std::uint64_t> hash, scratch;
#pragma omp for schedule(dynamic)
      for (i64 a = 0; a < b; ++a) {
        first_copies(points + a * n * channels, n, channels, rep, hash, order);
        tree(qt + a * n * n, n, rep.data(), w, start, adj);
        hop_bits(start, adj, n, radius, reach[a], scratch);
      }
    }
  }
  std::vector<double> row_value(b * n);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> mask(n);
    RowKnn<T> knn(n, k);
#pragma omp for schedule(static)
    for (i64 r = 0; r < b * n; ++r) {
      const i64 a = r / n, i = r % n;
      T* q = qs + r * n;
      T* t = qt + r * n;
      from_gram(q, sq_s + a * n, i, n);
      if (mst) {  // M's row from the ball's bits
        const std::uint64_t* bits = reach[a].data() + i * words;
        for (i64 j = 0; j < n; ++j) mask[j] = T((bits[j >> 6] >> (j & 63)) & 1);
      } else {
        from_gram(t, sq_t + a * n, i, n);
        const i64* nb = knn.nearest(t, n, i, k);
        for (i64 j = 0; j < n; ++j) mask[j] = T(0);
        for (i64 m = 0; m < k; ++m) mask[nb[m]] = T(1);
      }
      const T ball_t = lane_sum<T>(n, [&](i64 j) { return clamp0(t[j]) * mask[j]; });
      const T ball_s = lane_sum<T>(n, [&](i64 j) { return clamp0(q[j]) * mask[j]; });
      const T total_t = lane_sum<T>(n, [&](i64 j) { return j == i ? T(0) : clamp0(t[j]); });
      const T total_s = lane_sum<T>(n, [&](i64 j) { return j == i ? T(0) : clamp0(q[j]); });
      const T nac_t = ball_t / std::max(total_t, T(kNacEps)), nac_s = ball_s / std::max(total_s, T(kNacEps));
      const T diff = nac_s - nac_t;
      row_value[r] = double(diff) * double(diff);
      if (!need_grad) continue;
      // c_ij = g_i (M_ij - NAC_i [S_i >= 1e-12]) / max(S_i, 1e-12) [Q_ij >= 0], g_i = 2 (NAC_s - NAC_t) / n.
      const T live = total_s >= T(kNacEps) ? nac_s : T(0);
      const T coef = diff * T(2.0 / double(n)) / std::max(total_s, T(kNacEps));
      for (i64 j = 0; j < n; ++j) t[j] = q[j] < T(0) ? T(0) : (mask[j] - live) * coef;
      t[i] = T(0);
    }
  }
  std::vector<double> v;
  per_set(row_value, b, n, 1.0 / double(n), v);
  store(v, value);
  if (!need_grad) return;
  fold_scale(qs, qt, b, n, std::vector<double>(b, 0.0), threads);
}

}  // namespace

// The C entry points (ctypes): f32 and f64 twins. qs, qt: (b, n, n) contiguous Gram matrices of the student's and
// the instructor's points, sq_s, sq_t: (b, n) their squared norms; qs and qt are overwritten (by Q, then W and C'
// when need_grad). value: (b,) per-set values.
extern "C" {

int geokt_abi_version() { return 1; }

#define GEOKT_TWINS(name, params, args)                                                  \
  void geokt_##name##_f32(float* qs, float* qt, const float* sq_s, const float* sq_t, params, float* value, \
                          int threads) {                                                                     \
    name<float>(qs, qt, sq_s, sq_t, args, value, threads);                                                   \
  }                                                                                                          \
  void geokt_##name##_f64(double* qs, double* qt, const double* sq_s, const double* sq_t, params,           \
                          double* value, int threads) {                                                      \
    name<double>(qs, qt, sq_s, sq_t, args, value, threads);                                                  \
  }

#define P(...) __VA_ARGS__
GEOKT_TWINS(rank, P(i64 b, i64 n, i64 k, double temperature, int need_grad), P(b, n, k, temperature, need_grad))
GEOKT_TWINS(kl, P(i64 b, i64 n, double bandwidth, int need_grad), P(b, n, bandwidth, need_grad))
GEOKT_TWINS(distance, P(i64 b, i64 n, i64 k, int need_grad), P(b, n, k, need_grad))
GEOKT_TWINS(nac, P(i64 b, i64 n, int mst, i64 radius, i64 k, const void* points, i64 channels, int need_grad),
            P(b, n, mst, radius, k, static_cast<decltype(qs + 0)>(const_cast<void*>(points)), channels, need_grad))
#undef P
#undef GEOKT_TWINS

}  // extern "C"
