#include "tests/integration/attack_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "common/tls.hpp"

namespace federa::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

Result<TlsMemberEnd> run_tls_member(const TlsMemberOptions& o, Member& member) {
  auto tls = make_client_tls_context(o.kit + "/ca.pem", o.kit + "/cert.pem", o.kit + "/key.pem");
  if (!tls) return tls.error();
  net::io_context io;
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(io, **tls);
  beast::error_code ec;
  net::ip::tcp::resolver resolver(io);
  auto endpoints = resolver.resolve(o.host, std::to_string(o.port), ec);
  if (!ec) beast::get_lowest_layer(ws).connect(endpoints, ec);
  if (ec) return make_error(ErrorCode::unavailable, "cannot connect: " + ec.message());
  if (Status s = set_client_tls_hostname(ws.next_layer().native_handle(), o.host); !s)
    return s.error();
  ws.next_layer().handshake(net::ssl::stream_base::client, ec);
  if (!ec) ws.handshake(o.host, "/v1/connect", ec);
  if (ec) return make_error(ErrorCode::unavailable, "handshake: " + ec.message());
  ws.binary(true);
  ws.read_message_max(kMaxMessageBytes);

  TlsMemberEnd end;
  auto send = [&](const wire::Envelope& e) {
    std::string bytes = e.SerializeAsString();
    ws.write(net::buffer(bytes), ec);
    return !ec;
  };
  if (!send(member.hello())) return make_error(ErrorCode::unavailable, "write: " + ec.message());

  // One read always outstanding; the loop runs the io_context in short slices so the member can
  // also act on its own clock (tick) between messages.
  beast::flat_buffer buffer;
  bool reading = false, closed = false;
  auto start_read = [&] {
    reading = true;
    ws.async_read(buffer, [&](beast::error_code rec, std::size_t n) {
      reading = false;
      if (rec) {
        closed = true;
        return;
      }
      wire::Envelope in;
      auto d = buffer.data();
      const bool ok = in.ParseFromArray(d.data(), static_cast<int>(d.size()));
      buffer.consume(n);
      if (!ok) return;
      ++end.received;
      if (in.has_bye()) end.federation_complete = in.bye().federation_complete();
      if (in.has_error()) end.closed_with = in.error().message();
      for (const auto& out : member.on_message(in))
        if (!send(out)) closed = true;
    });
  };
  const auto until = std::chrono::steady_clock::now() + o.limit;
  while (!closed && !end.federation_complete && std::chrono::steady_clock::now() < until) {
    if (!reading) start_read();
    io.restart();
    io.run_for(std::chrono::milliseconds(20));
    for (const auto& out : member.tick())
      if (!send(out)) closed = true;
  }
  beast::get_lowest_layer(ws).close();
  io.restart();
  io.run_for(std::chrono::milliseconds(100));
  return end;
}

}  // namespace federa::testing
