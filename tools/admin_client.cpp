#include "tools/admin_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "common/tls.hpp"

namespace federa::admin_cli {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using Tcp = net::ip::tcp;

namespace {

Result<std::shared_ptr<ssl::context>> context(const AdminEndpoint& ep) {
  if (!ep.kit.empty())
    return make_client_tls_context(ep.kit + "/ca.pem", ep.kit + "/cert.pem", ep.kit + "/key.pem");
  if (ep.ca.empty())
    return make_error(
        ErrorCode::invalid_argument,
        "with --token, --ca FILE (the federation's ca.pem) is needed to check the coordinator");
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_3_VERSION);
  boost::system::error_code ec;
  ctx->load_verify_file(ep.ca, ec);
  if (ec)
    return make_error(ErrorCode::invalid_argument,
                      "cannot load the CA certificate " + ep.ca + ": " + ec.message());
  ctx->set_verify_mode(ssl::verify_peer, ec);
  return ctx;
}

struct Connection {
  net::io_context io;
  std::shared_ptr<ssl::context> ctx;
  std::unique_ptr<beast::ssl_stream<Tcp::socket>> stream;
};

Status connect(const AdminEndpoint& ep, Connection& c) {
  auto ctx = context(ep);
  if (!ctx) return ctx.error();
  c.ctx = *ctx;
  c.stream = std::make_unique<beast::ssl_stream<Tcp::socket>>(c.io, *c.ctx);
  if (Status s = set_client_tls_hostname(c.stream->native_handle(), ep.host); !s) return s;
  boost::system::error_code ec;
  Tcp::resolver resolver(c.io);
  auto results = resolver.resolve(ep.host, std::to_string(ep.port), ec);
  if (!ec) net::connect(c.stream->next_layer(), results, ec);
  const std::string where = ep.host + ":" + std::to_string(ep.port);
  if (ec)
    return make_error(ErrorCode::unavailable,
                      "cannot connect to the admin listener at " + where + ": " + ec.message());
  c.stream->handshake(ssl::stream_base::client, ec);
  if (ec)
    return make_error(ErrorCode::unavailable,
                      "TLS handshake with " + where +
                          " failed: " + describe_tls_error(ec, c.stream->native_handle()));
  return {};
}

http::request<http::string_body> make_request(const AdminEndpoint& ep, http::verb method,
                                              const std::string& target, const std::string& body) {
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, ep.host);
  req.set(http::field::user_agent, "federa-admin");
  if (!ep.token.empty()) req.set(http::field::authorization, "Bearer " + ep.token);
  if (method == http::verb::post) {
    req.set(http::field::content_type, "application/json");
    req.body() = body.empty() ? "{}" : body;
  }
  req.keep_alive(false);
  req.prepare_payload();
  return req;
}

Status transport_error(const boost::system::error_code& ec) {
  return make_error(ErrorCode::unavailable,
                    "the admin listener closed the connection: " + ec.message());
}

}  // namespace

Result<Reply> admin_request(const AdminEndpoint& ep, http::verb method, const std::string& target,
                            const std::string& body) {
  Connection c;
  if (Status s = connect(ep, c); !s) return s.error();
  boost::system::error_code ec;
  auto req = make_request(ep, method, target, body);
  http::write(*c.stream, req, ec);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  if (!ec) http::read(*c.stream, buf, parser, ec);
  if (ec) return transport_error(ec).error();
  return Reply{parser.get().result_int(), parser.get().body(), 0};
}

Result<Reply> admin_download(const AdminEndpoint& ep, const std::string& target,
                             const std::filesystem::path& out) {
  Connection c;
  if (Status s = connect(ep, c); !s) return s.error();
  boost::system::error_code ec;
  auto req = make_request(ep, http::verb::get, target, "");
  http::write(*c.stream, req, ec);
  beast::flat_buffer buf;
  http::response_parser<http::empty_body> head;
  if (!ec) http::read_header(*c.stream, buf, head, ec);
  if (ec) return transport_error(ec).error();
  if (head.get().result_int() != 200) {
    http::response_parser<http::string_body> rest(std::move(head));
    http::read(*c.stream, buf, rest, ec);
    return Reply{rest.get().result_int(), rest.get().body(), 0};
  }
  std::filesystem::path tmp = out;
  tmp += ".part";
  http::response_parser<http::file_body> body(std::move(head));
  body.body_limit(boost::none);
  body.get().body().open(tmp.c_str(), beast::file_mode::write, ec);
  if (ec)
    return make_error(ErrorCode::failed_precondition,
                      "cannot write " + tmp.string() + ": " + ec.message());
  http::read(*c.stream, buf, body, ec);
  body.get().body().close();
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return make_error(ErrorCode::unavailable, "the download broke off: " + ec.message());
  }
  std::filesystem::rename(tmp, out, ec);
  if (ec)
    return make_error(ErrorCode::failed_precondition, "cannot rename " + tmp.string() + " to " +
                                                          out.string() + ": " + ec.message());
  return Reply{200, "", std::filesystem::file_size(out)};
}

Status admin_events(const AdminEndpoint& ep,
                    const std::function<bool(const std::string&, const std::string&)>& on_event,
                    Reply& refused) {
  Connection c;
  if (Status s = connect(ep, c); !s) return s;
  boost::system::error_code ec;
  auto req = make_request(ep, http::verb::get, "/api/v1/events", "");
  http::write(*c.stream, req, ec);
  beast::flat_buffer buf;
  http::response_parser<http::empty_body> head;
  if (!ec) http::read_header(*c.stream, buf, head, ec);
  if (ec) return transport_error(ec);
  if (head.get().result_int() != 200) {
    http::response_parser<http::string_body> rest(std::move(head));
    http::read(*c.stream, buf, rest, ec);
    refused = Reply{rest.get().result_int(), rest.get().body(), 0};
    return make_error(ErrorCode::unavailable, "refused");
  }
  // The stream is not chunked (it ends when the connection does): read raw bytes from here on.
  std::string pending(static_cast<const char*>(buf.data().data()), buf.size());
  char chunk[4096];
  for (;;) {
    std::size_t end;
    while ((end = pending.find("\n\n")) != std::string::npos) {
      std::string frame = pending.substr(0, end), event = "message", data;
      pending.erase(0, end + 2);
      std::size_t pos = 0;
      while (pos <= frame.size()) {
        const std::size_t nl = std::min(frame.find('\n', pos), frame.size());
        const std::string line = frame.substr(pos, nl - pos);
        if (line.rfind("event: ", 0) == 0) event = line.substr(7);
        if (line.rfind("data: ", 0) == 0) data += line.substr(6);
        pos = nl + 1;
      }
      if (!data.empty() && !on_event(event, data)) return {};
    }
    const std::size_t n = c.stream->read_some(net::buffer(chunk), ec);
    if (ec) return make_error(ErrorCode::unavailable, "the event stream ended: " + ec.message());
    pending.append(chunk, n);
  }
}

}  // namespace federa::admin_cli
