// Partitioners as in NIID-Bench (Li, Diao, Chen, He, ICDE 2022). Randomness comes from one
// std::mt19937_64 seeded with `seed`; shuffles and integer draws use our own helpers, and the
// Dirichlet draws use std::gamma_distribution, whose libstdc++ implementation is fixed on the
// platforms we build for, so a seed gives the same partitions everywhere we run.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include "common/dataset.hpp"

namespace federa {

namespace {

using Rng = std::mt19937_64;

// Uniform integer in [0, n) without modulo bias (Lemire's rejection would do too; this is simple).
std::size_t uniform_index(Rng& rng, std::size_t n) {
  const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  std::uint64_t v;
  do {
    v = rng();
  } while (v >= limit);
  return static_cast<std::size_t>(v % n);
}

template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[uniform_index(rng, i)]);
}

std::vector<double> dirichlet(Rng& rng, double alpha, std::size_t n) {
  std::gamma_distribution<double> gamma(alpha, 1.0);
  std::vector<double> p(n);
  for (;;) {
    double sum = 0;
    for (auto& x : p) sum += (x = gamma(rng));
    // With a tiny alpha every draw can underflow to zero; draw again rather than divide by 0.
    if (sum > 0 && std::isfinite(sum)) {
      for (auto& x : p) x /= sum;
      return p;
    }
  }
}

// Split `idx` at floor(cumsum(p) * idx.size()), as numpy's (cumsum(p)*len).astype(int)[:-1].
void split_by_proportions(const std::vector<std::size_t>& idx, const std::vector<double>& p,
                          Partitions& parts) {
  const std::size_t n = idx.size();
  double cum = 0;
  std::size_t begin = 0;
  for (std::size_t j = 0; j < p.size(); ++j) {
    std::size_t end = n;
    if (j + 1 < p.size()) {
      cum += p[j];
      end = std::min(n, static_cast<std::size_t>(cum * static_cast<double>(n)));
      end = std::max(end, begin);
    }
    parts[j].insert(parts[j].end(), idx.begin() + begin, idx.begin() + end);
    begin = end;
  }
}

Result<double> parse_positive(std::string_view spec, std::string_view value) {
  double v = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || !(v > 0) || !std::isfinite(v)) {
    return make_error("partition spec '" + std::string(spec) + "': '" + std::string(value) +
                      "' is not a positive number");
  }
  return v;
}

std::vector<std::vector<std::size_t>> by_class(std::span<const std::int32_t> labels,
                                               int num_classes) {
  std::vector<std::vector<std::size_t>> out(static_cast<std::size_t>(num_classes));
  for (std::size_t i = 0; i < labels.size(); ++i)
    out[static_cast<std::size_t>(labels[i])].push_back(i);
  return out;
}

constexpr int kMaxRedraws = 10000;

// Redraws are capped by work as well as count, so an infeasible request (thousands of parties,
// small alpha) fails in seconds instead of minutes; small problems keep all 10,000 redraws.
int redraw_budget(std::size_t work_per_draw) {
  constexpr double kBudget = 1e8;  // element operations, a few seconds here
  double n = kBudget / static_cast<double>(std::max<std::size_t>(1, work_per_draw));
  return static_cast<int>(std::clamp(n, 100.0, double(kMaxRedraws)));
}

Partitions iid(std::size_t n, std::size_t count, Rng& rng) {
  std::vector<std::size_t> perm(n);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  shuffle(perm, rng);
  Partitions parts(count);
  // numpy.array_split: the first n % count parts get one extra element.
  std::size_t begin = 0;
  for (std::size_t j = 0; j < count; ++j) {
    const std::size_t size = n / count + (j < n % count ? 1 : 0);
    parts[j].assign(perm.begin() + begin, perm.begin() + begin + size);
    begin += size;
  }
  return parts;
}

Result<Partitions> label_dirichlet(std::span<const std::int32_t> labels, int num_classes,
                                   double alpha, std::size_t count, Rng& rng,
                                   std::size_t min_size) {
  const auto classes = by_class(labels, num_classes);
  const double cap = static_cast<double>(labels.size()) / static_cast<double>(count);
  const int redraws = redraw_budget(labels.size() + count * classes.size());
  for (int attempt = 0; attempt < redraws; ++attempt) {
    Partitions parts(count);
    for (const auto& members : classes) {
      std::vector<std::size_t> idx = members;
      shuffle(idx, rng);
      std::vector<double> p = dirichlet(rng, alpha, count);
      double sum = 0;
      for (std::size_t j = 0; j < count; ++j) {
        if (static_cast<double>(parts[j].size()) >= cap) p[j] = 0;
        sum += p[j];
      }
      if (sum <= 0) continue;  // every party is full: numpy would divide by zero; skip the class
      for (auto& x : p) x /= sum;
      split_by_proportions(idx, p, parts);
    }
    std::size_t smallest = SIZE_MAX;
    for (const auto& part : parts) smallest = std::min(smallest, part.size());
    if (smallest >= min_size) {
      for (auto& part : parts) shuffle(part, rng);
      return parts;
    }
  }
  return make_error("dirichlet partition: no draw in " + std::to_string(redraws) +
                    " gave every one of " + std::to_string(count) + " parties at least " +
                    std::to_string(min_size) + " examples; use a larger alpha or fewer parties");
}

Result<Partitions> label_count(std::span<const std::int32_t> labels, int num_classes, std::size_t k,
                               std::size_t count, Rng& rng) {
  const std::size_t c = static_cast<std::size_t>(num_classes);
  if (k < 1 || k > c) {
    return make_error("labels:K needs 1 <= K <= " + std::to_string(c) + " classes, got " +
                      std::to_string(k));
  }
  std::vector<std::size_t> holders(c, 0);
  std::vector<std::vector<std::size_t>> contains(count);
  for (std::size_t i = 0; i < count; ++i) {
    auto& cur = contains[i];
    cur.push_back(i % c);
    ++holders[i % c];
    while (cur.size() < k) {
      const std::size_t l = uniform_index(rng, c);
      if (std::find(cur.begin(), cur.end(), l) == cur.end()) {
        cur.push_back(l);
        ++holders[l];
      }
    }
  }
  Partitions parts(count);
  const auto classes = by_class(labels, num_classes);
  for (std::size_t l = 0; l < c; ++l) {
    if (holders[l] == 0) continue;  // a label nobody holds is left out, as in NIID-Bench
    std::vector<std::size_t> idx = classes[l];
    shuffle(idx, rng);
    // numpy.array_split into holders[l] nearly equal pieces, handed out in party order.
    std::size_t piece = 0, begin = 0;
    for (std::size_t j = 0; j < count; ++j) {
      if (std::find(contains[j].begin(), contains[j].end(), l) == contains[j].end()) continue;
      const std::size_t size = idx.size() / holders[l] + (piece < idx.size() % holders[l] ? 1 : 0);
      parts[j].insert(parts[j].end(), idx.begin() + begin, idx.begin() + begin + size);
      begin += size;
      ++piece;
    }
  }
  for (auto& part : parts) shuffle(part, rng);
  return parts;
}

Result<Partitions> quantity(std::size_t n, double alpha, std::size_t count, Rng& rng,
                            std::size_t min_size) {
  std::vector<std::size_t> perm(n);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  shuffle(perm, rng);
  const int redraws = redraw_budget(count);
  for (int attempt = 0; attempt < redraws; ++attempt) {
    std::vector<double> p = dirichlet(rng, alpha, count);
    const double smallest = *std::min_element(p.begin(), p.end()) * static_cast<double>(n);
    if (smallest < static_cast<double>(min_size)) continue;
    Partitions parts(count);
    split_by_proportions(perm, p, parts);
    return parts;
  }
  return make_error("quantity partition: no draw in " + std::to_string(redraws) +
                    " gave every one of " + std::to_string(count) + " parties at least " +
                    std::to_string(min_size) + " examples; use a larger alpha or fewer parties");
}

}  // namespace

Result<Partitions> partition_dataset(std::span<const std::int32_t> labels, int num_classes,
                                     std::string_view spec, std::size_t count, std::uint64_t seed) {
  if (count == 0) return make_error("partition: the number of partitions must be positive");
  if (labels.size() < count) {
    return make_error("partition: " + std::to_string(labels.size()) +
                      " examples cannot be split into " + std::to_string(count) + " partitions");
  }
  if (num_classes <= 0) return make_error("partition: the dataset has no classes");
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return make_error("partition: label " + std::to_string(labels[i]) + " of example " +
                        std::to_string(i) + " is outside [0, " + std::to_string(num_classes) + ")");
    }
  }
  Rng rng(seed);
  // NIID-Bench asks for at least 10 examples per party; small test sets ask for what they can.
  const std::size_t min_size = std::min<std::size_t>(10, labels.size() / count);
  if (spec == "iid") return iid(labels.size(), count, rng);
  const auto colon = spec.find(':');
  const std::string_view kind = spec.substr(0, colon);
  const std::string_view arg = colon == std::string_view::npos ? "" : spec.substr(colon + 1);
  if (kind == "dirichlet" && colon != std::string_view::npos) {
    auto alpha = parse_positive(spec, arg);
    if (!alpha) return alpha.error();
    return label_dirichlet(labels, num_classes, *alpha, count, rng, min_size);
  }
  if (kind == "quantity" && colon != std::string_view::npos) {
    auto alpha = parse_positive(spec, arg);
    if (!alpha) return alpha.error();
    return quantity(labels.size(), *alpha, count, rng, min_size);
  }
  if (kind == "labels" && colon != std::string_view::npos) {
    std::size_t k = 0;
    auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), k);
    if (ec != std::errc() || end != arg.data() + arg.size() || arg.empty()) {
      return make_error("partition spec '" + std::string(spec) + "': K must be a positive integer");
    }
    return label_count(labels, num_classes, k, count, rng);
  }
  return make_error("unknown partition spec '" + std::string(spec) +
                    "' (expected iid, dirichlet:ALPHA, labels:K or quantity:ALPHA)");
}

}  // namespace federa
