// The coordinator's TLS layer under Beast's WebSocket: OpenSSL reads and writes the TCP socket
// itself (a socket BIO on a non-blocking descriptor), and Asio's reactor only says when the socket
// is ready again.
//
// Why not boost::asio::ssl::stream: its engine passes every byte through a BIO pair (2 x 17 KiB)
// and two more 17 KiB buffers of its own, ~70 KB per connection that a thousand idle members
// hold for nothing (heaptrack, docs in bench/README.md), and one more copy of each byte on the
// receive path. Here OpenSSL decrypts straight from the socket into the caller's buffer, and
// SSL_MODE_RELEASE_BUFFERS lets an idle connection give its record buffers back.
//
//   websocket::stream<TlsStream> ws(std::move(socket), tls_context);
//   ws.next_layer().async_handshake(ssl::stream_base::server, on_tls);   // then HTTP, then ws
//
// Concurrency: as for any Asio stream, one read and one write may be outstanding at a time, and
// every operation must run on the socket's strand (OpenSSL's SSL object is not thread-safe).
#pragma once

#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <memory>
#include <utility>

namespace federa {

class TlsStream {
 public:
  using next_layer_type = boost::asio::ip::tcp::socket;
  using executor_type = next_layer_type::executor_type;

  TlsStream(next_layer_type&& socket, boost::asio::ssl::context& context);

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  next_layer_type& next_layer() noexcept { return socket_; }
  SSL* native_handle() noexcept { return ssl_.get(); }

  // What one attempt of an OpenSSL call came to: done (with an error or a byte count), or
  // waiting until the socket can be read or written.
  enum class Want { nothing, read, write };
  struct Step {
    Want want = Want::nothing;
    boost::beast::error_code ec;
    std::size_t bytes = 0;
  };
  Step handshake_step();
  // Reads what is available now, up to `size` bytes; waits (Want::read) only when nothing was.
  Step read_step(void* data, std::size_t size);
  Step write_step(const void* data, std::size_t size);
  // Sends TLS close_notify if the socket takes it now; a closing connection does not wait.
  void send_close_notify() noexcept;

  template <class Handler>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Handler&& handler);
  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler);
  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler);

 private:
  struct FreeSsl {
    void operator()(SSL* s) const noexcept { SSL_free(s); }
  };
  Step outcome(int ret);

  next_layer_type socket_;
  std::unique_ptr<SSL, FreeSsl> ssl_;
};

namespace tls_detail {

// Runs `attempt` (returning TlsStream::Step) until it completes, waiting on the socket whenever
// OpenSSL asks to. A completion inside the initiating call is posted, never called inline, as
// Asio requires (and so a long run of ready reads cannot grow the stack).
template <bool WithBytes, class Attempt>
struct Op {
  TlsStream& stream;
  Attempt attempt;
  bool started = false;

  template <class Self>
  void operator()(Self& self, boost::beast::error_code ec = {}) {
    const bool first = !started;
    started = true;
    if (ec) return finish(self, first, ec, 0);  // the wait failed: closed or cancelled
    TlsStream::Step r = attempt();
    using W = boost::asio::ip::tcp::socket::wait_type;
    if (r.want == TlsStream::Want::read)
      return stream.next_layer().async_wait(W::wait_read, std::move(self));
    if (r.want == TlsStream::Want::write)
      return stream.next_layer().async_wait(W::wait_write, std::move(self));
    finish(self, first, r.ec, r.bytes);
  }
  template <class Self>
  void operator()(Self& self, boost::beast::error_code ec, std::size_t bytes) {
    complete(self, ec, bytes);
  }

 private:
  template <class Self>
  void finish(Self& self, bool first, boost::beast::error_code ec, std::size_t bytes) {
    if (first) {
      boost::asio::post(boost::beast::bind_front_handler(std::move(self), ec, bytes));
      return;
    }
    complete(self, ec, bytes);
  }
  template <class Self>
  static void complete(Self& self, boost::beast::error_code ec, std::size_t bytes) {
    if constexpr (WithBytes)
      self.complete(ec, bytes);
    else
      self.complete(ec);
  }
};

template <bool WithBytes, class Attempt>
Op<WithBytes, Attempt> make_op(TlsStream& s, Attempt a) {
  return {s, std::move(a)};
}

// A write's bytes: its first buffer, or, when that is a small header followed by more, up to one
// TLS record's worth gathered into one block, so a WebSocket frame header does not go out as a
// record of its own.
class WriteBlock {
 public:
  template <class ConstBuffers>
  explicit WriteBlock(const ConstBuffers& buffers) {
    auto it = boost::asio::buffer_sequence_begin(buffers);
    const auto end = boost::asio::buffer_sequence_end(buffers);
    while (it != end && boost::asio::const_buffer(*it).size() == 0) ++it;
    if (it == end) return;
    const boost::asio::const_buffer first(*it);
    if (first.size() >= kGather || std::next(it) == end) {
      data_ = first.data();
      size_ = first.size();
      return;
    }
    own_ = std::make_unique<char[]>(kGather);
    for (; it != end && size_ < kGather; ++it) {
      const boost::asio::const_buffer b(*it);
      const std::size_t n = std::min(b.size(), kGather - size_);
      std::memcpy(own_.get() + size_, b.data(), n);
      size_ += n;
    }
    data_ = own_.get();
  }
  const void* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  static constexpr std::size_t kGather = 16 * 1024;
  std::unique_ptr<char[]> own_;
  const void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace tls_detail

template <class Handler>
auto TlsStream::async_handshake(boost::asio::ssl::stream_base::handshake_type type,
                                Handler&& handler) {
  if (type == boost::asio::ssl::stream_base::server)
    SSL_set_accept_state(ssl_.get());
  else
    SSL_set_connect_state(ssl_.get());
  return boost::asio::async_compose<Handler, void(boost::beast::error_code)>(
      tls_detail::make_op<false>(*this, [this] { return handshake_step(); }), handler, socket_);
}

template <class MutableBuffers, class Handler>
auto TlsStream::async_read_some(const MutableBuffers& buffers, Handler&& handler) {
  boost::asio::mutable_buffer target;
  for (auto it = boost::asio::buffer_sequence_begin(buffers);
       it != boost::asio::buffer_sequence_end(buffers) && target.size() == 0; ++it)
    target = boost::asio::mutable_buffer(*it);
  return boost::asio::async_compose<Handler, void(boost::beast::error_code, std::size_t)>(
      tls_detail::make_op<true>(*this,
                                [this, target] {
                                  if (target.size() == 0) return Step{};
                                  return read_step(target.data(), target.size());
                                }),
      handler, socket_);
}

template <class ConstBuffers, class Handler>
auto TlsStream::async_write_some(const ConstBuffers& buffers, Handler&& handler) {
  return boost::asio::async_compose<Handler, void(boost::beast::error_code, std::size_t)>(
      tls_detail::make_op<true>(*this,
                                [this, block = tls_detail::WriteBlock(buffers)] {
                                  if (block.size() == 0) return Step{};
                                  return write_step(block.data(), block.size());
                                }),
      handler, socket_);
}

// Beast's WebSocket closes a connection through these (found by argument-dependent lookup):
// close_notify, then the TCP teardown of the socket.
void teardown(boost::beast::role_type role, TlsStream& stream, boost::beast::error_code& ec);

template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, TlsStream& stream, TeardownHandler&& handler) {
  stream.send_close_notify();
  boost::beast::websocket::async_teardown(role, stream.next_layer(),
                                          std::forward<TeardownHandler>(handler));
}

}  // namespace federa
