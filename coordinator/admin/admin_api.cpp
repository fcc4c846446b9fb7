// Routing, authentication and the read-only endpoints. Changes (members, pause, resume, stop)
// and the model download are in admin_actions.cpp.
#include "coordinator/admin/admin_api.hpp"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>

#include "coordinator/admin/http_util.hpp"
#include "coordinator/admin/web_assets.hpp"

namespace federa::admin {

namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

// What the audit log calls a change request, whether or not it gets through.
std::string action_name(http::verb method, const std::vector<std::string>& seg) {
  if (seg.size() < 3 || seg[0] != "api" || seg[1] != "v1") return "unknown";
  if (seg[2] == "members") return method == http::verb::delete_ ? "members.remove" : "members.add";
  return seg[2];
}

}  // namespace

unsigned http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return 400;
    case ErrorCode::unauthenticated:
      return 401;
    case ErrorCode::permission_denied:
      return 403;
    case ErrorCode::not_found:
      return 404;
    case ErrorCode::already_exists:
    case ErrorCode::failed_precondition:
    case ErrorCode::aborted:
      return 409;
    case ErrorCode::resource_exhausted:
      return 429;
    case ErrorCode::unavailable:
      return 503;
    case ErrorCode::deadline_exceeded:
      return 504;
    default:
      return 500;
  }
}

ApiResponse json_response(unsigned status, const json::object& body) {
  ApiResponse r;
  r.status = status;
  r.body = json::serialize(body) + "\n";
  return r;
}

ApiResponse error_response(const Error& e) {
  ApiResponse r;
  r.status = http_status(e.code);
  r.body = error_json(e) + "\n";
  if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"federa-admin\"");
  return r;
}

Result<Caller> authenticate(const Result<AdminIdentity>& cert, std::string_view authorization,
                            const AdminTokens* tokens, const std::string& address) {
  if (cert) return Caller{*cert, "certificate", address};
  // A certificate that was offered decides: a member's or an expired one is refused even with a
  // token, so a wrong kit is noticed instead of silently falling back.
  if (cert.error().code != ErrorCode::not_found) {
    Error e = cert.error();
    e.message = "admin certificate refused: " + e.message;
    return e;
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.empty())
    return make_error(
        ErrorCode::unauthenticated,
        "authentication required: present an admin certificate (federa-pki issue --admin NAME "
        "--role ROLE) or an 'Authorization: Bearer TOKEN' header (federa-pki token)");
  if (authorization.substr(0, kBearer.size()) != kBearer)
    return make_error(ErrorCode::unauthenticated,
                      "the Authorization header must be 'Bearer TOKEN'");
  if (tokens == nullptr)
    return make_error(
        ErrorCode::unauthenticated,
        "this coordinator accepts no bearer tokens (start it with --admin-token-file)");
  auto who = tokens->verify(authorization.substr(kBearer.size()));
  if (!who) return who.error();
  return Caller{*who, "token", address};
}

AdminApi::AdminApi(Orchestrator& orchestrator, AdminState& state, AdminApiOptions options,
                   AuditLog* audit, StopHook stop)
    : orch_(orchestrator),
      state_(state),
      opt_(std::move(options)),
      audit_(audit),
      stop_(std::move(stop)) {}

LiveFacts AdminApi::facts() const {
  LiveFacts f;
  f.completed = orch_.completed_rounds();
  f.connected = orch_.connected_clients();
  f.paused = orch_.paused();
  f.members = orch_.members();
  f.members_file = !opt_.members_file.empty();
  for (const auto& fill : fact_sources_) fill(f);
  return f;
}

ApiResponse AdminApi::handle(const ApiRequest& req, const Result<Caller>& caller) {
  auto target = parse_target(req.target);
  const bool changes = req.method == http::verb::post || req.method == http::verb::delete_;
  if (!target) {
    ApiResponse r = error_response(target.error());
    if (changes) audit(caller, "invalid-target", "", r);
    return r;
  }
  const auto& seg = target->segments;
  // Public: the dashboard's static files (no data in them) and the liveness probe.
  if (req.method == http::verb::get) {
    if (seg.empty() || (seg.size() == 1 && seg[0] != "metrics" && seg[0] != "api")) {
      if (seg.size() == 1 && seg[0] == "healthz") {
        ApiResponse r;
        r.content_type = "text/plain; charset=utf-8";
        r.body = "ok\n";
        return r;
      }
      const WebAsset* asset = find_web_asset(seg.empty() ? "index.html" : seg[0]);
      if (asset == nullptr) return error_response(make_error(ErrorCode::not_found, "no such page"));
      ApiResponse r;
      r.content_type = std::string(asset->content_type);
      r.body = std::string(asset->body);
      r.headers.emplace_back("ETag", std::string(asset->etag));
      return r;
    }
  }
  if (!caller) {
    ApiResponse r = error_response(caller.error());
    if (changes) audit(caller, action_name(req.method, seg), seg.size() > 3 ? seg[3] : "", r);
    return r;
  }
  return dispatch(req, seg, target->query, *caller);
}

ApiResponse AdminApi::dispatch(const ApiRequest& req, const std::vector<std::string>& seg,
                               const std::map<std::string, std::string>& query,
                               const Caller& caller) {
  const bool api = seg.size() >= 3 && seg[0] == "api" && seg[1] == "v1";
  if (req.method == http::verb::get) return get(seg, query, caller);
  if (req.method != http::verb::post && req.method != http::verb::delete_) {
    ApiResponse r = error_response(make_error(ErrorCode::invalid_argument, "method not allowed"));
    r.status = 405;
    r.headers.emplace_back("Allow", "GET, POST, DELETE");
    return r;
  }
  std::string action = action_name(req.method, seg), target = seg.size() > 3 ? seg[3] : "";
  ApiResponse r;
  if (!api) {
    r = error_response(make_error(ErrorCode::not_found, "no such endpoint"));
  } else if (!role_allows(caller.identity.role, AdminRole::operate)) {
    r = error_response(
        make_error(ErrorCode::permission_denied,
                   "'" + caller.identity.name + "' is a viewer; changes need the operator role"));
  } else {
    std::lock_guard lk(change_mu_);
    r = change(req, seg, caller, target);
  }
  audit(Result<Caller>(caller), action, target, r);
  return r;
}

void AdminApi::audit(const Result<Caller>& caller, const std::string& action,
                     const std::string& target, const ApiResponse& r) {
  AuditEntry e;
  if (caller) {
    e.who = caller->identity.name;
    e.role = std::string(admin_role_name(caller->identity.role));
    e.via = caller->via;
    e.address = caller->address;
  }
  e.action = action;
  e.target = target;
  e.status = r.status;
  e.outcome = r.status < 300 ? "ok" : r.status < 500 ? "refused" : "failed";
  if (r.status >= 300) {
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    if (!ec && v.is_object() && v.as_object().contains("error") && v.at("error").is_string())
      e.reason = std::string(v.at("error").as_string());
  }
  spdlog::info("admin: {} ({}) {} {} -> {}{}", e.who.empty() ? "?" : e.who,
               e.via.empty() ? "-" : e.via, action, target, r.status,
               e.reason.empty() ? "" : ": " + e.reason);
  if (audit_ == nullptr) return;
  if (Status s = audit_->write(e); !s) spdlog::error("admin: {}", s.message());
}

ApiResponse AdminApi::get(const std::vector<std::string>& seg,
                          const std::map<std::string, std::string>& query, const Caller& caller) {
  if (seg.size() == 1 && seg[0] == "metrics") {
    ApiResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = state_.prometheus(facts());
    return r;
  }
  if (seg.size() < 3 || seg[0] != "api" || seg[1] != "v1")
    return error_response(make_error(ErrorCode::not_found, "no such endpoint"));
  const std::string& what = seg[2];
  if (seg.size() == 3) {
    if (what == "status") return json_response(200, state_.status(facts()));
    if (what == "clients") return json_response(200, state_.clients(facts()));
    if (what == "rounds") return json_response(200, state_.rounds());
    if (what == "whoami")
      return json_response(
          200, json::object{{"name", caller.identity.name},
                            {"role", std::string(admin_role_name(caller.identity.role))},
                            {"via", caller.via}});
    if (what == "model") return model(query);
    if (what == "events") {
      ApiResponse r;
      r.kind = ApiResponse::Kind::events;
      r.content_type = "text/event-stream";
      return r;
    }
  }
  if (what == "members" && seg.size() <= 4) return members_get(seg);
  if (what == "rounds" && seg.size() == 4) {
    auto n = parse_uint(seg[3]);
    if (!n)
      return error_response(make_error(ErrorCode::invalid_argument,
                                       "a round is a positive whole number, not '" + seg[3] + "'"));
    auto r = state_.round(*n);
    if (!r)
      return error_response(make_error(
          ErrorCode::not_found,
          "round " + seg[3] + " is not known (not started yet, or older than the rounds kept)"));
    return json_response(200, *r);
  }
  return error_response(make_error(ErrorCode::not_found, "no such endpoint"));
}

}  // namespace federa::admin
