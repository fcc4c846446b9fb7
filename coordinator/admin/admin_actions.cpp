// The endpoints that change something (members, pause, resume, stop, statistics) and the model
// download.
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <cstring>

#include "common/pki.hpp"
#include "coordinator/admin/admin_api.hpp"
#include "coordinator/admin/http_util.hpp"
#include "coordinator/admin/members_file.hpp"

namespace federa::admin {

namespace json = boost::json;
namespace http = boost::beast::http;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kMaxSafetensorsHeader = 100u << 20;

// The JSON object in a request body; an empty body is an empty object.
Result<json::object> body_object(const std::string& body) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return json::object{};
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec)
    return make_error(ErrorCode::invalid_argument, "the body is not valid JSON: " + ec.message());
  if (!v.is_object())
    return make_error(ErrorCode::invalid_argument, "the body must be a JSON object");
  return std::move(v.as_object());
}

json::array names(const std::set<std::string>& s) {
  json::array a;
  for (const auto& n : s) a.emplace_back(n);
  return a;
}

// The federa.round a safetensors file's metadata names, read from its header only; the file is
// left positioned at 0.
std::optional<std::uint64_t> safetensors_round(boost::beast::file& f) {
  boost::system::error_code ec;
  unsigned char len[8];
  if (f.read(len, 8, ec) != 8 || ec) return std::nullopt;
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n == 0 || n > kMaxSafetensorsHeader) return std::nullopt;
  std::string header(n, '\0');
  if (f.read(header.data(), n, ec) != n || ec) return std::nullopt;
  f.seek(0, ec);
  if (ec) return std::nullopt;
  json::value v = json::parse(header, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::value* meta = v.as_object().if_contains("__metadata__");
  if (meta == nullptr || !meta->is_object()) return std::nullopt;
  const json::value* round = meta->as_object().if_contains("federa.round");
  if (round == nullptr || !round->is_string()) return std::nullopt;
  return parse_uint(round->as_string());
}

}  // namespace

ApiResponse AdminApi::change(const ApiRequest& req, const std::vector<std::string>& seg,
                             const Caller& caller, std::string& target) {
  const std::string& what = seg[2];
  // A JSON content type on every POST: a cross-site form cannot send one without a CORS
  // preflight, which this listener never grants.
  if (req.method == http::verb::post && req.content_type.substr(0, 16) != "application/json")
    return error_response(
        make_error(ErrorCode::invalid_argument,
                   "POST needs 'Content-Type: application/json' (an empty body is fine)"));
  if (what == "members") {
    if (req.method == http::verb::post && seg.size() == 3) {
      return members_add(req.body, caller, target);
    }
    if (req.method == http::verb::delete_ && seg.size() == 4) {
      return members_remove(seg[3], target);
    }
    return error_response(
        make_error(ErrorCode::invalid_argument,
                   "use POST /api/v1/members {\"name\": NAME} or DELETE /api/v1/members/NAME"));
  }
  if (req.method == http::verb::post && seg.size() == 3 &&
      (what == "pause" || what == "resume" || what == "stop"))
    return control(what, req.body, caller);
  if (req.method == http::verb::post && seg.size() == 3 && what == "statistics") {
    if (auto o = body_object(req.body); !o) return error_response(o.error());
    if (Status s = orch_.request_statistics(); !s) return error_response(s.error());
    state_.note_action("statistics_requested", json::object{{"by", caller.identity.name}});
    return json_response(202,
                         json::object{{"statistics", "requested"},
                                      {"note",
                                       "computed before the next round; every task then carries "
                                       "the new global means and standard deviations"}});
  }
  return error_response(make_error(ErrorCode::not_found, "no such endpoint"));
}

ApiResponse AdminApi::members_get(const std::vector<std::string>& seg) {
  const LiveFacts f = facts();
  if (seg.size() == 4) {
    if (Status s = validate_client_name(seg[3]); !s) return error_response(s.error());
    const bool member = f.members.empty() || f.members.count(seg[3]) > 0;
    if (!member)
      return error_response(make_error(ErrorCode::not_found, "'" + seg[3] + "' is not a member"));
    return json_response(
        200,
        json::object{{"name", seg[3]}, {"member", true}, {"listed", f.members.count(seg[3]) > 0}});
  }
  return json_response(200, json::object{{"members", names(f.members)},
                                         {"open_membership", f.members.empty()},
                                         {"file", opt_.members_file.string()}});
}

ApiResponse AdminApi::members_add(const std::string& body, const Caller& caller,
                                  std::string& target) {
  auto o = body_object(body);
  if (!o) return error_response(o.error());
  const json::value* name = o->if_contains("name");
  if (name == nullptr || !name->is_string())
    return error_response(
        make_error(ErrorCode::invalid_argument, "the body must be {\"name\": \"MEMBER\"}"));
  target = std::string(name->as_string());
  if (Status s = validate_client_name(target); !s) return error_response(s.error());
  if (opt_.members_file.empty())
    return error_response(make_error(
        ErrorCode::failed_precondition,
        "this coordinator runs without --members (any client the CA signed is admitted); "
        "restart it with --members FILE to manage members"));
  MembersFile file(opt_.members_file);
  auto now = file.add(target, "added by " + caller.identity.name + " via the admin API, " +
                                  utc_timestamp(std::chrono::system_clock::now()));
  if (!now) return error_response(now.error());
  orch_.set_members(*now);
  state_.note_action("members_changed",
                     json::object{{"added", target}, {"by", caller.identity.name}});
  return json_response(201, json::object{{"added", target}, {"members", names(*now)}});
}

ApiResponse AdminApi::members_remove(const std::string& name, std::string& target) {
  target = name;
  if (Status s = validate_client_name(name); !s) return error_response(s.error());
  if (opt_.members_file.empty())
    return error_response(make_error(
        ErrorCode::failed_precondition,
        "this coordinator runs without --members (any client the CA signed is admitted); "
        "restart it with --members FILE to revoke members"));
  auto now = MembersFile(opt_.members_file).remove(name);
  if (!now) return error_response(now.error());
  orch_.set_members(
      *now);  // closes the member's session at once; on_connect refuses it from now on
  state_.note_action("members_changed", json::object{{"removed", name}});
  return json_response(200, json::object{{"removed", name}, {"members", names(*now)}});
}

ApiResponse AdminApi::control(const std::string& what, const std::string& body,
                              const Caller& caller) {
  auto o = body_object(body);
  if (!o) return error_response(o.error());
  if (state_.finished())
    return error_response(
        make_error(ErrorCode::failed_precondition, "the job has already finished"));
  if (what == "pause") {
    orch_.pause();
    state_.note_action("paused", json::object{{"by", caller.identity.name}});
    return json_response(
        200,
        json::object{{"paused", true}, {"note", "the open round finishes; no new round starts"}});
  }
  if (what == "resume") {
    if (stop_requested_ || stop_after_round_)
      return error_response(make_error(ErrorCode::failed_precondition,
                                       "a stop was requested; the job cannot resume"));
    orch_.resume();
    state_.note_action("resumed", json::object{{"by", caller.identity.name}});
    return json_response(200, json::object{{"paused", false}});
  }
  bool after_round = false;
  if (const json::value* v = o->if_contains("after_round")) {
    if (!v->is_bool())
      return error_response(
          make_error(ErrorCode::invalid_argument, "'after_round' must be true or false"));
    after_round = v->as_bool();
  }
  if (after_round && state_.round_open()) {
    stop_after_round_ = true;
    orch_.pause();
    state_.note_stopping("after the open round, requested by " + caller.identity.name);
    return json_response(202, json::object{{"stopping", true}, {"after_round", true}});
  }
  stop_requested_ = true;
  state_.note_stopping("requested by " + caller.identity.name);
  if (stop_) stop_();
  return json_response(202, json::object{{"stopping", true}, {"after_round", false}});
}

void AdminApi::tick() {
  if (!stop_after_round_ || stop_requested_ || state_.round_open()) return;
  stop_requested_ = true;
  spdlog::info("admin: the open round is over; stopping as requested");
  if (stop_) stop_();
}

ApiResponse AdminApi::model(const std::map<std::string, std::string>& query) {
  const std::uint64_t completed = orch_.completed_rounds();
  std::uint64_t round = completed;
  if (auto it = query.find("round"); it != query.end()) {
    auto n = parse_uint(it->second);
    if (!n || *n == 0)
      return error_response(
          make_error(ErrorCode::invalid_argument, "round must be a positive whole number"));
    round = *n;
  }
  if (round == 0)
    return error_response(make_error(ErrorCode::not_found, "no round has been committed yet"));
  if (round > completed)
    return error_response(make_error(ErrorCode::not_found,
                                     "round " + std::to_string(round) +
                                         " has not been committed; the last committed round is " +
                                         std::to_string(completed)));
  // Only numbers reach these names: the round was parsed as digits above.
  std::vector<fs::path> candidates{opt_.state_dir / "history" /
                                   ("global-round-" + std::to_string(round) + ".safetensors")};
  if (round == completed) candidates.push_back(opt_.state_dir / "global.safetensors");
  for (const fs::path& p : candidates) {
    ApiResponse r;
    boost::system::error_code ec;
    r.file.open(p.c_str(), boost::beast::file_mode::scan, ec);
    if (ec) continue;
    // The file must hold that round: global.safetensors moves on when the next round commits.
    if (safetensors_round(r.file) != round) continue;
    r.file_size = r.file.size(ec);
    if (ec) continue;
    r.kind = ApiResponse::Kind::file;
    r.content_type = "application/octet-stream";
    r.headers.emplace_back("Content-Disposition", "attachment; filename=\"global-round-" +
                                                      std::to_string(round) + ".safetensors\"");
    return r;
  }
  return error_response(
      make_error(ErrorCode::not_found,
                 "the model of round " + std::to_string(round) +
                     " is no longer kept (the latest round's is global.safetensors in the state "
                     "folder; earlier rounds are kept in its history/ folder when it has one)"));
}

}  // namespace federa::admin
