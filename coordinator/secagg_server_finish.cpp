// SecAgg+ server, the end of a round: reconstruct the secrets the unmasking phase revealed
// shares of, check each against what its owner committed to in AdvertiseKeys, and remove the
// masks from the running sum (coordinator/secagg_server.hpp).
#include <openssl/crypto.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <thread>

#include "coordinator/secagg_server.hpp"

namespace federa::secagg {
namespace {

std::string idx(std::uint64_t v) { return std::to_string(v); }

// Reconstructions tried per secret before its owner is blamed. A few hundred Lagrange evaluations
// of t <= ~100 points cost milliseconds.
constexpr std::size_t kMaxReconstructions = 256;

// C(m, t), or kMaxReconstructions + 1 once it exceeds the budget.
std::size_t subsets(std::size_t m, std::size_t t) {
  double c = 1;
  for (std::size_t i = 1; i <= t; ++i) {
    c = c * double(m - t + i) / double(i);
    if (c > double(kMaxReconstructions)) return kMaxReconstructions + 1;
  }
  return std::size_t(c + 0.5);
}

// The t-subsets of {0..m-1} to try, at most kMaxReconstructions, made one at a time: all of them
// when there are few; otherwise the first t, every leave-one-out of the first t+1 (one bad share
// among the first responders), then random subsets from a fixed seed (a few bad shares anywhere).
class SubsetWalk {
 public:
  SubsetWalk(std::size_t m, std::size_t t)
      : m_(m), t_(t), all_(subsets(m, t) <= kMaxReconstructions), pick_(t) {
    std::iota(pick_.begin(), pick_.end(), 0);
  }
  // The next subset (sorted indices), or nullptr when the budget or the subsets are used up.
  const std::vector<std::size_t>* next() {
    if (tries_ >= kMaxReconstructions) return nullptr;
    const std::size_t k = tries_++;
    if (k == 0) return &pick_;
    if (all_) {
      std::size_t i = t_;
      while (i > 0 && pick_[i - 1] == m_ - t_ + (i - 1)) --i;
      if (i == 0) return nullptr;
      ++pick_[i - 1];
      for (std::size_t j = i; j < t_; ++j) pick_[j] = pick_[j - 1] + 1;
      return &pick_;
    }
    pick_.clear();
    if (k <= t_) {
      const std::size_t skip = t_ - k;  // leave out t, t-1, ..., 0 of the first t+1
      for (std::size_t i = 0; i <= t_; ++i)
        if (i != skip) pick_.push_back(i);
      return &pick_;
    }
    if (pool_.empty()) {
      pool_.resize(m_);
      std::iota(pool_.begin(), pool_.end(), 0);
    }
    std::shuffle(pool_.begin(), pool_.end(), rng_);
    pick_.assign(pool_.begin(), pool_.begin() + std::ptrdiff_t(t_));
    std::sort(pick_.begin(), pick_.end());
    return &pick_;
  }

 private:
  std::size_t m_, t_;
  bool all_;
  std::vector<std::size_t> pick_, pool_;
  std::size_t tries_ = 0;
  std::mt19937_64 rng_{0x5ec466};
};

// Reconstructs from t of the revealed shares and accepts the result only when `verify` holds,
// so a few lying revealers cannot make the round fail while t honest shares are there.
template <typename Verify>
Result<Key32> recover(std::vector<shamir::Share>& shares, std::uint32_t t,
                      shamir::LagrangeCache& cache, Verify&& verify) {
  // Sorted by x so clients whose responders coincide share cached coefficients.
  std::sort(shares.begin(), shares.end(),
            [](const shamir::Share& a, const shamir::Share& b) { return a.x < b.x; });
  if (shares.size() < t) return make_error("fewer than t shares");
  std::vector<shamir::Share> subset(t);
  std::vector<std::uint32_t> xs(t);
  SubsetWalk walk(shares.size(), t);
  while (const auto* pick = walk.next()) {
    for (std::uint32_t i = 0; i < t; ++i) {
      subset[i] = shares[(*pick)[i]];
      xs[i] = subset[i].x;
    }
    auto coeffs = cache.at_zero(xs);
    if (!coeffs) return coeffs.error();
    auto secret = shamir::reconstruct(subset, **coeffs);
    if (secret && verify(*secret)) return secret;
  }
  return make_error("no consistent subset of the revealed shares");
}

}  // namespace

Result<std::vector<Server::MaskJob>> Server::reconstruct_masks(AggregateResult& result) {
  const std::uint32_t t = config_.threshold;
  shamir::LagrangeCache cache;
  std::vector<MaskJob> jobs;
  for (std::uint32_t u = 0; u < clients_.size(); ++u) {
    ClientState& c = clients_[u];
    if (c.masked) {
      result.included.push_back(u);
      if (c.b_shares.size() < t)
        return abandon("self mask of client " + idx(u) + ": " + idx(c.b_shares.size()) +
                       " shares revealed, t=" + idx(t));
      auto b = recover(c.b_shares, t, cache, [&](const Key32& seed) {
        return self_mask_commitment(config_, u, seed) == c.keys.self_mask_commitment;
      });
      if (!b) {
        blame(u, "its shares do not match its self-mask commitment");
        return abandon("self mask of client " + idx(u) +
                       " failed verification against its commitment (bad shares)");
      }
      jobs.push_back({*b, u, u, false, crypto::PrgOp::subtract});
    } else if (c.shared) {
      std::vector<std::uint32_t> users;  // survivors that masked with u
      for (std::uint32_t v : graph_.neighbors(u))
        if (holds(v, u)) users.push_back(v);
      result.dropped.push_back(u);
      if (users.empty()) continue;
      if (c.s_shares.size() < t)
        return abandon("mask key of dropped client " + idx(u) + ": " + idx(c.s_shares.size()) +
                       " shares revealed, t=" + idx(t));
      auto s = recover(c.s_shares, t, cache, [&](const Key32& key) {
        auto pub = crypto::x25519_public_from_private(key);
        return pub && *pub == c.keys.mask_public;
      });
      if (!s) {
        blame(u, "its shares do not match its public mask key");
        return abandon("mask key of dropped client " + idx(u) +
                       " failed verification against its public key (bad shares)");
      }
      // v applied pair_mask_op(v, u); undo it.
      for (std::uint32_t v : users)
        jobs.push_back({*s, u, v, true,
                        pair_mask_op(v, u) == crypto::PrgOp::add ? crypto::PrgOp::subtract
                                                                 : crypto::PrgOp::add});
    }
  }
  return jobs;
}

// Regenerates and removes the masks. Each worker owns an accumulator; they are summed at the end.
Status Server::remove_masks(std::vector<MaskJob>& jobs) {
  const unsigned threads =
      std::max(1u, std::min<unsigned>(options_.threads, static_cast<unsigned>(jobs.size())));
  std::vector<std::vector<std::uint32_t>> partial(threads > 1 ? threads - 1 : 0);
  std::vector<Status> status(threads);
  auto work = [&](unsigned w, std::span<std::uint32_t> acc) {
    for (std::size_t j = w; j < jobs.size(); j += threads) {
      const MaskJob& job = jobs[j];
      Key32 seed = job.key;
      if (job.pair) {
        auto s = derive_mask_seed(config_, job.key, clients_[job.v].keys.mask_public, job.u, job.v);
        if (!s) {
          status[w] = s.error();
          return;
        }
        seed = *s;
      }
      Status st = crypto::prg_accumulate(seed, acc, job.op);
      OPENSSL_cleanse(seed.data(), seed.size());
      if (!st) {
        status[w] = st;
        return;
      }
    }
  };
  {
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < threads; ++w) {
      partial[w - 1].assign(sum_.size(), 0);
      pool.emplace_back(work, w, std::span<std::uint32_t>(partial[w - 1]));
    }
    work(0, sum_);
    for (auto& th : pool) th.join();
  }
  for (MaskJob& j : jobs) OPENSSL_cleanse(j.key.data(), j.key.size());
  for (const Status& s : status)
    if (!s) return abandon("mask regeneration failed: " + s.message());
  for (const auto& p : partial)
    for (std::size_t i = 0; i < sum_.size(); ++i) sum_[i] += p[i];
  return Status::success();
}

Result<AggregateResult> Server::finish() {
  if (Status s = check_phase(Phase::unmasking, "finish"); !s) return s.error();
  AggregateResult result;
  auto jobs = reconstruct_masks(result);
  if (!jobs) return jobs.error();
  if (Status s = remove_masks(*jobs); !s) return s.error();
  for (ClientState& c : clients_) {
    c.b_shares.clear();
    c.s_shares.clear();
  }
  result.sum = sum_;
  result.decoded = dequantize(sum_, config_.quant);
  result.error_bound =
      quantization_error_bound(config_.quant, static_cast<std::uint32_t>(result.included.size()));
  phase_ = Phase::done;
  return result;
}

}  // namespace federa::secagg
