// Built-in networks. Parameters live in the caller's flat span and are viewed through Eigen maps
// with PyTorch's shapes and row-major order, so a safetensors file loads straight into PyTorch.
// Activations are row-major too; scratch buffers only ever grow, so after the first batch of a
// given size the training loop allocates nothing.
#include "common/nn.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace federa {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatMap = Eigen::Map<RowMat>;
using ConstMatMap = Eigen::Map<const RowMat>;
using VecMap = Eigen::Map<Eigen::VectorXf>;
using ConstVecMap = Eigen::Map<const Eigen::VectorXf>;
using RowVecMap = Eigen::Map<Eigen::RowVectorXf>;
using ConstRowVecMap = Eigen::Map<const Eigen::RowVectorXf>;

constexpr std::size_t kEvalBatch = 256;
constexpr std::size_t kMaxParameters = std::size_t{1} << 28;  // 1 GiB of floats

void grow(std::vector<float>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

// PyTorch's default for Linear and Conv2d: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
// Uniforms are built from raw 64-bit draws so the values do not depend on the standard library.
void init_uniform(std::span<float> p, std::size_t fan_in, std::mt19937_64& rng) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  for (auto& v : p) {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0, 1)
    v = static_cast<float>((2.0 * u - 1.0) * bound);
  }
}

struct Dense {
  std::size_t in = 0, out = 0;
  std::size_t w = 0, b = 0;  // offsets into the parameter span
};

// A stack of fully connected layers with ReLU between them; the last layer gives the logits.
class DenseStack {
 public:
  DenseStack() = default;
  explicit DenseStack(std::vector<Dense> layers) : layers_(std::move(layers)) {
    acts_.resize(layers_.size());
  }

  const std::vector<Dense>& layers() const { return layers_; }

  const float* forward(std::span<const float> params, const float* x, std::size_t rows) {
    const float* in = x;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const Dense& d = layers_[l];
      grow(acts_[l], rows * d.out);
      ConstMatMap a(in, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(d.in));
      ConstMatMap w(params.data() + d.w, static_cast<Eigen::Index>(d.out),
                    static_cast<Eigen::Index>(d.in));
      ConstRowVecMap b(params.data() + d.b, static_cast<Eigen::Index>(d.out));
      MatMap z(acts_[l].data(), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(d.out));
      z.noalias() = a * w.transpose();
      z.rowwise() += b;
      if (l + 1 < layers_.size()) z = z.cwiseMax(0.0f);
      in = acts_[l].data();
    }
    return in;
  }

  // `dlogits` is d loss / d logits. Writes the layers' gradients into `grad` and, when `dx` is
  // not null, d loss / d input into it.
  void backward(std::span<const float> params, const float* x, std::size_t rows,
                const float* dlogits, std::span<float> grad, float* dx) {
    std::size_t widest = 0;
    for (const auto& d : layers_) widest = std::max(widest, std::max(d.in, d.out));
    grow(delta_a_, rows * widest);
    grow(delta_b_, rows * widest);
    const float* dout = dlogits;
    const auto rows_i = static_cast<Eigen::Index>(rows);
    for (std::size_t l = layers_.size(); l-- > 0;) {
      const Dense& d = layers_[l];
      const auto in_i = static_cast<Eigen::Index>(d.in), out_i = static_cast<Eigen::Index>(d.out);
      const float* in = l == 0 ? x : acts_[l - 1].data();
      ConstMatMap a(in, rows_i, in_i);
      ConstMatMap dz(dout, rows_i, out_i);
      MatMap gw(grad.data() + d.w, out_i, in_i);
      RowVecMap gb(grad.data() + d.b, out_i);
      gw.noalias() = dz.transpose() * a;
      gb = dz.colwise().sum();
      if (l == 0 && dx == nullptr) break;
      float* din = l == 0 ? dx : (dout == delta_a_.data() ? delta_b_.data() : delta_a_.data());
      ConstMatMap w(params.data() + d.w, out_i, in_i);
      MatMap da(din, rows_i, in_i);
      da.noalias() = dz * w;
      if (l > 0) da = (a.array() > 0.0f).select(da, 0.0f);  // ReLU: a > 0 exactly where z > 0
      dout = din;
    }
  }

 private:
  std::vector<Dense> layers_;
  std::vector<std::vector<float>> acts_;  // post-activation output of each layer
  std::vector<float> delta_a_, delta_b_;
};

class NetworkBase : public Network {
 public:
  using Network::loss_and_gradient;
  const ModelLayout& layout() const override { return layout_; }
  std::size_t input_features() const override { return in_; }
  int num_classes() const override { return regression_ ? 0 : classes_; }
  bool regression() const override { return regression_; }
  std::size_t last_batch_correct() const override { return correct_; }

  double loss_and_gradient(std::span<const float> params, const float* x, Targets targets,
                           std::size_t rows, std::span<float> grad) override {
    if ((regression_ ? targets.values : reinterpret_cast<const void*>(targets.classes)) == nullptr)
      return std::numeric_limits<double>::quiet_NaN();
    if (rows == 0) {
      std::fill(grad.begin(), grad.end(), 0.0f);
      correct_ = 0;
      return 0;
    }
    const float* out = forward(params, x, rows);
    grow(dlogits_, rows * static_cast<std::size_t>(classes_));
    std::size_t correct = 0;
    const double loss = regression_
                            ? squared_error(out, targets.values, rows, dlogits_.data(), nullptr)
                            : cross_entropy(out, targets.classes, rows, dlogits_.data(), &correct);
    correct_ = correct;
    backward(params, x, rows, dlogits_.data(), grad);
    return loss;
  }

  EvalResult evaluate(std::span<const float> params, const Dataset& data,
                      std::span<const std::size_t> indices) override {
    EvalResult r;
    const std::size_t n = indices.empty() ? data.rows : indices.size();
    const bool has_targets =
        regression_ ? data.targets.size() == data.rows : data.labels.size() == data.rows;
    if (n == 0 || data.features != in_ || !has_targets) return r;
    grow(batch_x_, kEvalBatch * in_);
    batch_y_.resize(kEvalBatch);
    batch_t_.resize(kEvalBatch);
    double loss_sum = 0;
    std::size_t correct = 0;
    RegressionSums sums;
    for (std::size_t start = 0; start < n; start += kEvalBatch) {
      const std::size_t rows = std::min(kEvalBatch, n - start);
      for (std::size_t i = 0; i < rows; ++i) {
        const std::size_t row = indices.empty() ? start + i : indices[start + i];
        std::copy_n(data.row(row), in_, batch_x_.data() + i * in_);
        if (regression_) {
          batch_t_[i] = data.targets[row];
        } else {
          batch_y_[i] = data.labels[row];
        }
      }
      const float* out = forward(params, batch_x_.data(), rows);
      std::size_t c = 0;
      loss_sum += (regression_ ? squared_error(out, batch_t_.data(), rows, nullptr, &sums)
                               : cross_entropy(out, batch_y_.data(), rows, nullptr, &c)) *
                  static_cast<double>(rows);
      correct += c;
    }
    const auto nd = static_cast<double>(n);
    r.examples = n;
    r.loss = loss_sum / nd;
    r.accuracy = regression_ ? 0.0 : static_cast<double>(correct) / nd;
    if (regression_) {
      r.rmse = std::sqrt(r.loss);
      r.mae = sums.abs_error / nd;
      r.sum_target = sums.target;
      r.sum_target_sq = sums.target_sq;
      const double sst = sums.target_sq - sums.target * sums.target / nd;
      r.r2 = sst > 0 ? 1.0 - loss_sum / sst : 0.0;
    }
    return r;
  }

 protected:
  virtual const float* forward(std::span<const float> params, const float* x, std::size_t rows) = 0;
  virtual void backward(std::span<const float> params, const float* x, std::size_t rows,
                        const float* dlogits, std::span<float> grad) = 0;

  struct RegressionSums {
    double abs_error = 0, target = 0, target_sq = 0;
  };

  // Mean of (prediction - target)^2; `dout` receives 2 (prediction - target) / rows.
  static double squared_error(const float* pred, const float* target, std::size_t rows, float* dout,
                              RegressionSums* sums) {
    double total = 0;
    const double scale = 2.0 / static_cast<double>(rows);
    for (std::size_t i = 0; i < rows; ++i) {
      const double e = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
      total += e * e;
      if (dout != nullptr) dout[i] = static_cast<float>(scale * e);
      if (sums != nullptr) {
        sums->abs_error += std::abs(e);
        sums->target += target[i];
        sums->target_sq += static_cast<double>(target[i]) * target[i];
      }
    }
    return total / static_cast<double>(rows);
  }

  // Mean cross-entropy through a max-shifted log-softmax, which cannot overflow. When `dlogits`
  // is given it receives (softmax - onehot) / rows.
  double cross_entropy(const float* logits, const std::int32_t* labels, std::size_t rows,
                       float* dlogits, std::size_t* correct) const {
    const auto c = static_cast<std::size_t>(classes_);
    double total = 0;
    std::size_t right = 0;
    const float inv_rows = 1.0f / static_cast<float>(rows);
    for (std::size_t i = 0; i < rows; ++i) {
      const float* z = logits + i * c;
      std::size_t best = 0;
      for (std::size_t k = 1; k < c; ++k) {
        if (z[k] > z[best]) best = k;
      }
      const float m = z[best];
      double sum = 0;
      for (std::size_t k = 0; k < c; ++k) sum += std::exp(static_cast<double>(z[k] - m));
      const auto y = static_cast<std::size_t>(labels[i]);
      const double lse = static_cast<double>(m) + std::log(sum);
      total += lse - static_cast<double>(z[y]);
      if (best == y) ++right;
      if (dlogits != nullptr) {
        float* g = dlogits + i * c;
        const double inv_sum = 1.0 / sum;
        for (std::size_t k = 0; k < c; ++k) {
          g[k] = static_cast<float>(std::exp(static_cast<double>(z[k] - m)) * inv_sum) * inv_rows;
        }
        g[y] -= inv_rows;
      }
    }
    *correct = right;
    return total / static_cast<double>(rows);
  }

  ModelLayout layout_;
  std::size_t in_ = 0;
  int classes_ = 0;  // outputs per row: 1 for a regression network
  bool regression_ = false;

 private:
  std::vector<float> dlogits_;
  std::vector<float> batch_x_;
  std::vector<std::int32_t> batch_y_;
  std::vector<float> batch_t_;
  std::size_t correct_ = 0;
};

// softmax:IN,C and linreg:IN are a single layer ("fc"); mlp:IN,H1,...,C has layers fc1..fcN.
// One output (linreg, mlp ending in 1) is a regression network.
class Mlp final : public NetworkBase {
 public:
  explicit Mlp(const std::vector<std::size_t>& dims) {
    std::vector<TensorSpec> specs;
    std::vector<Dense> layers;
    std::size_t offset = 0;
    const bool single = dims.size() == 2;
    for (std::size_t l = 0; l + 1 < dims.size(); ++l) {
      const std::string name = single ? "fc" : "fc" + std::to_string(l + 1);
      Dense d{dims[l], dims[l + 1], 0, 0};
      specs.push_back({name + ".weight", {d.out, d.in}});
      d.w = offset;
      offset += d.out * d.in;
      specs.push_back({name + ".bias", {d.out}});
      d.b = offset;
      offset += d.out;
      layers.push_back(d);
    }
    layout_ = ModelLayout(std::move(specs));
    in_ = dims.front();
    classes_ = static_cast<int>(dims.back());
    regression_ = dims.back() == 1;
    stack_ = DenseStack(std::move(layers));
  }

  void init(std::span<float> params, std::uint64_t seed) override {
    std::mt19937_64 rng(seed);
    for (const auto& d : stack_.layers()) {
      init_uniform(params.subspan(d.w, d.out * d.in), d.in, rng);
      init_uniform(params.subspan(d.b, d.out), d.in, rng);
    }
  }

 protected:
  const float* forward(std::span<const float> params, const float* x, std::size_t rows) override {
    return stack_.forward(params, x, rows);
  }
  void backward(std::span<const float> params, const float* x, std::size_t rows,
                const float* dlogits, std::span<float> grad) override {
    stack_.backward(params, x, rows, dlogits, grad, nullptr);
  }

 private:
  DenseStack stack_;
};

// LeNet-style CNN of NIID-Bench for 28x28 single-channel images. Feature maps are stored as
// [channels, batch * height * width] row-major so that each convolution is one GEMM against an
// im2col matrix [in * kh * kw, batch * oh * ow]; the flatten before fc1 uses PyTorch's
// (channel, y, x) order.
class FmnistCnn final : public NetworkBase {
  static constexpr std::size_t kH0 = 28, kK = 5;
  static constexpr std::size_t kC1 = 6, kH1 = kH0 - kK + 1, kP1 = kH1 / 2;   // 24 -> 12
  static constexpr std::size_t kC2 = 16, kH2 = kP1 - kK + 1, kP2 = kH2 / 2;  // 8 -> 4
  static constexpr std::size_t kK1 = 1 * kK * kK, kK2 = kC1 * kK * kK;
  static constexpr std::size_t kFlat = kC2 * kP2 * kP2;  // 256

 public:
  FmnistCnn() {
    std::vector<TensorSpec> specs = {
        {"conv1.weight", {kC1, 1, kK, kK}},
        {"conv1.bias", {kC1}},
        {"conv2.weight", {kC2, kC1, kK, kK}},
        {"conv2.bias", {kC2}},
        {"fc1.weight", {120, kFlat}},
        {"fc1.bias", {120}},
        {"fc2.weight", {84, 120}},
        {"fc2.bias", {84}},
        {"fc3.weight", {10, 84}},
        {"fc3.bias", {10}},
    };
    layout_ = ModelLayout(specs);
    w1_ = layout_.offset(0);
    b1_ = layout_.offset(1);
    w2_ = layout_.offset(2);
    b2_ = layout_.offset(3);
    head_ = DenseStack({{kFlat, 120, layout_.offset(4), layout_.offset(5)},
                        {120, 84, layout_.offset(6), layout_.offset(7)},
                        {84, 10, layout_.offset(8), layout_.offset(9)}});
    in_ = kH0 * kH0;
    classes_ = 10;
  }

  void init(std::span<float> params, std::uint64_t seed) override {
    std::mt19937_64 rng(seed);
    init_uniform(params.subspan(w1_, kC1 * kK1), kK1, rng);
    init_uniform(params.subspan(b1_, kC1), kK1, rng);
    init_uniform(params.subspan(w2_, kC2 * kK2), kK2, rng);
    init_uniform(params.subspan(b2_, kC2), kK2, rng);
    for (const auto& d : head_.layers()) {
      init_uniform(params.subspan(d.w, d.out * d.in), d.in, rng);
      init_uniform(params.subspan(d.b, d.out), d.in, rng);
    }
  }

 protected:
  const float* forward(std::span<const float> params, const float* x, std::size_t rows) override {
    const std::size_t n1 = rows * kH1 * kH1, n2 = rows * kH2 * kH2;
    grow(cols1_, kK1 * n1);
    grow(a1_, kC1 * n1);
    grow(p1_, kC1 * rows * kP1 * kP1);
    arg1_.resize(std::max(arg1_.size(), kC1 * rows * kP1 * kP1));
    grow(cols2_, kK2 * n2);
    grow(a2_, kC2 * n2);
    grow(p2_, kC2 * rows * kP2 * kP2);
    arg2_.resize(std::max(arg2_.size(), kC2 * rows * kP2 * kP2));
    grow(flat_, rows * kFlat);

    // x is [rows, 1, 28, 28]: the single input channel, one image after another.
    im2col(x, 1, rows, kH0, kH0 * kH0, rows * kH0 * kH0, cols1_.data());
    conv(params, w1_, b1_, kC1, kK1, cols1_.data(), n1, a1_.data());
    maxpool(a1_.data(), kC1, rows, kH1, p1_.data(), arg1_.data());
    im2col(p1_.data(), kC1, rows, kP1, kP1 * kP1, rows * kP1 * kP1, cols2_.data());
    conv(params, w2_, b2_, kC2, kK2, cols2_.data(), n2, a2_.data());
    maxpool(a2_.data(), kC2, rows, kH2, p2_.data(), arg2_.data());
    for (std::size_t c = 0; c < kC2; ++c) {
      for (std::size_t b = 0; b < rows; ++b) {
        std::copy_n(p2_.data() + c * rows * kP2 * kP2 + b * kP2 * kP2, kP2 * kP2,
                    flat_.data() + b * kFlat + c * kP2 * kP2);
      }
    }
    return head_.forward(params, flat_.data(), rows);
  }

  void backward(std::span<const float> params, const float* x, std::size_t rows,
                const float* dlogits, std::span<float> grad) override {
    const std::size_t n1 = rows * kH1 * kH1, n2 = rows * kH2 * kH2;
    grow(dflat_, rows * kFlat);
    head_.backward(params, flat_.data(), rows, dlogits, grad, dflat_.data());

    // Un-flatten and route through the second pool and ReLU.
    grow(da2_, kC2 * n2);
    std::fill_n(da2_.data(), kC2 * n2, 0.0f);
    for (std::size_t c = 0; c < kC2; ++c) {
      float* dst = da2_.data() + c * n2;
      const std::uint32_t* arg = arg2_.data() + c * rows * kP2 * kP2;
      for (std::size_t b = 0; b < rows; ++b) {
        for (std::size_t s = 0; s < kP2 * kP2; ++s) {
          dst[arg[b * kP2 * kP2 + s]] = dflat_[b * kFlat + c * kP2 * kP2 + s];
        }
      }
    }
    relu_mask(da2_.data(), a2_.data(), kC2 * n2);
    grow(dcols2_, kK2 * n2);
    conv_backward(params, grad, w2_, b2_, kC2, kK2, cols2_.data(), n2, da2_.data(), dcols2_.data());

    // col2im into the first pool's output, then through the first pool and ReLU.
    const std::size_t np1 = rows * kP1 * kP1;
    grow(dp1_, kC1 * np1);
    std::fill_n(dp1_.data(), kC1 * np1, 0.0f);
    col2im(dcols2_.data(), kC1, rows, kP1, np1, dp1_.data());
    grow(da1_, kC1 * n1);
    std::fill_n(da1_.data(), kC1 * n1, 0.0f);
    for (std::size_t i = 0; i < kC1 * np1; ++i) {
      const std::size_t c = i / np1;
      da1_[c * n1 + arg1_[i]] = dp1_[i];
    }
    relu_mask(da1_.data(), a1_.data(), kC1 * n1);
    conv_backward(params, grad, w1_, b1_, kC1, kK1, cols1_.data(), n1, da1_.data(), nullptr);
  }

 private:
  // cols[(ci*kK + ky)*kK + kx, (b*oh + oy)*ow + ox] = in[ci][b][oy + ky][ox + kx], with `in`
  // laid out [channels, batch, h, w] (channel stride `chan_stride`, image stride `img_stride`).
  static void im2col(const float* in, std::size_t channels, std::size_t rows, std::size_t h,
                     std::size_t img_stride, std::size_t chan_stride, float* cols) {
    const std::size_t oh = h - kK + 1, n = rows * oh * oh;
    for (std::size_t ci = 0; ci < channels; ++ci) {
      for (std::size_t ky = 0; ky < kK; ++ky) {
        for (std::size_t kx = 0; kx < kK; ++kx) {
          float* dst = cols + ((ci * kK + ky) * kK + kx) * n;
          for (std::size_t b = 0; b < rows; ++b) {
            const float* src = in + ci * chan_stride + b * img_stride + ky * h + kx;
            for (std::size_t oy = 0; oy < oh; ++oy) {
              std::copy_n(src + oy * h, oh, dst);
              dst += oh;
            }
          }
        }
      }
    }
  }

  // The adjoint of im2col for the second convolution's input (channels x [rows, h, h]).
  static void col2im(const float* cols, std::size_t channels, std::size_t rows, std::size_t h,
                     std::size_t chan_stride, float* out) {
    const std::size_t oh = h - kK + 1, n = rows * oh * oh;
    for (std::size_t ci = 0; ci < channels; ++ci) {
      for (std::size_t ky = 0; ky < kK; ++ky) {
        for (std::size_t kx = 0; kx < kK; ++kx) {
          const float* src = cols + ((ci * kK + ky) * kK + kx) * n;
          for (std::size_t b = 0; b < rows; ++b) {
            float* dst = out + ci * chan_stride + b * h * h + ky * h + kx;
            for (std::size_t oy = 0; oy < oh; ++oy) {
              float* d = dst + oy * h;
              for (std::size_t ox = 0; ox < oh; ++ox) d[ox] += src[ox];
              src += oh;
            }
          }
        }
      }
    }
  }

  static void conv(std::span<const float> params, std::size_t w, std::size_t b, std::size_t cout,
                   std::size_t k, const float* cols, std::size_t n, float* out) {
    ConstMatMap wm(params.data() + w, static_cast<Eigen::Index>(cout),
                   static_cast<Eigen::Index>(k));
    ConstVecMap bv(params.data() + b, static_cast<Eigen::Index>(cout));
    ConstMatMap cm(cols, static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(n));
    MatMap om(out, static_cast<Eigen::Index>(cout), static_cast<Eigen::Index>(n));
    om.noalias() = wm * cm;
    om.colwise() += bv;
    om = om.cwiseMax(0.0f);
  }

  static void conv_backward(std::span<const float> params, std::span<float> grad, std::size_t w,
                            std::size_t b, std::size_t cout, std::size_t k, const float* cols,
                            std::size_t n, const float* dz, float* dcols) {
    ConstMatMap cm(cols, static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(n));
    ConstMatMap dzm(dz, static_cast<Eigen::Index>(cout), static_cast<Eigen::Index>(n));
    MatMap gw(grad.data() + w, static_cast<Eigen::Index>(cout), static_cast<Eigen::Index>(k));
    VecMap gb(grad.data() + b, static_cast<Eigen::Index>(cout));
    gw.noalias() = dzm * cm.transpose();
    gb = dzm.rowwise().sum();
    if (dcols != nullptr) {
      ConstMatMap wm(params.data() + w, static_cast<Eigen::Index>(cout),
                     static_cast<Eigen::Index>(k));
      MatMap dc(dcols, static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(n));
      dc.noalias() = wm.transpose() * dzm;
    }
  }

  // 2x2 max-pool, stride 2, over [channels, rows, h, h]; `arg` records the winner's position
  // within its channel's [rows, h, h] block.
  static void maxpool(const float* in, std::size_t channels, std::size_t rows, std::size_t h,
                      float* out, std::uint32_t* arg) {
    const std::size_t ph = h / 2;
    for (std::size_t c = 0; c < channels; ++c) {
      const float* src = in + c * rows * h * h;
      for (std::size_t b = 0; b < rows; ++b) {
        for (std::size_t py = 0; py < ph; ++py) {
          for (std::size_t px = 0; px < ph; ++px) {
            std::size_t best = b * h * h + (2 * py) * h + 2 * px;
            const std::size_t cand[3] = {best + 1, best + h, best + h + 1};
            for (std::size_t q : cand) {
              if (src[q] > src[best]) best = q;
            }
            *out++ = src[best];
            *arg++ = static_cast<std::uint32_t>(best);
          }
        }
      }
    }
  }

  static void relu_mask(float* d, const float* a, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!(a[i] > 0.0f)) d[i] = 0.0f;
    }
  }

  std::size_t w1_ = 0, b1_ = 0, w2_ = 0, b2_ = 0;
  DenseStack head_;
  std::vector<float> cols1_, a1_, p1_, cols2_, a2_, p2_, flat_;
  std::vector<std::uint32_t> arg1_, arg2_;
  std::vector<float> dflat_, da2_, dcols2_, dp1_, da1_;
};

Result<std::vector<std::size_t>> parse_dims(std::string_view spec, std::string_view list) {
  std::vector<std::size_t> dims;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    const std::string_view item = list.substr(start, comma - start);
    std::size_t v = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || v == 0 ||
        v > (std::size_t{1} << 24)) {
      return make_error("model spec '" + std::string(spec) + "': '" + std::string(item) +
                        "' is not a layer size in [1, 16777216]");
    }
    dims.push_back(v);
    start = comma + 1;
  }
  return dims;
}

}  // namespace

Result<std::unique_ptr<Network>> make_network(std::string_view spec) {
  if (spec == "cnn:fmnist") return std::unique_ptr<Network>(std::make_unique<FmnistCnn>());
  const auto colon = spec.find(':');
  const std::string_view kind = spec.substr(0, colon);
  if (colon == std::string_view::npos || (kind != "softmax" && kind != "mlp" && kind != "linreg")) {
    return make_error("unknown model spec '" + std::string(spec) +
                      "' (expected softmax:IN,CLASSES, mlp:IN,H1[,H2...],CLASSES, cnn:fmnist, "
                      "linreg:IN or mlp:IN,H1[,H2...],1)");
  }
  auto dims = parse_dims(spec, spec.substr(colon + 1));
  if (!dims) return dims.error();
  if (kind == "linreg") {
    if (dims->size() != 1)
      return make_error("model spec '" + std::string(spec) + "': linreg takes IN only");
    dims->push_back(1);
  }
  if (kind == "softmax" && dims->size() != 2) {
    return make_error("model spec '" + std::string(spec) + "': softmax takes IN,CLASSES");
  }
  if (kind == "mlp" && dims->size() < 3) {
    return make_error("model spec '" + std::string(spec) +
                      "': mlp takes IN, at least one hidden size, and CLASSES (1: regression)");
  }
  if (kind == "softmax" && dims->back() < 2) {
    return make_error("model spec '" + std::string(spec) +
                      "': need at least 2 classes (regression: linreg:IN)");
  }
  std::size_t total = 0;
  for (std::size_t l = 0; l + 1 < dims->size(); ++l) {
    total += ((*dims)[l] + 1) * (*dims)[l + 1];
    if (total > kMaxParameters) {
      return make_error("model spec '" + std::string(spec) + "': more than " +
                        std::to_string(kMaxParameters) + " parameters");
    }
  }
  return std::unique_ptr<Network>(std::make_unique<Mlp>(*dims));
}

}  // namespace federa
