// The admin API's requests and answers, without sockets: the listener (admin_server.hpp) does
// TLS, HTTP framing and limits, identifies the caller, and hands each request here. Keeping this
// part socket-free lets the tests drive every endpoint, role and bad input against a real
// orchestrator directly.
//
//   AdminApi api(orchestrator, state, {.state_dir = "state", .members_file = "members.txt"},
//   &audit,
//                [&] { stopped = true; orchestrator.stop(); });
//   ApiResponse r = api.handle({http::verb::get, "/api/v1/status", "", ""}, caller);
//
// Roles: every GET needs a viewer (or operator); POST and DELETE need an operator. Every POST or
// DELETE under /api/v1/ is written to the audit log with its outcome, refusals included.
#pragma once

#include <atomic>
#include <boost/beast/core/file.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/object.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/pki_admin.hpp"
#include "coordinator/admin/admin_state.hpp"
#include "coordinator/admin/audit_log.hpp"
#include "coordinator/orchestrator.hpp"

namespace federa::admin {

struct ApiRequest {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::string target;
  std::string content_type;
  std::string body;
};

// Who is asking, as the listener established it.
struct Caller {
  AdminIdentity identity;
  std::string via;      // "certificate" | "token"
  std::string address;  // peer address
};

struct ApiResponse {
  enum class Kind { body, file, events };
  Kind kind = Kind::body;
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  boost::beast::file file;  // Kind::file: opened, positioned at 0
  std::uint64_t file_size = 0;
};

struct AdminApiOptions {
  std::filesystem::path state_dir;
  std::filesystem::path members_file;  // empty: members cannot be changed (no --members)
};

// The caller behind a request: its admin certificate when it presented one (cert_identity is
// peer_admin_identity's answer), else its bearer token ("Authorization: Bearer fdt_...").
// unauthenticated (401) for none, a wrong token or a certificate that does not verify (expired,
// another CA); permission_denied (403) for a certificate that is not an admin's.
Result<Caller> authenticate(const Result<AdminIdentity>& cert_identity,
                            std::string_view authorization, const AdminTokens* tokens,
                            const std::string& address);

// The HTTP status for an error code.
unsigned http_status(ErrorCode code);

class AdminApi {
 public:
  using StopHook = std::function<void()>;

  AdminApi(Orchestrator& orchestrator, AdminState& state, AdminApiOptions options, AuditLog* audit,
           StopHook stop);

  // Adds figures from outside the orchestrator to /metrics and the status (the listener's open
  // connections and streams, the transport's bytes). Call before serving.
  void add_facts(std::function<void(LiveFacts&)> fill) { fact_sources_.push_back(std::move(fill)); }

  // `caller` is the authentication result; public paths (/, the dashboard's files, /healthz)
  // are answered whatever it is.
  ApiResponse handle(const ApiRequest& request, const Result<Caller>& caller);
  // Called about once a second by the listener: carries out a stop requested "after the round".
  void tick();
  LiveFacts facts() const;

 private:
  ApiResponse dispatch(const ApiRequest& req, const std::vector<std::string>& seg,
                       const std::map<std::string, std::string>& query, const Caller& caller);
  ApiResponse get(const std::vector<std::string>& seg,
                  const std::map<std::string, std::string>& query, const Caller& caller);
  ApiResponse change(const ApiRequest& req, const std::vector<std::string>& seg,
                     const Caller& caller, std::string& target);
  ApiResponse members_get(const std::vector<std::string>& seg);
  ApiResponse members_add(const std::string& body, const Caller& caller, std::string& target);
  ApiResponse members_remove(const std::string& name, std::string& target);
  ApiResponse control(const std::string& what, const std::string& body, const Caller& caller);
  ApiResponse model(const std::map<std::string, std::string>& query);
  void audit(const Result<Caller>& caller, const std::string& action, const std::string& target,
             const ApiResponse& response);

  Orchestrator& orch_;
  AdminState& state_;
  AdminApiOptions opt_;
  AuditLog* audit_;
  StopHook stop_;
  std::vector<std::function<void(LiveFacts&)>> fact_sources_;
  std::mutex change_mu_;  // one change at a time (members file edits)
  std::atomic<bool> stop_after_round_{false};
  std::atomic<bool> stop_requested_{false};
};

ApiResponse json_response(unsigned status, const boost::json::object& body);
ApiResponse error_response(const Error& e);

}  // namespace federa::admin
