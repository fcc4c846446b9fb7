// The broadcast's chunks are made as links drain them, never read from a model that changed.
#include <doctest/doctest.h>

#include "common/wire.hpp"
#include "coordinator/model_broadcast.hpp"

using namespace federa;

namespace {
std::vector<float> ramp(std::size_t n) {
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = 0.5f * float(i) - 3.0f;
  return x;
}
std::string serialized(const wire::Envelope& e) {
  std::string s;
  e.SerializeToString(&s);
  return s;
}
std::vector<std::string> drain(MessageStream& s) {
  std::vector<std::string> out;
  while (auto m = s.next()) out.push_back(*m);
  return out;
}
const auto task_head = std::make_shared<const std::string>("task");
}  // namespace

TEST_CASE("serialize_chunk: the bytes protobuf writes for make_chunk, F32 or not") {
  const auto x = ramp(10);
  for (std::uint64_t round : {0ull, 7ull, 1ull << 40}) {
    for (std::uint32_t i = 0; i < 4; ++i) {  // the last chunk is short; offset 0 is left out
      CHECK(serialize_chunk(round, x, 3, {}, i) == serialized(make_chunk(round, x, 3, {}, i)));
    }
  }
  const std::vector<DTypeRun> runs{{4, DType::bf16}, {6, DType::f32}};
  for (std::uint32_t i = 0; i < 4; ++i)
    CHECK(serialize_chunk(2, x, 3, runs, i) == serialized(make_chunk(2, x, 3, runs, i)));
  const std::vector<float> none;
  CHECK(serialize_chunk(1, none, 3, {}, 0) == serialized(make_chunk(1, none, 3, {}, 0)));
}

TEST_CASE("model broadcast: each reader gets the task then every chunk, made once when in step") {
  const auto x = ramp(10);
  auto b = std::make_shared<ModelBroadcast>(task_head, 5, x, 3, std::vector<DTypeRun>{});
  CHECK(b->messages() == 5);
  CHECK(b->size_bytes() >= 4 + 10 * sizeof(float));
  auto r1 = b->reader(), r2 = b->reader();
  std::vector<std::string> got1, got2;
  // In step: the second reader takes the chunk the first still holds.
  for (;;) {
    auto m1 = r1->next();
    auto m2 = r2->next();
    if (!m1 || !m2) {
      CHECK(m1 == m2);
      break;
    }
    CHECK(m1 == m2);  // the same bytes object
    got1.push_back(*m1);
    got2.push_back(*m2);
  }
  CHECK(b->serialized() == 4);
  REQUIRE(got1.size() == 5);
  CHECK(got1[0] == "task");
  for (std::uint32_t i = 0; i < 4; ++i)
    CHECK(got1[i + 1] == serialized(make_chunk(5, x, 3, {}, i)));
  // Once every reader is through, nothing is held: a late reader has them made again.
  auto r3 = b->reader();
  CHECK(drain(*r3) == got1);
  CHECK(b->serialized() == 8);
}

TEST_CASE("model broadcast: readers out of step share the last 16 MiB made, no more") {
  const auto small = ramp(1000);
  auto b = std::make_shared<ModelBroadcast>(task_head, 2, small, 100, std::vector<DTypeRun>{});
  auto first = b->reader(), second = b->reader();
  const auto all = drain(*first);  // `second` has not started
  CHECK(drain(*second) == all);
  CHECK(b->serialized() == 10);  // each chunk once: a small model is made once for every link

  const auto big = ramp(6u << 20);  // 24 MiB in 4 MiB chunks: more than is held
  auto c = std::make_shared<ModelBroadcast>(task_head, 2, big, 1u << 20, std::vector<DTypeRun>{});
  auto ahead = c->reader(), behind = c->reader();
  const auto chunks = drain(*ahead);
  CHECK(c->serialized() == 6);
  CHECK(drain(*behind) == chunks);
  CHECK(c->serialized() == 12);  // the held window had moved on: each made again
}

TEST_CASE("model broadcast: after freeze a lagging reader gets the model as it was") {
  auto x = ramp(12);
  const auto before = x;
  auto b = std::make_shared<ModelBroadcast>(task_head, 3, x, 4, std::vector<DTypeRun>{});
  auto done = b->reader(), lagging = b->reader(), untouched = b->reader();
  drain(*done);
  CHECK(*lagging->next() == "task");
  CHECK(lagging->next() != nullptr);  // chunk 0 taken; chunks 1 and 2 still to come
  CHECK(b->serialized() == 3);
  b->freeze();
  // Unfinished readers still need every chunk (`untouched` has none): kept from those made.
  CHECK(b->serialized() == 3);
  std::fill(x.begin(), x.end(), 99.0f);  // the orchestrator may now write its model
  CHECK(*lagging->next() == serialized(make_chunk(3, before, 4, {}, 1)));
  CHECK(*lagging->next() == serialized(make_chunk(3, before, 4, {}, 2)));
  CHECK(lagging->next() == nullptr);
  const auto all = drain(*untouched);
  REQUIRE(all.size() == 4);
  CHECK(all[3] == serialized(make_chunk(3, before, 4, {}, 2)));

  // A model larger than what is held: freeze makes the chunks no one holds any more.
  auto big = ramp(6u << 20);
  const auto big_before = big;
  auto c = std::make_shared<ModelBroadcast>(task_head, 4, big, 1u << 20, std::vector<DTypeRun>{});
  auto ahead = c->reader(), behind = c->reader();
  drain(*ahead);
  c->freeze();
  CHECK(c->serialized() == 9);  // chunks 0-2 had left the held window (3 x 4 MiB + headers)
  std::fill(big.begin(), big.end(), -1.0f);
  const auto late = drain(*behind);
  REQUIRE(late.size() == 7);
  for (std::uint32_t i = 0; i < 6; ++i)
    CHECK(late[i + 1] == serialized(make_chunk(4, big_before, 1u << 20, {}, i)));
}

TEST_CASE("model broadcast: freeze with every reader done keeps nothing; abandon ends readers") {
  auto x = ramp(8);
  auto b = std::make_shared<ModelBroadcast>(task_head, 1, x, 4, std::vector<DTypeRun>{});
  {
    auto r = b->reader();
    drain(*r);
  }
  auto finished = b->reader();
  drain(*finished);
  const std::size_t made = b->serialized();
  b->freeze();
  CHECK(b->serialized() == made);

  auto c = std::make_shared<ModelBroadcast>(task_head, 1, x, 4, std::vector<DTypeRun>{});
  auto r = c->reader();
  CHECK(r->next() != nullptr);
  c->abandon();
  CHECK(r->next() == nullptr);
  CHECK(r->next() == nullptr);
}
