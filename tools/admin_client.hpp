// federa-admin's HTTPS client for the coordinator's admin listener: TLS 1.3 against the
// federation CA, with an admin kit (certificate) or a bearer token. One request per connection;
// a download goes straight to a file (temp, then rename), never through memory.
//
//   AdminEndpoint ep{.host = "127.0.0.1", .port = 8444, .kit = "pki/admins/alice"};
//   Result<Reply> r = admin_request(ep, http::verb::get, "/api/v1/status");
//   Result<Reply> m = admin_download(ep, "/api/v1/model?round=3", "model.safetensors");
#pragma once

#include <boost/beast/http/verb.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "common/result.hpp"

namespace federa::admin_cli {

struct AdminEndpoint {
  std::string host = "127.0.0.1";
  unsigned short port = 8444;
  std::string kit;    // DIR with ca.pem, cert.pem, key.pem
  std::string token;  // bearer token (with ca)
  std::string ca;     // CA certificate when no kit is used
};

struct Reply {
  unsigned status = 0;
  std::string body;         // the body, or "" for a download
  std::uint64_t bytes = 0;  // bytes written for a download
};

Result<Reply> admin_request(const AdminEndpoint& ep, boost::beast::http::verb method,
                            const std::string& target, const std::string& body = "");
// A 200 answer goes to `out`; any other answer's body comes back in Reply::body.
Result<Reply> admin_download(const AdminEndpoint& ep, const std::string& target,
                             const std::filesystem::path& out);
// Reads server-sent events; `on_event(name, data)` returns false to stop.
Status admin_events(const AdminEndpoint& ep,
                    const std::function<bool(const std::string&, const std::string&)>& on_event,
                    Reply& refused);

}  // namespace federa::admin_cli
