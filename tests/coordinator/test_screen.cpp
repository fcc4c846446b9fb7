// The outlier screen on its own (coordinator/orchestrator_screen.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "coordinator/orchestrator_screen.hpp"

using namespace federa;

TEST_CASE("screen: before any history the bound is factor x max(|global|, sqrt(n))") {
  UpdateScreen s(10);
  std::vector<float> zero(100, 0.0f);
  s.begin_round(zero);
  CHECK(s.bound() == doctest::Approx(100.0));  // 10 x sqrt(100)
  CHECK_FALSE(s.check(99.0));
  auto why = s.check(101.0);
  REQUIRE(why);
  CHECK(why->find("sqrt(parameters)") != std::string::npos);
  std::vector<float> big(100, 3.0f);  // |global| = 30
  s.begin_round(big);
  CHECK(s.bound() == doctest::Approx(300.0));
  CHECK(s.check(std::numeric_limits<double>::infinity()));
  CHECK(s.check(std::nan("")));
}

TEST_CASE("screen: afterwards, factor x the median of the last committed rounds' accepted norms") {
  UpdateScreen s(10);
  std::vector<float> g(4, 0.0f);
  s.begin_round(g);
  for (double n : {1.0, 2.0, 3.0, 100.0}) s.accept(n);
  s.end_round(false);  // a failed attempt teaches nothing
  s.begin_round(g);
  CHECK(s.bound() == doctest::Approx(20.0));  // still the first-round bound: 10 x sqrt(4)
  for (double n : {1.0, 2.0, 3.0, 100.0}) s.accept(n);
  s.end_round(true);
  s.begin_round(g);
  CHECK(s.bound() == doctest::Approx(25.0));  // median of {1, 2, 3, 100} = 2.5
  auto why = s.check(30.0);
  REQUIRE(why);
  CHECK(why->find("median") != std::string::npos);
  // Only the last kHistoryRounds rounds count.
  for (std::size_t r = 0; r < UpdateScreen::kHistoryRounds; ++r) {
    s.begin_round(g);
    s.accept(0.5);
    s.end_round(true);
  }
  s.begin_round(g);
  CHECK(s.bound() == doctest::Approx(5.0));
  // history() / set_history() carry it across a restart.
  UpdateScreen restored(10);
  restored.set_history(s.history());
  restored.begin_round(g);
  CHECK(restored.bound() == doctest::Approx(5.0));
}

TEST_CASE("screen: off (factor 0) lets every finite change through") {
  UpdateScreen s(0);
  std::vector<float> g(4, 0.0f);
  s.begin_round(g);
  CHECK_FALSE(s.enabled());
  CHECK_FALSE(s.check(1e300));
  CHECK(s.check(std::numeric_limits<double>::infinity()));
}
