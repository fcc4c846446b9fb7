#include "coordinator/cpu_backend.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace federa {

// ---------------------------------------------------------------------------------------------
// ThreadPool

ThreadPool::ThreadPool(unsigned threads) {
  if (threads == 0) threads = 1;
  workers_.reserve(threads - 1);
  for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// About 20-50 us of spinning before a thread goes to sleep.
constexpr int kSpin = 4000;

}  // namespace

void ThreadPool::worker(unsigned index) {
  std::uint64_t seen = 0;
  for (;;) {
    bool ready = false;
    for (int i = 0; i < kSpin && !ready; ++i) {
      ready = generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_relaxed);
      if (!ready) cpu_relax();
    }
    if (!ready) {
      std::unique_lock<std::mutex> lock(mutex_);
      start_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    (*job_.load(std::memory_order_acquire))(index, size());
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(unsigned, unsigned)>& fn) {
  if (workers_.empty()) {
    fn(0, 1);
    return;
  }
  std::lock_guard<std::mutex> turn(run_mutex_);
  job_.store(&fn, std::memory_order_release);
  pending_.store(static_cast<unsigned>(workers_.size()), std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  start_cv_.notify_all();
  fn(0, size());
  for (int i = 0; i < kSpin && pending_.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return pending_.load() == 0; });
  }
}

namespace {

// Below this many elements, waking the workers costs more than the loop itself.
constexpr std::size_t kSerialBelow = 1 << 15;

struct Range {
  std::size_t begin, end;
};

Range thread_range(std::size_t n, unsigned t, unsigned nt) {
  std::size_t chunk = (n + nt - 1) / nt;
  chunk = (chunk + 15) / 16 * 16;
  std::size_t b = std::min(n, chunk * t);
  return {b, std::min(n, b + chunk)};
}

}  // namespace

std::size_t ThreadPool::chunk_for(std::size_t n) const {
  // ~8 chunks per thread, each between 64 KB and 1 MB of floats.
  std::size_t c = n / (8 * static_cast<std::size_t>(size()));
  c = std::clamp<std::size_t>(c, std::size_t{1} << 14, std::size_t{1} << 18);
  return (c + 15) / 16 * 16;
}

void ThreadPool::dynamic_for(
    std::size_t n, std::size_t chunk,
    const std::function<void(unsigned, std::size_t, std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  chunk = std::max<std::size_t>(16, (chunk + 15) / 16 * 16);
  const std::size_t chunks = (n + chunk - 1) / chunk;
  if (workers_.empty() || chunks == 1) {
    for (std::size_t c = 0; c < chunks; ++c) fn(0, c, c * chunk, std::min(n, (c + 1) * chunk));
    return;
  }
  std::atomic<std::size_t> next{0};
  run([&](unsigned t, unsigned) {
    for (;;) {
      const std::size_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      fn(t, c, c * chunk, std::min(n, (c + 1) * chunk));
    }
  });
}

void ThreadPool::parallel_for(std::size_t n,
                              const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  if (n < kSerialBelow || workers_.empty()) {
    fn(0, n);
    return;
  }
  dynamic_for(n, chunk_for(n), [&](unsigned, std::size_t, std::size_t b, std::size_t e) { fn(b, e); });
}

// ---------------------------------------------------------------------------------------------
// Kernels: plain loops that GCC/Clang vectorise (-fopenmp-simd lets the reductions vectorise
// without -ffast-math). Squares are summed in double so that no finite float can overflow them:
// a non-finite sum therefore means a non-finite input.

namespace {

// Eight independent partial sums: a single running sum would make every add wait for the
// previous one (latency-bound at ~2 cycles per element); eight lanes keep the adders busy.
constexpr std::size_t kLanes = 8;

double sum_sq(const float* x, std::size_t n) {
  double lanes[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t j = 0; j < kLanes; ++j) {
      double v = x[i + j];
      lanes[j] += v * v;
    }
  double s = 0.0;
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  for (double l : lanes) s += l;
  return s;
}

// The fused pass's check: float lanes do half the work of double ones, which matters when two
// cores must keep up with memory. A float sum that overflows is recomputed in double, so a large
// but finite value is never mistaken for Inf. (The norm is then exact to ~1e-6 relative, plenty
// for a bound; clipping uses the double sum_sq.)
double sum_sq_fast(const float* x, std::size_t n) {
  constexpr std::size_t kF = 16;
  float lanes[kF] = {};
  std::size_t i = 0;
  for (; i + kF <= n; i += kF)
    for (std::size_t j = 0; j < kF; ++j) lanes[j] += x[i + j] * x[i + j];
  double s = 0.0;
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  for (float l : lanes) s += l;
  return std::isfinite(s) ? s : sum_sq(x, n);
}

// Squared distance of two short (one block) float vectors: float differences in 16 lanes, which
// is exact to ~1e-6 relative over a block; blocks are summed in double by the caller.
double sum_sq_diff(const float* a, const float* b, std::size_t n) {
  constexpr std::size_t kF = 16;
  float lanes[kF] = {};
  std::size_t i = 0;
  for (; i + kF <= n; i += kF)
    for (std::size_t j = 0; j < kF; ++j) {
      float d = a[i + j] - b[i + j];
      lanes[j] += d * d;
    }
  double s = 0.0;
  for (; i < n; ++i) {
    double d = static_cast<double>(a[i]) - b[i];
    s += d * d;
  }
  for (float l : lanes) s += l;
  return s;
}

double sum_sq_delta(const float* x, const float* ref, std::size_t n) {
  double lanes[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t j = 0; j < kLanes; ++j) {
      double v = static_cast<double>(x[i + j]) - ref[i + j];
      lanes[j] += v * v;
    }
  double s = 0.0;
  for (; i < n; ++i) {
    double v = static_cast<double>(x[i]) - ref[i];
    s += v * v;
  }
  for (double l : lanes) s += l;
  return s;
}

void axpy(float* __restrict acc, const float* __restrict x, float w, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) acc[i] += w * x[i];
}

// acc = w * x: the first update of a round initialises the accumulator, which saves the pass
// that zeroing it would cost.
void scal(float* __restrict acc, const float* __restrict x, float w, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) acc[i] = w * x[i];
}

void scal_delta(float* __restrict acc, const float* __restrict x, const float* __restrict ref,
                float w, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) acc[i] = w * (x[i] - ref[i]);
}

void axpy_delta(float* __restrict acc, const float* __restrict x, const float* __restrict ref,
                float w, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) acc[i] += w * (x[i] - ref[i]);
}

// Block size of the fused check-then-accumulate pass: small enough that the block is still in L1
// when it is accumulated, so the update is read from memory once.
constexpr std::size_t kBlock = 2048;

std::string size_error(std::size_t got, std::size_t want) {
  return "update has " + std::to_string(got) + " values, the model has " + std::to_string(want);
}

const char* kNonFinite = "update has non-finite values (NaN or Inf)";

// Pass 1 of the checked paths: the L2 norm of x (or x - ref), in parallel. Partial sums are
// kept per chunk and added in chunk order, so the norm (and a clip factor made from it) does not
// depend on which thread took which chunk.
double parallel_norm(ThreadPool& pool, std::span<const float> x, std::span<const float> ref) {
  const std::size_t n = x.size();
  const std::size_t chunk = n < kSerialBelow ? std::max<std::size_t>(n, 16) : pool.chunk_for(n);
  std::vector<double> partial((n + chunk - 1) / chunk, 0.0);
  pool.dynamic_for(n, chunk, [&](unsigned, std::size_t c, std::size_t b, std::size_t e) {
    partial[c] = ref.empty() ? sum_sq(x.data() + b, e - b)
                             : sum_sq_delta(x.data() + b, ref.data() + b, e - b);
  });
  double s = 0.0;
  for (double p : partial) s += p;
  return std::sqrt(s);
}

// Validates `options` against a norm; returns the clip scale or an Error.
Result<double> check_norm(double norm, const AddOptions& options) {
  if (!std::isfinite(norm)) return make_error(kNonFinite);
  if (options.max_norm > 0.0 && norm > options.max_norm)
    return make_error("update L2 norm " + std::to_string(norm) + " exceeds the bound " +
                      std::to_string(options.max_norm));
  if (options.clip_norm > 0.0 && norm > options.clip_norm) return options.clip_norm / norm;
  return 1.0;
}

// ---------------------------------------------------------------------------------------------

class CpuWeightedSum final : public WeightedSum {
 public:
  CpuWeightedSum(ThreadPool& pool, std::size_t n) : pool_(pool), acc_(n) {}
  std::size_t size() const override { return acc_.size(); }

  // Lazy: the next add stores instead of adding (and read() of an empty sum gives zeros).
  Status reset() override {
    empty_ = true;
    return {};
  }

  Result<AddReport> add(std::span<const float> x, float weight,
                        const AddOptions& options) override {
    if (x.size() != acc_.size()) return make_error(size_error(x.size(), acc_.size()));
    if (!options.reference.empty() && options.reference.size() != acc_.size())
      return make_error("reference has the wrong size");
    if (!std::isfinite(weight)) return make_error("update weight is not finite");
    if (options.reference.empty() && options.max_norm <= 0.0 && options.clip_norm <= 0.0)
      return add_fused(x, weight);
    // Checked path: the norm must be known before anything is added (bound, clip factor).
    double norm = parallel_norm(pool_, x, options.reference);
    Result<double> scale = check_norm(norm, options);
    if (!scale) return scale.error();
    const float w = static_cast<float>(weight * scale.value());
    const bool first = empty_;
    pool_.parallel_for(acc_.size(), [&](std::size_t b, std::size_t e) {
      float* a = acc_.data() + b;
      if (options.reference.empty())
        first ? scal(a, x.data() + b, w, e - b) : axpy(a, x.data() + b, w, e - b);
      else if (first)
        scal_delta(a, x.data() + b, options.reference.data() + b, w, e - b);
      else
        axpy_delta(a, x.data() + b, options.reference.data() + b, w, e - b);
    });
    empty_ = false;
    return AddReport{norm, scale.value()};
  }

  Status read(std::span<float> out, float scale) override {
    if (out.size() != acc_.size()) return make_error(size_error(out.size(), acc_.size()));
    if (empty_) {
      std::fill(out.begin(), out.end(), 0.0f);
      return {};
    }
    pool_.parallel_for(acc_.size(), [&](std::size_t b, std::size_t e) {
      const float* a = acc_.data();
      float* o = out.data();
#pragma omp simd
      for (std::size_t i = b; i < e; ++i) o[i] = a[i] * scale;
    });
    return {};
  }

  Status finalize(std::span<const float> x_t, bool changes, float scale, const ServerStep& step,
                  std::span<float> global) override {
    const std::size_t n = acc_.size();
    if (global.size() != n) return make_error(size_error(global.size(), n));
    const bool need_xt = changes || step.kind != step::kReplace;
    if (need_xt && x_t.size() != n) return make_error("finalize: the round's starting model is missing");
    if (step.kind != step::kReplace) {
      if (m_.size() != n) m_.assign(n, 0.0f);
      if (v_.size() != n) v_.assign(n, 0.0f);
    }
    if (empty_) std::fill(acc_.begin(), acc_.end(), 0.0f);
    empty_ = false;
    pool_.parallel_for(n, [&](std::size_t b, std::size_t e) {
      const float* a = acc_.data();
      float* g = global.data();
      if (step.kind == step::kReplace && !changes) {
#pragma omp simd
        for (std::size_t i = b; i < e; ++i) g[i] = a[i] * scale;
        return;
      }
      for (std::size_t i = b; i < e; ++i) {
        float xt = x_t[i];
        float avg = a[i] * scale + (changes ? xt : 0.0f);
        if (step.kind == step::kReplace)
          g[i] = avg;
        else
          g[i] = step::apply(step, xt, avg, m_[i], v_[i]);
      }
    });
    return {};
  }

  Status optimizer_state(std::vector<float>& m, std::vector<float>& v) override {
    m = m_;
    v = v_;
    return {};
  }

  Status set_optimizer_state(std::span<const float> m, std::span<const float> v) override {
    const std::size_t n = acc_.size();
    if ((!m.empty() && m.size() != n) || (!v.empty() && v.size() != n))
      return make_error("saved optimiser state has " + std::to_string(std::max(m.size(), v.size())) +
                        " values, the model has " + std::to_string(n));
    m_.assign(m.begin(), m.end());
    v_.assign(v.begin(), v.end());
    return {};
  }

 private:
  // One pass: each thread checks a block (sum of squares, finiteness) while it is in L1, then adds
  // it. A non-finite block stops every thread; what was already added is subtracted back.
  Result<AddReport> add_fused(std::span<const float> x, float w) {
    const std::size_t n = acc_.size();
    const std::size_t chunk = n < kSerialBelow ? std::max<std::size_t>(n, 16) : pool_.chunk_for(n);
    const std::size_t chunks = (n + chunk - 1) / chunk;
    std::vector<double> partial(chunks, 0.0);
    std::vector<std::size_t> reached(chunks, 0);  // end of the prefix of each chunk added so far
    std::atomic<bool> bad{false};
    const bool first = empty_;
    pool_.dynamic_for(n, chunk, [&](unsigned, std::size_t c, std::size_t b, std::size_t e) {
      std::size_t i = b;
      double s = 0.0;
      while (i < e && !bad.load(std::memory_order_relaxed)) {
        std::size_t len = std::min(kBlock, e - i);
        double bs = sum_sq_fast(x.data() + i, len);
        if (!std::isfinite(bs)) {
          bad.store(true, std::memory_order_relaxed);
          break;
        }
        if (first)
          scal(acc_.data() + i, x.data() + i, w, len);
        else
          axpy(acc_.data() + i, x.data() + i, w, len);
        s += bs;
        i += len;
      }
      partial[c] = s;
      reached[c] = i;
    });
    if (bad.load()) {
      if (first) return make_error(kNonFinite);  // still empty: what was stored is ignored
      pool_.dynamic_for(n, chunk, [&](unsigned, std::size_t c, std::size_t b, std::size_t) {
        if (reached[c] > b) axpy(acc_.data() + b, x.data() + b, -w, reached[c] - b);
      });
      return make_error(kNonFinite);
    }
    double s = 0.0;
    for (double p : partial) s += p;
    empty_ = false;
    return AddReport{std::sqrt(s), 1.0};
  }

  ThreadPool& pool_;
  std::vector<float> acc_;
  std::vector<float> m_, v_;  // server optimiser state (v_ alone for FedAvgM)
  bool empty_ = true;
};

// ---------------------------------------------------------------------------------------------

class CpuUpdateSet final : public UpdateSet {
 public:
  CpuUpdateSet(ThreadPool& pool, std::size_t n) : pool_(pool), n_(n) {}
  std::size_t size() const override { return n_; }
  std::size_t count() const override { return rows_.size(); }
  Status clear() override {
    rows_.clear();
    return {};
  }

  Result<AddReport> push(std::span<const float> x, const AddOptions& options) override {
    if (x.size() != n_) return make_error(size_error(x.size(), n_));
    if (!options.reference.empty() && options.reference.size() != n_)
      return make_error("reference has the wrong size");
    double norm = parallel_norm(pool_, x, options.reference);
    Result<double> scale = check_norm(norm, options);
    if (!scale) return scale.error();
    std::vector<float> row(n_);
    const float s = static_cast<float>(scale.value());
    pool_.parallel_for(n_, [&](std::size_t b, std::size_t e) {
      if (options.reference.empty() && s == 1.0f) {
        std::memcpy(row.data() + b, x.data() + b, (e - b) * sizeof(float));
      } else {
        const float* ref = options.reference.empty() ? nullptr : options.reference.data();
        for (std::size_t i = b; i < e; ++i) row[i] = s * (x[i] - (ref ? ref[i] : 0.0f));
      }
    });
    rows_.push_back(std::move(row));
    return AddReport{norm, scale.value()};
  }

  Status median(std::span<float> out) override {
    if (Status st = check_out(out); !st) return st;
    const std::size_t k = rows_.size();
    const std::vector<const float*> ptr = row_pointers();
    pool_.parallel_for(n_, [&](std::size_t b, std::size_t e) {
      std::vector<float> v(k);
      for (std::size_t i = b; i < e; ++i) {
        for (std::size_t j = 0; j < k; ++j) v[j] = ptr[j][i];
        auto mid = v.begin() + k / 2;
        std::nth_element(v.begin(), mid, v.end());
        float hi = *mid;
        if (k % 2 == 1) {
          out[i] = hi;
        } else {
          float lo = *std::max_element(v.begin(), mid);
          out[i] = static_cast<float>((static_cast<double>(lo) + hi) * 0.5);
        }
      }
    });
    return {};
  }

  Status trimmed_mean(std::size_t trim, std::span<float> out) override {
    if (Status st = check_out(out); !st) return st;
    const std::size_t k = rows_.size();
    if (2 * trim >= k)
      return make_error("trimmed mean: trimming " + std::to_string(trim) + " from each end of " +
                        std::to_string(k) + " updates leaves nothing");
    const std::vector<const float*> ptr = row_pointers();
    pool_.parallel_for(n_, [&](std::size_t b, std::size_t e) {
      std::vector<float> v(k);
      for (std::size_t i = b; i < e; ++i) {
        for (std::size_t j = 0; j < k; ++j) v[j] = ptr[j][i];
        std::sort(v.begin(), v.end());
        double s = 0.0;
        for (std::size_t j = trim; j < k - trim; ++j) s += v[j];
        out[i] = static_cast<float>(s / static_cast<double>(k - 2 * trim));
      }
    });
    return {};
  }

  Result<std::vector<double>> pairwise_sq_distances() override {
    const std::size_t k = rows_.size();
    std::vector<double> d(k * k, 0.0);
    if (k < 2) return d;
    // Each thread covers a range of coordinates for all pairs, in blocks that keep k rows of the
    // block in L2; partial matrices are added at the end.
    const unsigned nt = pool_.size();
    std::vector<std::vector<double>> partial(nt, std::vector<double>(k * k, 0.0));
    pool_.run([&](unsigned t, unsigned n_threads) {
      Range r = thread_range(n_, t, n_threads);
      auto& p = partial[t];
      for (std::size_t b = r.begin; b < r.end; b += kBlock) {
        std::size_t len = std::min(kBlock, r.end - b);
        for (std::size_t i = 0; i < k; ++i) {
          const float* a = rows_[i].data() + b;
          for (std::size_t j = i + 1; j < k; ++j) {
            const float* c = rows_[j].data() + b;
            p[i * k + j] += sum_sq_diff(a, c, len);
          }
        }
      }
    });
    for (std::size_t i = 0; i < k; ++i)
      for (std::size_t j = i + 1; j < k; ++j) {
        double s = 0.0;
        for (auto& p : partial) s += p[i * k + j];
        d[i * k + j] = d[j * k + i] = s;
      }
    return d;
  }

  Status weighted_mean(std::span<const std::size_t> rows, std::span<const float> weights,
                       std::span<float> out) override {
    if (rows_.empty()) return make_error("no updates kept");
    if (!out.empty() && out.size() != n_) return make_error(size_error(out.size(), n_));
    if (rows.empty() || rows.size() != weights.size())
      return make_error("weighted mean: rows and weights must be non-empty and of equal length");
    double total = 0.0;
    for (std::size_t j = 0; j < rows.size(); ++j) {
      if (rows[j] >= rows_.size()) return make_error("weighted mean: row out of range");
      total += weights[j];
    }
    if (!(total > 0.0)) return make_error("weighted mean: weights sum to zero");
    const float inv = static_cast<float>(1.0 / total);
    float* dst = out.data();
    if (out.empty()) {  // result kept on the backend (benchmarks), as the CUDA backend does
      scratch_.resize(n_);
      dst = scratch_.data();
    }
    std::vector<const float*> src(rows.size());
    for (std::size_t j = 0; j < rows.size(); ++j) src[j] = rows_[rows[j]].data();
    // Blocked so that the output block stays in L2 while every row streams past it once; four
    // rows per sweep over the block, so the block is read and written a quarter as often.
    constexpr std::size_t kOutBlock = 8192;
    pool_.parallel_for(n_, [&](std::size_t b, std::size_t e) {
      for (std::size_t s = b; s < e; s += kOutBlock) {
        const std::size_t len = std::min(kOutBlock, e - s);
        float* __restrict o = dst + s;
        std::memset(o, 0, len * sizeof(float));
        std::size_t j = 0;
        for (; j + 4 <= src.size(); j += 4) {
          const float *r0 = src[j] + s, *r1 = src[j + 1] + s, *r2 = src[j + 2] + s, *r3 = src[j + 3] + s;
          const float w0 = weights[j], w1 = weights[j + 1], w2 = weights[j + 2], w3 = weights[j + 3];
#pragma omp simd
          for (std::size_t q = 0; q < len; ++q) o[q] += w0 * r0[q] + w1 * r1[q] + w2 * r2[q] + w3 * r3[q];
        }
        for (; j < src.size(); ++j) axpy(o, src[j] + s, weights[j], len);
#pragma omp simd
        for (std::size_t q = 0; q < len; ++q) o[q] *= inv;
      }
    });
    return {};
  }

 private:
  // Plain pointers, so the per-coordinate gathers need no reload of each vector's data pointer
  // (stores to `out` could alias it as far as the compiler knows).
  std::vector<const float*> row_pointers() const {
    std::vector<const float*> p;
    for (const auto& r : rows_) p.push_back(r.data());
    return p;
  }

  Status check_out(std::span<float> out) const {
    if (rows_.empty()) return make_error("no updates kept");
    if (out.size() != n_) return make_error(size_error(out.size(), n_));
    return {};
  }

  ThreadPool& pool_;
  std::size_t n_;
  std::vector<std::vector<float>> rows_;
  std::vector<float> scratch_;
};

// ---------------------------------------------------------------------------------------------

class CpuU32Sum final : public U32Sum {
 public:
  CpuU32Sum(ThreadPool& pool, std::size_t n) : pool_(pool), acc_(n, 0u) {}
  std::size_t size() const override { return acc_.size(); }
  Status reset() override {
    std::fill(acc_.begin(), acc_.end(), 0u);
    return {};
  }
  Status add(std::span<const std::uint32_t> x) override {
    if (x.size() != acc_.size()) return make_error(size_error(x.size(), acc_.size()));
    pool_.parallel_for(acc_.size(), [&](std::size_t b, std::size_t e) {
      std::uint32_t* a = acc_.data();
      const std::uint32_t* v = x.data();
#pragma omp simd
      for (std::size_t i = b; i < e; ++i) a[i] += v[i];  // unsigned: wraps mod 2^32
    });
    return {};
  }
  Status read(std::span<std::uint32_t> out) override {
    if (out.size() != acc_.size()) return make_error(size_error(out.size(), acc_.size()));
    std::copy(acc_.begin(), acc_.end(), out.begin());
    return {};
  }

 private:
  ThreadPool& pool_;
  std::vector<std::uint32_t> acc_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

CpuBackend::CpuBackend(unsigned threads)
    : pool_(threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads) {}

std::string CpuBackend::description() const {
  return "cpu, " + std::to_string(pool_.size()) + " threads";
}

Result<std::unique_ptr<WeightedSum>> CpuBackend::make_weighted_sum(std::size_t size) {
  return std::unique_ptr<WeightedSum>(std::make_unique<CpuWeightedSum>(pool_, size));
}

Result<std::unique_ptr<UpdateSet>> CpuBackend::make_update_set(std::size_t size) {
  return std::unique_ptr<UpdateSet>(std::make_unique<CpuUpdateSet>(pool_, size));
}

Result<std::unique_ptr<U32Sum>> CpuBackend::make_u32_sum(std::size_t size) {
  return std::unique_ptr<U32Sum>(std::make_unique<CpuU32Sum>(pool_, size));
}

Result<AggregationBackend::HostBuffer> CpuBackend::make_host_buffer(std::size_t size) {
  std::size_t bytes = (std::max<std::size_t>(size, 1) * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) return make_error("out of memory allocating " + std::to_string(bytes) + " bytes");
  return HostBuffer(p, [](float* q) { std::free(q); });
}

Result<BandwidthReport> CpuBackend::measure_bandwidth() {
  // STREAM's triad a = b + s c over arrays far larger than any cache, each thread on its own
  // range (first touched by that thread, so pages sit near it); best of several passes.
  const std::size_t n = std::size_t{1} << 25;  // 128 MB per array
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  pool_.parallel_for(n, [&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) {
      a[i] = 0.0f;
      b[i] = 1.0f;
      c[i] = 2.0f;
    }
  });
  double best = 1e30;
  for (int rep = 0; rep < 6; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    pool_.parallel_for(n, [&](std::size_t lo, std::size_t hi) {
      float* __restrict pa = a.get();
      const float* __restrict pb = b.get();
      const float* __restrict pc = c.get();
#pragma omp simd
      for (std::size_t i = lo; i < hi; ++i) pa[i] = pb[i] + 0.5f * pc[i];
    });
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0) best = std::min(best, s);  // the first pass warms up page tables
  }
  BandwidthReport r;
  r.memory_gbps = 3.0 * sizeof(float) * static_cast<double>(n) / best / 1e9;
  r.method = "STREAM triad, 3 x 128 MB float arrays, " + std::to_string(pool_.size()) + " threads";
  return r;
}

}  // namespace federa
