// The sessions' message buffers: large blocks are reused, up to the pool's idle limit.
#include <doctest/doctest.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <cstring>

#include "coordinator/buffer_pool.hpp"

using namespace federa;

TEST_CASE("buffer pool: a block given back is the next one taken of its size, up to the limit") {
  BufferPool pool(3u << 20);
  void* a = pool.take(1u << 20);
  void* b = pool.take((1u << 20) + 1);  // a 2 MiB block
  std::memset(a, 1, 1u << 20);
  pool.give(a, 1u << 20);
  CHECK(pool.idle_bytes() == (1u << 20));
  CHECK(pool.take(900u << 10) == a);  // same power-of-two size
  CHECK(pool.idle_bytes() == 0);
  pool.give(b, (1u << 20) + 1);
  pool.give(a, 1u << 20);
  CHECK(pool.idle_bytes() == (3u << 20));
  void* c = pool.take(1u << 20);
  CHECK(c == a);
  void* d = pool.take(1u << 20);  // none idle of that size: a new block
  CHECK(d != a);
  pool.give(c, 1u << 20);
  pool.give(d, 1u << 20);  // over the limit: freed, not kept
  CHECK(pool.idle_bytes() == (3u << 20));
}

TEST_CASE("buffer pool: a flat buffer grown past the pooled size and shrunk gives its block back") {
  auto pool = std::make_shared<BufferPool>(8u << 20);
  boost::beast::basic_flat_buffer<PooledAllocator<char>> buffer{PooledAllocator<char>(pool)};
  auto write = [&](std::size_t n) {
    auto m = buffer.prepare(n);
    std::memset(m.data(), 7, n);
    buffer.commit(n);
  };
  write(100);  // small: malloc's, not the pool's
  buffer.consume(buffer.size());
  buffer.shrink_to_fit();
  CHECK(pool->idle_bytes() == 0);
  write(1u << 20);
  const void* first = buffer.data().data();
  buffer.consume(buffer.size());
  buffer.shrink_to_fit();
  CHECK(pool->idle_bytes() >= (1u << 20));
  write(1u << 20);  // the same block again: no fresh pages to fault in
  CHECK(buffer.data().data() == first);
  buffer.consume(buffer.size());
  buffer.shrink_to_fit();
}
