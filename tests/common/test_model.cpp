#include <doctest/doctest.h>

#include "common/model.hpp"

using namespace federa;

TEST_CASE("layout offsets, sizes and hash") {
  ModelLayout a({{"fc1.weight", {4, 3}}, {"fc1.bias", {4}}});
  CHECK(a.size() == 16);
  CHECK(a.offset(0) == 0);
  CHECK(a.offset(1) == 12);
  ModelLayout same({{"fc1.weight", {4, 3}}, {"fc1.bias", {4}}});
  CHECK(a.hash() == same.hash());
  CHECK(a == same);
  // Any change of name, shape or order changes the hash.
  CHECK(ModelLayout({{"fc1.weight", {3, 4}}, {"fc1.bias", {4}}}).hash() != a.hash());
  CHECK(ModelLayout({{"fc1.bias", {4}}, {"fc1.weight", {4, 3}}}).hash() != a.hash());
  CHECK(ModelLayout({{"fc2.weight", {4, 3}}, {"fc1.bias", {4}}}).hash() != a.hash());
  // Names and dims are length-prefixed, so regrouping cannot collide.
  CHECK(ModelLayout({{"ab", {2}}, {"c", {2}}}).hash() !=
        ModelLayout({{"a", {2}}, {"bc", {2}}}).hash());
}

TEST_CASE("model tensors are views into one buffer") {
  Model m(ModelLayout({{"w", {2, 2}}, {"b", {2}}}));
  REQUIRE(m.data.size() == 6);
  m.tensor(1)[1] = 5.0f;
  CHECK(m.data[5] == 5.0f);
  CHECK(m.tensor(0).size() == 4);
}
