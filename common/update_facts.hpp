// What a receiver learns about an update while it copies it in, so that whoever consumes the
// update does not read it again to learn the same things.
//
//   SquareSums sums(/*with_delta=*/true);
//   for (each piece of x, in order) sums.add(piece, matching_piece_of_reference, len);
//   UpdateFacts f{.finite = std::isfinite(sums.sum_sq()), .sum_sq = sums.sum_sq(),
//                 .sum_sq_delta = sums.sum_sq_delta()};
//
// ChunkAssembler (common/wire.hpp) fills UpdateFacts chunk by chunk as an upload arrives; the
// aggregation backends (coordinator/aggregation_backend.hpp) take them in AddOptions and then fold
// the update in with one pass instead of validating it first. The order in which SquareSums adds
// is fixed by the element index alone, so a backend that sums the same vector block by block on
// several threads gets the very same bits: with or without facts, the result is identical.
#pragma once

#include <cstddef>
#include <optional>

namespace federa {

struct UpdateFacts {
  // Every value was checked finite (no NaN, no Inf).
  bool finite = false;
  // Sum of x^2 over the whole update, in double (a finite float's square cannot overflow it).
  std::optional<double> sum_sq;
  // Sum of (x - r)^2 where r has the same values as the AddOptions::reference the update is added
  // with (the round's starting model). Only meaningful next to that reference.
  std::optional<double> sum_sq_delta;
};

// Sums of squares in a fixed order: within blocks of kBlock elements, eight lanes (lane = index
// mod 8) each summed in index order, then folded lane 0..7; block totals added in block order.
class SquareSums {
 public:
  static constexpr std::size_t kBlock = std::size_t{1} << 14;
  static constexpr std::size_t kLanes = 8;

  explicit SquareSums(bool with_delta = false) : with_delta_(with_delta) {}

  // The next n elements of x (and of the reference, when made with_delta; ref ignored otherwise).
  void add(const float* x, const float* ref, std::size_t n) {
    while (n > 0) {
      const std::size_t in_block = pos_ % kBlock;
      const std::size_t len = n < kBlock - in_block ? n : kBlock - in_block;
      accumulate(lanes_, x, len, in_block);
      if (with_delta_) accumulate_delta(lanes_delta_, x, ref, len, in_block);
      pos_ += len;
      x += len;
      if (with_delta_) ref += len;
      n -= len;
      if (pos_ % kBlock == 0) {
        total_ += fold(lanes_);
        total_delta_ += fold(lanes_delta_);
        clear(lanes_);
        clear(lanes_delta_);
      }
    }
  }

  double sum_sq() const { return total_ + fold(lanes_); }
  std::optional<double> sum_sq_delta() const {
    if (!with_delta_) return std::nullopt;
    return total_delta_ + fold(lanes_delta_);
  }
  std::size_t count() const { return pos_; }

  // One block on its own (x starts at a block boundary, n <= kBlock): what add() contributes for
  // it. Parallel callers sum blocks with these and add the results in block order.
  static double block(const float* x, std::size_t n) {
    double lanes[kLanes] = {};
    accumulate(lanes, x, n, 0);
    return fold(lanes);
  }
  static double block_delta(const float* x, const float* ref, std::size_t n) {
    double lanes[kLanes] = {};
    accumulate_delta(lanes, x, ref, n, 0);
    return fold(lanes);
  }

 private:
  // `first` is the block position of x[0]; lanes are chosen by position, so a block cut into
  // pieces anywhere sums exactly as the whole block does.
  static void accumulate(double* lanes, const float* x, std::size_t n, std::size_t first) {
    std::size_t i = 0;
    for (; i < n && (first + i) % kLanes != 0; ++i) {
      const double v = x[i];
      lanes[(first + i) % kLanes] += v * v;
    }
    for (; i + kLanes <= n; i += kLanes)
      for (std::size_t j = 0; j < kLanes; ++j) {
        const double v = x[i + j];
        lanes[j] += v * v;
      }
    for (; i < n; ++i) {
      const double v = x[i];
      lanes[(first + i) % kLanes] += v * v;
    }
  }
  static void accumulate_delta(double* lanes, const float* x, const float* ref, std::size_t n,
                               std::size_t first) {
    std::size_t i = 0;
    for (; i < n && (first + i) % kLanes != 0; ++i) {
      const double v = static_cast<double>(x[i]) - ref[i];
      lanes[(first + i) % kLanes] += v * v;
    }
    for (; i + kLanes <= n; i += kLanes)
      for (std::size_t j = 0; j < kLanes; ++j) {
        const double v = static_cast<double>(x[i + j]) - ref[i + j];
        lanes[j] += v * v;
      }
    for (; i < n; ++i) {
      const double v = static_cast<double>(x[i]) - ref[i];
      lanes[(first + i) % kLanes] += v * v;
    }
  }
  static double fold(const double* lanes) {
    double s = 0.0;
    for (std::size_t j = 0; j < kLanes; ++j) s += lanes[j];
    return s;
  }
  static void clear(double* lanes) {
    for (std::size_t j = 0; j < kLanes; ++j) lanes[j] = 0.0;
  }

  bool with_delta_;
  std::size_t pos_ = 0;
  double lanes_[kLanes] = {};
  double lanes_delta_[kLanes] = {};
  double total_ = 0.0;
  double total_delta_ = 0.0;
};

}  // namespace federa
