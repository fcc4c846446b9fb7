#include "coordinator/dp.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <vector>

namespace federa {

namespace {

double log_add(double a, double b) {
  if (a == -std::numeric_limits<double>::infinity()) return b;
  if (b == -std::numeric_limits<double>::infinity()) return a;
  double m = std::max(a, b);
  return m + std::log1p(std::exp(-std::abs(a - b)));
}

}  // namespace

double rdp_sampled_gaussian(double q, double z, int alpha) {
  if (q <= 0.0) return 0.0;
  if (z <= 0.0) return std::numeric_limits<double>::infinity();
  const double a = static_cast<double>(alpha);
  if (q >= 1.0) return a / (2.0 * z * z);
  // log A_alpha = log sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 z^2))
  double log_a = -std::numeric_limits<double>::infinity();
  const double lq = std::log(q), l1q = std::log1p(-q);
  for (int i = 0; i <= alpha; ++i) {
    double log_binom = std::lgamma(a + 1) - std::lgamma(i + 1.0) - std::lgamma(a - i + 1);
    double term = log_binom + i * lq + (a - i) * l1q + (double(i) * i - i) / (2.0 * z * z);
    log_a = log_add(log_a, term);
  }
  return log_a / (a - 1.0);
}

double epsilon_from_rdp(std::span<const int> orders, std::span<const double> rdp, double delta) {
  double best = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < orders.size() && i < rdp.size(); ++i) {
    double eps = rdp[i] + std::log(1.0 / delta) / (orders[i] - 1.0);
    if (std::isfinite(eps) && eps < best) best = eps;
  }
  return best;
}

GaussianNoise::GaussianNoise(const std::array<std::uint8_t, 32>& key) : key_(key) {}

Result<GaussianNoise> GaussianNoise::from_os_entropy() {
  std::array<std::uint8_t, 32> key{};
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1)
    return make_error("DP noise: the OS random generator failed");
  return GaussianNoise(key);
}

Result<GaussianNoise> GaussianNoise::from_seed(std::uint64_t seed, std::uint64_t round) {
  std::uint8_t in[16];
  for (int i = 0; i < 8; ++i) {
    in[i] = static_cast<std::uint8_t>(seed >> (8 * i));
    in[8 + i] = static_cast<std::uint8_t>(round >> (8 * i));
  }
  std::array<std::uint8_t, 32> key{};
  SHA256(in, sizeof in, key.data());
  return GaussianNoise(key);
}

Status GaussianNoise::uniforms(std::span<double> out) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return make_error("DP noise: cannot create a cipher context");
  std::uint8_t iv[16] = {};
  for (int i = 0; i < 8; ++i) iv[15 - i] = static_cast<std::uint8_t>(block_ >> (8 * i));
  Status st;
  if (EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key_.data(), iv) != 1) {
    st = make_error("DP noise: AES-256-CTR init failed");
  } else {
    constexpr std::size_t kBatch = 8192;  // uniforms per cipher call
    std::vector<std::uint8_t> zeros(kBatch * 8, 0), bytes(kBatch * 8);
    for (std::size_t done = 0; done < out.size() && st.ok(); done += kBatch) {
      const std::size_t m = std::min(kBatch, out.size() - done);
      int len = 0;
      if (EVP_EncryptUpdate(ctx, bytes.data(), &len, zeros.data(), static_cast<int>(m * 8)) != 1) {
        st = make_error("DP noise: AES-256-CTR failed");
        break;
      }
      for (std::size_t i = 0; i < m; ++i) {
        std::uint64_t v = 0;
        for (int b = 0; b < 8; ++b) v |= static_cast<std::uint64_t>(bytes[i * 8 + b]) << (8 * b);
        out[done + i] = (static_cast<double>(v >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
      }
    }
  }
  EVP_CIPHER_CTX_free(ctx);
  block_ += (out.size() * 8 + 15) / 16;
  return st;
}

Status GaussianNoise::fill(std::span<float> out, double stddev) {
  constexpr std::size_t kBatch = 1 << 16;
  std::vector<double> u;
  for (std::size_t done = 0; done < out.size(); done += kBatch) {
    const std::size_t m = std::min(kBatch, out.size() - done);
    u.resize((m + 1) / 2 * 2);
    if (Status st = uniforms(u); !st) return st;
    for (std::size_t i = 0; i < m; i += 2) {
      const double r = stddev * std::sqrt(-2.0 * std::log(u[i]));
      const double t = 2.0 * 3.14159265358979323846 * u[i + 1];
      out[done + i] = static_cast<float>(r * std::cos(t));
      if (i + 1 < m) out[done + i + 1] = static_cast<float>(r * std::sin(t));
    }
  }
  return {};
}

Result<double> GaussianNoise::sample(double stddev) {
  double u[2];
  if (Status st = uniforms(u); !st) return st.error();
  return stddev * std::sqrt(-2.0 * std::log(u[0])) * std::cos(2.0 * 3.14159265358979323846 * u[1]);
}

RdpAccountant::RdpAccountant() {
  // Dense at small orders (where small ε is decided), sparser at large ones (large noise/ε).
  for (int a = 2; a <= 64; ++a) orders_.push_back(a);
  for (int a : {80, 96, 128, 192, 256, 512}) orders_.push_back(a);
  rdp_.assign(orders_.size(), 0.0);
}

void RdpAccountant::add_steps(double q, double z, std::uint64_t steps) {
  for (std::size_t i = 0; i < orders_.size(); ++i)
    rdp_[i] += static_cast<double>(steps) * rdp_sampled_gaussian(q, z, orders_[i]);
  steps_ += steps;
}

double RdpAccountant::epsilon(double delta) const {
  if (steps_ == 0) return 0.0;
  return epsilon_from_rdp(orders_, rdp_, delta);
}

std::string RdpAccountant::serialize() const {
  std::string out = std::to_string(steps_);
  char buf[64];
  for (double r : rdp_) {
    std::snprintf(buf, sizeof buf, " %a", r);
    out += buf;
  }
  return out;
}

Status RdpAccountant::deserialize(const std::string& text) {
  std::istringstream in(text);
  std::uint64_t steps = 0;
  if (!(in >> steps)) return make_error("DP accountant state: missing step count");
  std::vector<double> rdp;
  std::string tok;
  while (in >> tok) {
    char* end = nullptr;
    double v = std::strtod(tok.c_str(), &end);
    if (end == tok.c_str() || *end != '\0')
      return make_error("DP accountant state: bad value '" + tok + "'");
    rdp.push_back(v);
  }
  if (rdp.size() != orders_.size())
    return make_error("DP accountant state: expected " + std::to_string(orders_.size()) +
                      " orders, got " + std::to_string(rdp.size()));
  rdp_ = std::move(rdp);
  steps_ = steps;
  return {};
}

}  // namespace federa
