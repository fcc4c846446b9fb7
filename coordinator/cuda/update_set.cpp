// The CUDA backend's UpdateSet: every update of a round kept on the device, one allocation per
// row (so growing never copies or doubles: K updates take K rows and no more), for median,
// trimmed mean and (multi-)Krum (contract in coordinator/aggregation_backend.hpp).
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/backend_checks.hpp"
#include "coordinator/cuda/kernels.cuh"
#include "coordinator/cuda/objects.hpp"

namespace federa::cuda {

namespace {

class CudaUpdateSet final : public UpdateSet {
 public:
  CudaUpdateSet(std::shared_ptr<Context> ctx, std::size_t n) : ctx_(std::move(ctx)), n_(n) {}
  std::size_t size() const override { return n_; }
  std::size_t count() const override { return count_; }
  // Rows stay allocated for the next round, which (same cohort size) needs as many again.
  Status clear() override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    count_ = 0;
    ref_.forget();
    return {};
  }

  Result<AddReport> push(std::span<const float> x, const AddOptions& o) override {
    return ctx_->guarded<Result<AddReport>>([&]() -> Result<AddReport> {
      if (Status st = backend::check_add(x.size(), n_, 1.0f, o); !st) return st.error();
      Result<const float*> ref = ref_.get(*ctx_, o.reference);
      if (!ref) return ref.error();
      const std::optional<double> known = backend::known_norm(o);
      if (known)  // reject before a byte moves
        if (Result<double> scale = backend::check_norm(*known, o); !scale) return scale.error();
      Result<float*> row = free_row();
      if (!row) return row.error();
      double norm = 0.0;
      if (known) {
        norm = *known;
        if (Status st = ctx_->upload(*row, x.data(), n_ * sizeof(float), sizeof(float), {}); !st)
          return st.error();
      } else {
        Result<double> measured = upload_measured(*ctx_, *row, x, *ref, scratch_);
        if (!measured) return measured.error();
        norm = measured.value();
      }
      Result<double> scale = backend::check_norm(norm, o);
      if (!scale) return scale.error();  // the row stays free for the next push
      if (*ref || scale.value() != 1.0)
        CUDA_CHECK(scale_delta(*row, *ref, static_cast<float>(scale.value()), n_, ctx_->main()));
      if (known)
        if (Status st = ctx_->sync(); !st) return st.error();  // a pinned span may still be read
      ++count_;
      return AddReport{norm, scale.value()};
    });
  }

  Status median(std::span<float> out) override { return robust(out, 0, true); }
  Status trimmed_mean(std::size_t trim, std::span<float> out) override {
    return robust(out, trim, false);
  }

  Result<std::vector<double>> pairwise_sq_distances() override {
    return ctx_->guarded<Result<std::vector<double>>>([&]() -> Result<std::vector<double>> {
      const std::size_t k = count_;
      std::vector<double> d(k * k, 0.0);
      if (k < 2) return d;
      if (k > kMaxDistanceRows)
        return make_error(ErrorCode::invalid_argument,
                          "pairwise distances on the GPU support at most " +
                              std::to_string(kMaxDistanceRows) + " updates, got " +
                              std::to_string(k) + " (use --device cpu)");
      std::vector<std::uint32_t> pi, pj;
      for (std::uint32_t i = 0; i < k; ++i)
        for (std::uint32_t j = i + 1; j < k; ++j) {
          pi.push_back(i);
          pj.push_back(j);
        }
      const std::size_t pairs = pi.size();
      const std::size_t batch = std::min(pairs, kMaxPairsPerLaunch);
      if (Status st = upload_row_table(count_); !st) return st.error();
      if (Status st = idx_.reserve(2 * pairs); !st) return st.error();
      if (Status st = dist_.reserve(pairs); !st) return st.error();
      if (Status st = partials_.reserve(kMaxDistanceBlocks * batch); !st) return st.error();
      cudaStream_t s = ctx_->main();
      CUDA_CHECK(cudaMemcpyAsync(idx_.get(), pi.data(), pairs * 4, cudaMemcpyHostToDevice, s));
      CUDA_CHECK(
          cudaMemcpyAsync(idx_.get() + pairs, pj.data(), pairs * 4, cudaMemcpyHostToDevice, s));
      for (std::size_t p0 = 0; p0 < pairs; p0 += kMaxPairsPerLaunch) {
        const std::size_t len = std::min(kMaxPairsPerLaunch, pairs - p0);
        unsigned blocks = 0;
        CUDA_CHECK(pair_sq_distances(partials_.get(), &blocks, table_.get(), k, n_, idx_.get() + p0,
                                     idx_.get() + pairs + p0, len, s));
        if (blocks == 0)
          CUDA_CHECK(cudaMemsetAsync(dist_.get() + p0, 0, len * sizeof(double), s));
        else
          CUDA_CHECK(pair_sq_distances_reduce(dist_.get() + p0, partials_.get(), blocks, len, s));
      }
      std::vector<double> flat(pairs);
      if (Status st = ctx_->download(flat.data(), dist_.get(), pairs * sizeof(double)); !st)
        return st.error();
      for (std::size_t p = 0; p < pairs; ++p) d[pi[p] * k + pj[p]] = d[pj[p] * k + pi[p]] = flat[p];
      return d;
    });
  }

  Status weighted_mean(std::span<const std::size_t> rows, std::span<const float> weights,
                       std::span<float> out) override {
    return ctx_->guarded<Status>([&]() -> Status {
      Result<double> total = backend::check_weighted_mean(rows, weights, count_, out.size(), n_);
      if (!total) return total.error();
      std::vector<const float*> chosen(rows.size());
      for (std::size_t j = 0; j < rows.size(); ++j) chosen[j] = rows_[rows[j]]->get();
      if (Status st = out_.reserve(n_); !st) return st;
      if (Status st = table_.reserve(chosen.size()); !st) return st;
      if (Status st = w_.reserve(weights.size()); !st) return st;
      cudaStream_t s = ctx_->main();
      CUDA_CHECK(cudaMemcpyAsync(table_.get(), chosen.data(), chosen.size() * sizeof(const float*),
                                 cudaMemcpyHostToDevice, s));
      CUDA_CHECK(
          cudaMemcpyAsync(w_.get(), weights.data(), weights.size() * 4, cudaMemcpyHostToDevice, s));
      // Events around the kernel alone: the benchmark's device-resident figure.
      CUDA_CHECK(cudaEventRecord(ctx_->timer(0), s));
      CUDA_CHECK(weighted_rows(out_.get(), table_.get(), n_, w_.get(), rows.size(),
                               static_cast<float>(1.0 / total.value()), s));
      CUDA_CHECK(cudaEventRecord(ctx_->timer(1), s));
      if (!out.empty())
        if (Status st = ctx_->download(out.data(), out_.get(), n_ * sizeof(float)); !st) return st;
      CUDA_CHECK(cudaEventSynchronize(ctx_->timer(1)));
      float ms = 0.0f;
      CUDA_CHECK(cudaEventElapsedTime(&ms, ctx_->timer(0), ctx_->timer(1)));
      last_ms_ = ms;
      return {};
    });
  }

  double last_reduction_ms() const override { return last_ms_; }

 private:
  // The next row to write: a kept allocation, or a new one (an Error, resource_exhausted, when
  // the device is full; the rows already kept are untouched).
  Result<float*> free_row() {
    if (count_ == rows_.size()) {
      auto row = std::make_unique<DeviceArray<float>>();
      if (Status st = row->reserve(n_); !st)
        return make_error(st.code(), "keeping update " + std::to_string(count_ + 1) +
                                         " on the GPU: " + st.message());
      rows_.push_back(std::move(row));
    }
    return rows_[count_]->get();
  }

  // table_[j] = the device address of row j, j < k.
  Status upload_row_table(std::size_t k) {
    std::vector<const float*> p(k);
    for (std::size_t j = 0; j < k; ++j) p[j] = rows_[j]->get();
    if (Status st = table_.reserve(k); !st) return st;
    CUDA_CHECK(cudaMemcpyAsync(table_.get(), p.data(), k * sizeof(const float*),
                               cudaMemcpyHostToDevice, ctx_->main()));
    return {};
  }

  Status robust(std::span<float> out, std::size_t trim, bool median) {
    return ctx_->guarded<Status>([&]() -> Status {
      if (Status st = backend::check_robust(count_, out.size(), n_, median ? 0 : trim); !st)
        return st;
      if (count_ > kMaxRobustRows)
        return make_error(ErrorCode::invalid_argument,
                          "median/trimmed mean on the GPU support at most " +
                              std::to_string(kMaxRobustRows) + " updates per round, got " +
                              std::to_string(count_) + " (use --device cpu)");
      if (Status st = out_.reserve(n_); !st) return st;
      if (Status st = upload_row_table(count_); !st) return st;
      CUDA_CHECK(robust_reduce(out_.get(), table_.get(), count_, n_, trim, median, ctx_->main()));
      return ctx_->download(out.data(), out_.get(), n_ * sizeof(float));
    });
  }

  std::shared_ptr<Context> ctx_;
  std::size_t n_;
  std::size_t count_ = 0;
  std::vector<std::unique_ptr<DeviceArray<float>>> rows_;  // the first count_ are this round's
  ReferenceCache ref_;
  NormScratch scratch_;
  DeviceArray<float> out_, w_;
  DeviceArray<const float*> table_;
  DeviceArray<std::uint32_t> idx_;
  DeviceArray<double> dist_, partials_;
  double last_ms_ = 0.0;
};

}  // namespace

Result<std::unique_ptr<UpdateSet>> make_update_set(std::shared_ptr<Context> ctx, std::size_t n) {
  return std::unique_ptr<UpdateSet>(std::make_unique<CudaUpdateSet>(std::move(ctx), n));
}

}  // namespace federa::cuda
