// The CUDA backend's weighted sum (the FedAvg family's accumulator) and mod-2^32 sum (secure
// aggregation), both resident on the device (contracts in coordinator/aggregation_backend.hpp).
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "coordinator/backend_checks.hpp"
#include "coordinator/cuda/kernels.cuh"
#include "coordinator/cuda/objects.hpp"

namespace federa::cuda {

namespace {

class CudaWeightedSum final : public WeightedSum {
 public:
  CudaWeightedSum(std::shared_ptr<Context> ctx, std::size_t n) : ctx_(std::move(ctx)), n_(n) {}
  Status init() {
    if (Status st = acc_.reserve(n_); !st) return st;
    if (Status st = x_.reserve(n_); !st) return st;
    return reset();
  }
  std::size_t size() const override { return n_; }

  Status reset() override {
    return ctx_->guarded<Status>([&]() -> Status {
      ref_.forget();  // a new round: a new starting model
      CUDA_CHECK(cudaMemsetAsync(acc_.get(), 0, n_ * sizeof(float), ctx_->main()));
      return {};
    });
  }

  // Never adds before the update is known valid. With the facts measured on receipt the bound
  // is checked on the host first and the update is folded in while it is copied (one pass);
  // otherwise it is copied to the device while its norm is measured there, checked, and then
  // added from device memory.
  Result<AddReport> add(std::span<const float> x, float w, const AddOptions& o) override {
    return ctx_->guarded<Result<AddReport>>([&]() -> Result<AddReport> {
      if (Status st = backend::check_add(x.size(), n_, w, o); !st) return st.error();
      Result<const float*> ref = ref_.get(*ctx_, o.reference);
      if (!ref) return ref.error();
      if (std::optional<double> known = backend::known_norm(o))
        return add_known(x, w, o, *ref, *known);
      Result<double> norm = upload_measured(*ctx_, x_.get(), x, *ref, scratch_);
      if (!norm) return norm.error();
      Result<double> scale = backend::check_norm(norm.value(), o);
      if (!scale) return scale.error();  // x_ is scratch: the accumulator was not touched
      CUDA_CHECK(axpy(acc_.get(), x_.get(), *ref, static_cast<float>(w * scale.value()), n_,
                      ctx_->main()));
      return AddReport{norm.value(), scale.value()};
    });
  }

  Status read(std::span<float> out, float scale) override {
    return ctx_->guarded<Status>([&]() -> Status {
      if (out.size() != n_) return backend::size_error(out.size(), n_);
      // x_ is free between adds (stream order keeps a pending axpy first): the output staging.
      CUDA_CHECK(scale_copy(x_.get(), acc_.get(), scale, n_, ctx_->main()));
      return ctx_->download(out.data(), x_.get(), n_ * sizeof(float));
    });
  }

  Status finalize(std::span<const float> x_t, bool changes, float scale, const ServerStep& step,
                  std::span<float> global) override {
    return ctx_->guarded<Status>([&]() -> Status {
      if (global.size() != n_) return backend::size_error(global.size(), n_);
      const bool need_xt = changes || step.kind != step::kReplace;
      if (need_xt && x_t.size() != n_)
        return make_error(ErrorCode::invalid_argument,
                          "finalize: the round's starting model is missing");
      Result<const float*> xt = ref_.get(*ctx_, need_xt ? x_t : std::span<const float>{});
      if (!xt) return xt.error();
      if (step.kind != step::kReplace)
        if (Status st = ensure_state(); !st) return st;
      CUDA_CHECK(finalize_step(x_.get(), acc_.get(), *xt, changes, scale, step, m_.get(), v_.get(),
                               n_, ctx_->main()));
      return ctx_->download(global.data(), x_.get(), n_ * sizeof(float));
    });
  }

  Status optimizer_state(std::vector<float>& m, std::vector<float>& v) override {
    return ctx_->guarded<Status>([&]() -> Status {
      m.clear();
      v.clear();
      if (!has_state_) return {};
      m.resize(n_);
      v.resize(n_);
      if (Status st = ctx_->download(m.data(), m_.get(), n_ * sizeof(float)); !st) return st;
      return ctx_->download(v.data(), v_.get(), n_ * sizeof(float));
    });
  }

  Status set_optimizer_state(std::span<const float> m, std::span<const float> v) override {
    return ctx_->guarded<Status>([&]() -> Status {
      if ((!m.empty() && m.size() != n_) || (!v.empty() && v.size() != n_))
        return make_error(ErrorCode::invalid_argument,
                          "saved optimiser state has " +
                              std::to_string(std::max(m.size(), v.size())) +
                              " values, the model has " + std::to_string(n_));
      has_state_ = false;
      if (Status st = ensure_state(); !st) return st;
      for (auto [src, dst] : {std::pair{m, m_.get()}, std::pair{v, v_.get()}})
        if (!src.empty())
          if (Status st = ctx_->upload(dst, src.data(), n_ * sizeof(float), sizeof(float), {}); !st)
            return st;
      return ctx_->sync();
    });
  }

 private:
  Result<AddReport> add_known(std::span<const float> x, float w, const AddOptions& o,
                              const float* ref, double norm) {
    Result<double> scale = backend::check_norm(norm, o);
    if (!scale) return scale.error();  // rejected before a byte moved
    const float ws = static_cast<float>(w * scale.value());
    Status up = ctx_->upload(x_.get(), x.data(), n_ * sizeof(float), sizeof(float),
                             [&](std::size_t first, std::size_t count, cudaStream_t s) -> Status {
                               CUDA_CHECK(axpy(acc_.get() + first, x_.get() + first,
                                               ref ? ref + first : nullptr, ws, count, s));
                               return {};
                             });
    if (!up) return up.error();
    if (Status st = ctx_->sync(); !st) return st.error();  // the caller's span is free again
    return AddReport{norm, scale.value()};
  }

  // Allocates the optimiser state as zeros the first time a step needs it.
  Status ensure_state() {
    if (has_state_) return {};
    if (Status st = m_.reserve(n_); !st) return st;
    if (Status st = v_.reserve(n_); !st) return st;
    CUDA_CHECK(cudaMemsetAsync(m_.get(), 0, n_ * sizeof(float), ctx_->main()));
    CUDA_CHECK(cudaMemsetAsync(v_.get(), 0, n_ * sizeof(float), ctx_->main()));
    has_state_ = true;
    return {};
  }

  std::shared_ptr<Context> ctx_;
  std::size_t n_;
  DeviceArray<float> acc_, x_, m_, v_;
  ReferenceCache ref_;
  NormScratch scratch_;
  bool has_state_ = false;
};

class CudaU32Sum final : public U32Sum {
 public:
  CudaU32Sum(std::shared_ptr<Context> ctx, std::size_t n) : ctx_(std::move(ctx)), n_(n) {}
  Status init() {
    if (Status st = acc_.reserve(n_); !st) return st;
    if (Status st = x_.reserve(n_); !st) return st;
    return reset();
  }
  std::size_t size() const override { return n_; }
  Status reset() override {
    return ctx_->guarded<Status>([&]() -> Status {
      CUDA_CHECK(cudaMemsetAsync(acc_.get(), 0, n_ * sizeof(std::uint32_t), ctx_->main()));
      return {};
    });
  }
  Status add(std::span<const std::uint32_t> x) override {
    return ctx_->guarded<Status>([&]() -> Status {
      if (x.size() != n_) return backend::size_error(x.size(), n_);
      Status up =
          ctx_->upload(x_.get(), x.data(), n_ * 4, 4,
                       [&](std::size_t first, std::size_t count, cudaStream_t s) -> Status {
                         CUDA_CHECK(add_u32(acc_.get() + first, x_.get() + first, count, s));
                         return {};
                       });
      if (!up) return up;
      return ctx_->sync();
    });
  }
  Status read(std::span<std::uint32_t> out) override {
    return ctx_->guarded<Status>([&]() -> Status {
      if (out.size() != n_) return backend::size_error(out.size(), n_);
      return ctx_->download(out.data(), acc_.get(), n_ * 4);
    });
  }

 private:
  std::shared_ptr<Context> ctx_;
  std::size_t n_;
  DeviceArray<std::uint32_t> acc_, x_;
};

}  // namespace

Result<std::unique_ptr<WeightedSum>> make_weighted_sum(std::shared_ptr<Context> ctx,
                                                       std::size_t n) {
  auto s = std::make_unique<CudaWeightedSum>(std::move(ctx), n);
  if (Status st = s->init(); !st) return st.error();
  return std::unique_ptr<WeightedSum>(std::move(s));
}

Result<std::unique_ptr<U32Sum>> make_u32_sum(std::shared_ptr<Context> ctx, std::size_t n) {
  auto s = std::make_unique<CudaU32Sum>(std::move(ctx), n);
  if (Status st = s->init(); !st) return st.error();
  return std::unique_ptr<U32Sum>(std::move(s));
}

}  // namespace federa::cuda
