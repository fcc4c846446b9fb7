// federa-bench load's second reference: one mutual-TLS 1.3 stream over 127.0.0.1 with the
// federation's own contexts (the coordinator's certificate, a member's kit, the same cipher
// suites), a sender thread writing 1 MiB buffers and a receiver reading into a 1 MiB buffer and
// doing nothing else. No WebSocket, protobuf, upload slot or aggregation: what this machine's
// kernel and OpenSSL let one connection carry, measured in the same run as the coordinator.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "common/tls.hpp"
#include "tools/bench_load.hpp"

namespace federa::bench {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kBuffer = std::size_t(1) << 20;

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

struct SslPtr {
  SSL* ssl;
  explicit SslPtr(SSL* s) : ssl(s) {}
  SslPtr(const SslPtr&) = delete;
  SslPtr& operator=(const SslPtr&) = delete;
  ~SslPtr() { SSL_free(ssl); }
};

std::string sys_error(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Ten seconds without progress ends the measurement instead of hanging the benchmark.
void set_timeouts(int fd) {
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Connects to `port`, handshakes as the member and writes `bytes`; false on any failure (the
// receiver then sees the connection end early and reports it).
bool send_stream(boost::asio::ssl::context& ctx, unsigned short port, std::uint64_t bytes) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.fd < 0) return false;
  set_timeouts(s.fd);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
  SslPtr ssl(SSL_new(ctx.native_handle()));
  if (!ssl.ssl || !set_client_tls_hostname(ssl.ssl, "127.0.0.1") ||
      SSL_set_fd(ssl.ssl, s.fd) != 1 || SSL_connect(ssl.ssl) != 1)
    return false;
  const std::vector<unsigned char> buf(kBuffer, 0x5a);
  for (std::uint64_t sent = 0; sent < bytes;) {
    std::size_t n = 0;
    const std::size_t want = std::size_t(std::min<std::uint64_t>(kBuffer, bytes - sent));
    if (SSL_write_ex(ssl.ssl, buf.data(), want, &n) != 1) return false;
    sent += n;
  }
  SSL_shutdown(ssl.ssl);
  return true;
}

Result<int> listen_loopback(unsigned short& port) {
  auto fd = bind_loopback(port);
  if (!fd) return fd.error();
  if (::listen(*fd, 1) != 0) {
    const std::string e = sys_error("listen on 127.0.0.1");
    ::close(*fd);
    return make_error(e);
  }
  set_timeouts(*fd);  // accept gives up too when the sender never connects
  return fd;
}

// Accepts one connection, handshakes as the coordinator and reads until `bytes` arrived; GB/s
// from the end of the first read (the handshake and the first record are not timed) to the last.
Result<double> receive_stream(int listener, boost::asio::ssl::context& ctx, std::uint64_t bytes) {
  Fd c(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (c.fd < 0) return make_error(sys_error("accept"));
  set_timeouts(c.fd);
  SslPtr ssl(SSL_new(ctx.native_handle()));
  if (ssl.ssl) SSL_set_read_ahead(ssl.ssl, 1);  // as the coordinator's TlsStream reads
  if (!ssl.ssl || SSL_set_fd(ssl.ssl, c.fd) != 1 || SSL_accept(ssl.ssl) != 1)
    return make_error("the TLS handshake of the reference stream failed");
  std::vector<unsigned char> buf(kBuffer);
  std::uint64_t got = 0;
  std::size_t n = 0;
  if (SSL_read_ex(ssl.ssl, buf.data(), buf.size(), &n) != 1)
    return make_error("the reference stream ended before its first byte");
  got += n;
  const std::uint64_t untimed = got;
  const auto t0 = std::chrono::steady_clock::now();
  while (got < bytes) {
    if (SSL_read_ex(ssl.ssl, buf.data(), buf.size(), &n) != 1)
      return make_error("the reference stream ended after " + std::to_string(got) + " bytes");
    got += n;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s <= 0) return make_error("the reference stream took no measurable time");
  return double(got - untimed) / s / 1e9;
}

}  // namespace

Result<double> tls_stream_gbps(const fs::path& pki, const std::string& member,
                               std::uint64_t bytes) {
  const fs::path kit = pki / "clients" / member;
  auto server = make_server_tls_context((pki / "ca.pem").string(),
                                        (pki / "coordinator" / "cert.pem").string(),
                                        (pki / "coordinator" / "key.pem").string());
  if (!server) return server.error();
  auto client = make_client_tls_context((pki / "ca.pem").string(), (kit / "cert.pem").string(),
                                        (kit / "key.pem").string());
  if (!client) return client.error();
  unsigned short port = 0;
  auto listener = listen_loopback(port);
  if (!listener) return listener.error();
  Fd l(*listener);
  // A receiver that gives up closes its end: the sender's next write must fail, not kill us.
  ::signal(SIGPIPE, SIG_IGN);
  std::thread sender([&] { send_stream(**client, port, bytes); });
  Result<double> gbps = receive_stream(l.fd, **server, bytes);
  sender.join();
  return gbps;
}

}  // namespace federa::bench
