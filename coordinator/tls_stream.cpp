#include "coordinator/tls_stream.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <sys/socket.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <cerrno>
#include <cstdint>
#include <stdexcept>

namespace federa {

namespace net = boost::asio;

namespace {
// A read call hands back at most this much before the reactor runs again: a fast peer cannot keep
// one session's strand busy for long, and the caller sees progress in pieces it can handle.
constexpr std::size_t kReadBurst = 256 * 1024;

// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when the peer has gone: a
// library must not depend on its program ignoring that signal, so this BIO sends with
// MSG_NOSIGNAL (the descriptor is non-blocking; EAGAIN becomes OpenSSL's retry).
int fd_of(BIO* b) { return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(b))); }

int bio_write(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  const ssize_t n = ::send(fd_of(b), data, static_cast<std::size_t>(len), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_write(b);
  return static_cast<int>(n);
}

int bio_read(BIO* b, char* data, int len) {
  BIO_clear_retry_flags(b);
  const ssize_t n = ::recv(fd_of(b), data, static_cast<std::size_t>(len), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(b);
  return static_cast<int>(n);
}

long bio_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int bio_create(BIO* b) {
  BIO_set_init(b, 0);
  return 1;
}

BIO_METHOD* socket_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "federa non-blocking socket");
    if (m == nullptr || BIO_meth_set_write(m, bio_write) != 1 ||
        BIO_meth_set_read(m, bio_read) != 1 || BIO_meth_set_ctrl(m, bio_ctrl) != 1 ||
        BIO_meth_set_create(m, bio_create) != 1)
      throw std::runtime_error("cannot create the socket BIO method");
    return m;
  }();
  return method;
}

}  // namespace

TlsStream::TlsStream(next_layer_type&& socket, net::ssl::context& context)
    : socket_(std::move(socket)), ssl_(SSL_new(context.native_handle())) {
  if (!ssl_) throw std::runtime_error("SSL_new failed: out of memory");
  boost::beast::error_code ec;
  socket_.non_blocking(true, ec);  // OpenSSL must never block the strand's thread
  if (!ec && socket_.is_open()) {
    BIO* bio = BIO_new(socket_method());
    if (bio == nullptr) throw std::runtime_error("BIO_new failed: out of memory");
    BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(socket_.native_handle())));
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl_.get(), bio, bio);  // one reference, owned by the SSL object
  }
  // Partial writes: a large write completes with what the socket took, as a stream's write_some
  // should; the retry of a write that waited may come from a moved buffer (the same bytes);
  // record buffers are returned while the connection is idle; read-ahead fills the record buffer
  // with one recv instead of two per record.
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                               SSL_MODE_RELEASE_BUFFERS);
  SSL_set_read_ahead(ssl_.get(), 1);
}

TlsStream::Step TlsStream::outcome(int ret) {
  const int err = SSL_get_error(ssl_.get(), ret);
  Step r;
  switch (err) {
    case SSL_ERROR_WANT_READ:
      r.want = Want::read;
      return r;
    case SSL_ERROR_WANT_WRITE:
      r.want = Want::write;
      return r;
    case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify
      r.ec = net::error::eof;
      return r;
    case SSL_ERROR_SYSCALL: {
      const int e = errno;
      ERR_clear_error();
      if (e == 0)
        r.ec = net::ssl::error::stream_truncated;
      else
        r.ec = boost::beast::error_code(e, boost::system::system_category());
      return r;
    }
    default: {  // SSL_ERROR_SSL and anything newer: OpenSSL's reason, as Asio reports it
      const unsigned long code = ERR_get_error();
      ERR_clear_error();
      if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        r.ec = net::ssl::error::stream_truncated;
      else if (code != 0)
        r.ec = boost::beast::error_code(static_cast<int>(code), net::error::get_ssl_category());
      else
        r.ec = net::error::fault;
      return r;
    }
  }
}

namespace {
// OpenSSL's thread error queue and errno are read after a failed call: both start clean.
template <typename Call>
int clean_call(Call&& call) {
  ERR_clear_error();
  errno = 0;
  return call();
}
}  // namespace

TlsStream::Step TlsStream::handshake_step() {
  const int ret = clean_call([&] { return SSL_do_handshake(ssl_.get()); });
  if (ret == 1) return {};
  return outcome(ret);
}

TlsStream::Step TlsStream::read_step(void* data, std::size_t size) {
  auto* out = static_cast<unsigned char*>(data);
  const std::size_t want = std::min(size, kReadBurst);
  std::size_t got = 0;
  while (got < want) {
    std::size_t n = 0;
    const int ret = clean_call([&] { return SSL_read_ex(ssl_.get(), out + got, want - got, &n); });
    if (ret == 1) {
      got += n;
      continue;
    }
    Step r = outcome(ret);
    if (got == 0) return r;
    // Bytes already read are delivered first; an error shows again on the next call, and a
    // wait is the next call's to make.
    return Step{Want::nothing, {}, got};
  }
  return Step{Want::nothing, {}, got};
}

TlsStream::Step TlsStream::write_step(const void* data, std::size_t size) {
  std::size_t n = 0;
  const int ret = clean_call([&] { return SSL_write_ex(ssl_.get(), data, size, &n); });
  if (ret == 1) return Step{Want::nothing, {}, n};
  return outcome(ret);
}

void TlsStream::send_close_notify() noexcept {
  if (!socket_.is_open() || SSL_in_init(ssl_.get())) return;
  ERR_clear_error();
  (void)SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

void teardown(boost::beast::role_type role, TlsStream& stream, boost::beast::error_code& ec) {
  stream.send_close_notify();
  boost::beast::websocket::teardown(role, stream.next_layer(), ec);
}

}  // namespace federa
