// The admin API against a real orchestrator (fake client links, a real state store, a real
// members file and audit log): every endpoint, both roles, revocation, bad input. The listener's
// sockets, TLS and limits are tested end to end by tests/admin/admin_e2e.py.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "common/fsutil.hpp"
#include "coordinator/admin/admin_api.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/strategies.hpp"
#include "tests/admin/admin_test_util.hpp"
#include "tests/coordinator/fake_clients.hpp"

using namespace federa;
using namespace federa::admin;
using namespace federa::testing;
namespace fs = std::filesystem;
namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

const ModelLayout test_layout{{{"w", {6}}, {"b", {2}}}};

// An orchestrator over fake links with a members file, a state folder and the admin API on top.
struct Fixture {
  fs::path dir = fresh_dir("federa-admin-api");
  std::unique_ptr<AggregationBackend> backend;
  AdminState state{{.federation = "test", .total_rounds = 1, .min_clients = 2}};
  std::unique_ptr<Orchestrator> orch;
  std::optional<AuditLog> audit;
  std::unique_ptr<AdminApi> api;
  int stops = 0;
  std::thread runner;
  Status result;

  Fixture() {
    REQUIRE(write_file_atomic(dir / "members.txt", "# test federation\na\nb\nc\n"));
    auto b = make_backend("cpu", 1);
    REQUIRE(b);
    backend = std::move(*b);
    auto s = make_strategy(StrategyOptions{}, *backend);
    REQUIRE(s);
    OrchestratorOptions o;
    o.rounds = 1;
    o.min_clients = 2;
    o.round_timeout = std::chrono::seconds(10);
    o.chunk_elements = 3;
    o.members = {"a", "b", "c"};
    o.train.model = "test";
    o.backend = backend.get();
    orch = std::make_unique<Orchestrator>(o, std::move(*s), Model(test_layout),
                                          StateStore(dir / "state"), std::nullopt);
    orch->add_observer(&state);
    auto log = AuditLog::open(dir / "audit.jsonl");
    REQUIRE(log);
    audit.emplace(std::move(*log));
    api = std::make_unique<AdminApi>(
        *orch, state, AdminApiOptions{dir / "state", dir / "members.txt"}, &*audit, [this] {
          ++stops;
          orch->stop();
        });
  }
  ~Fixture() {
    orch->stop();
    if (runner.joinable()) runner.join();
    fs::remove_all(dir);
  }

  ApiResponse call(http::verb m, const std::string& target, const Result<Caller>& who,
                   const std::string& body = "", const std::string& type = "application/json") {
    return api->handle({m, target, m == http::verb::post ? type : "", body}, who);
  }
};

Result<Caller> viewer() { return Caller{{"vera", AdminRole::view}, "token", "127.0.0.1:1"}; }
Result<Caller> an_operator() {
  return Caller{{"otto", AdminRole::operate}, "certificate", "127.0.0.1:2"};
}

json::object body(const ApiResponse& r) { return json::parse(r.body).as_object(); }

}  // namespace

TEST_CASE("admin api: callers are identified by certificate first, else by bearer token") {
  const fs::path dir = fresh_dir("federa-admin-auth");
  { std::ofstream(dir / "ca.pem") << "placeholder\n"; }  // create_admin_token wants a PKI folder
  auto token = create_admin_token(dir, "prometheus", AdminRole::view);
  REQUIRE(token);
  auto tokens = AdminTokens::load(dir / "admin-tokens");
  REQUIRE(tokens);
  const Result<AdminIdentity> no_cert =
      make_error(ErrorCode::not_found, "no client certificate offered");

  auto ok = authenticate(no_cert, "Bearer " + *token, &*tokens, "127.0.0.1:9");
  REQUIRE(ok);
  CHECK(ok->identity.name == "prometheus");
  CHECK(ok->via == "token");
  CHECK(authenticate(no_cert, "", &*tokens, "").error().code == ErrorCode::unauthenticated);
  CHECK(authenticate(no_cert, "Basic abc", &*tokens, "").error().code ==
        ErrorCode::unauthenticated);
  CHECK(authenticate(no_cert, "Bearer fdt_wrong", &*tokens, "").error().code ==
        ErrorCode::unauthenticated);
  CHECK(authenticate(no_cert, "Bearer " + *token, nullptr, "").error().code ==
        ErrorCode::unauthenticated);
  // A member's certificate is refused even alongside a valid token; an expired one too.
  auto member = authenticate(
      make_error(ErrorCode::permission_denied, "a client certificate is not an admin certificate"),
      "Bearer " + *token, &*tokens, "");
  CHECK(member.error().code == ErrorCode::permission_denied);
  CHECK(http_status(member.error().code) == 403);
  auto expired = authenticate(make_error(ErrorCode::unauthenticated, "certificate has expired"), "",
                              &*tokens, "");
  CHECK(http_status(expired.error().code) == 401);
  CHECK(expired.error().message.find("expired") != std::string::npos);
  auto cert = authenticate(AdminIdentity{"alice", AdminRole::operate}, "", nullptr, "127.0.0.1:3");
  REQUIRE(cert);
  CHECK(cert->via == "certificate");
  fs::remove_all(dir);
}

TEST_CASE("admin api: reads need a viewer, changes an operator, and every change is audited") {
  Fixture fx;
  FakeClient a(*fx.orch, "a"), b(*fx.orch, "b"), c(*fx.orch, "c");
  REQUIRE(a.join(10));
  REQUIRE(b.join(10));
  REQUIRE(c.join(10));

  const Result<Caller> nobody = make_error(ErrorCode::unauthenticated, "authentication required");
  CHECK(fx.call(http::verb::get, "/api/v1/status", nobody).status == 401);
  CHECK(fx.call(http::verb::get, "/metrics", nobody).status == 401);
  CHECK(fx.call(http::verb::get, "/healthz", nobody).status == 200);
  auto page = fx.call(http::verb::get, "/", nobody);
  CHECK(page.status == 200);
  CHECK(page.content_type.rfind("text/html", 0) == 0);
  CHECK(fx.call(http::verb::get, "/app.js", nobody).status == 200);
  CHECK(fx.call(http::verb::get, "/secret.txt", nobody).status == 404);

  auto status = fx.call(http::verb::get, "/api/v1/status", viewer());
  CHECK(status.status == 200);
  CHECK(body(status).at("clients_connected") == 3);
  CHECK(body(fx.call(http::verb::get, "/api/v1/whoami", viewer())).at("role") == "viewer");
  CHECK(
      body(fx.call(http::verb::get, "/api/v1/clients", viewer())).at("clients").as_array().size() ==
      3);
  CHECK(
      body(fx.call(http::verb::get, "/api/v1/members", viewer())).at("members").as_array().size() ==
      3);
  CHECK(fx.call(http::verb::get, "/api/v1/members/a", viewer()).status == 200);
  CHECK(fx.call(http::verb::get, "/api/v1/members/zed", viewer()).status == 404);
  CHECK(fx.call(http::verb::get, "/api/v1/rounds", viewer()).status == 200);
  CHECK(fx.call(http::verb::get, "/api/v1/rounds/x", viewer()).status == 400);
  CHECK(fx.call(http::verb::get, "/api/v1/rounds/4", viewer()).status == 404);
  CHECK(fx.call(http::verb::get, "/api/v1/events", viewer()).kind == ApiResponse::Kind::events);
  CHECK(fx.call(http::verb::get, "/api/v1/nothing", viewer()).status == 404);
  CHECK(fx.call(http::verb::put, "/api/v1/status", viewer()).status == 405);

  // A viewer cannot revoke: 403, b stays connected, and the attempt is in the audit log.
  auto denied = fx.call(http::verb::delete_, "/api/v1/members/b", viewer());
  CHECK(denied.status == 403);
  CHECK(!b.link().closed());
  CHECK(fx.call(http::verb::post, "/api/v1/pause", viewer(), "{}").status == 403);
  CHECK(!fx.orch->paused());

  // An operator revokes b: its session is closed before the call returns and it cannot rejoin.
  auto revoked = fx.call(http::verb::delete_, "/api/v1/members/b", an_operator());
  CHECK(revoked.status == 200);
  CHECK(b.link().closed());
  CHECK(b.link().close_code() == wire::Error::NOT_A_MEMBER);
  CHECK(fx.orch->members() == std::set<std::string>{"a", "c"});
  CHECK(*read_file(fx.dir / "members.txt") == "# test federation\na\nc\n");
  FakeClient b2(*fx.orch, "b");
  CHECK(!b2.join(10));

  auto added = fx.call(http::verb::post, "/api/v1/members", an_operator(), R"({"name":"d"})");
  CHECK(added.status == 201);
  CHECK(fx.orch->members() == std::set<std::string>{"a", "c", "d"});
  FakeClient d(*fx.orch, "d");
  CHECK(d.join(10));

  // Bad input: each a 4xx with its reason, nothing changed.
  CHECK(fx.call(http::verb::delete_, "/api/v1/members/zed", an_operator()).status == 404);
  CHECK(fx.call(http::verb::post, "/api/v1/members", an_operator(), R"({"name":"d"})").status ==
        409);
  auto malformed = fx.call(http::verb::post, "/api/v1/members", an_operator(), R"({"name":)");
  CHECK(malformed.status == 400);
  CHECK(std::string(body(malformed).at("error").as_string()).find("not valid JSON") !=
        std::string::npos);
  CHECK(fx.call(http::verb::post, "/api/v1/members", an_operator(), R"(["d"])").status == 400);
  CHECK(fx.call(http::verb::post, "/api/v1/members", an_operator(), R"({"name":"../../etc"})")
            .status == 400);
  CHECK(fx.call(http::verb::post, "/api/v1/members", an_operator(), R"({"name":"x"})", "text/plain")
            .status == 400);
  CHECK(fx.call(http::verb::delete_, "/api/v1/members/..%2F..%2Fetc", an_operator()).status == 400);
  CHECK(fx.orch->members() == std::set<std::string>{"a", "c", "d"});

  CHECK(fx.call(http::verb::post, "/api/v1/pause", an_operator(), "").status == 200);
  CHECK(fx.orch->paused());
  CHECK(body(fx.call(http::verb::get, "/api/v1/status", viewer())).at("phase") == "paused");
  CHECK(fx.call(http::verb::post, "/api/v1/resume", an_operator(), "{}").status == 200);
  CHECK(!fx.orch->paused());
  CHECK(fx.call(http::verb::post, "/api/v1/stop", an_operator(), R"({"after_round":"soon"})")
            .status == 400);
  // Statistics again: an operator's request, refused with its reason where there is no table.
  CHECK(fx.call(http::verb::post, "/api/v1/statistics", viewer(), "{}").status == 403);
  auto no_table = fx.call(http::verb::post, "/api/v1/statistics", an_operator(), "{}");
  CHECK(no_table.status == 409);
  CHECK(std::string(body(no_table).at("error").as_string()).find("no table") != std::string::npos);
  CHECK(
      body(fx.call(http::verb::get, "/api/v1/status", viewer())).at("table_statistics").is_null());

  auto audit = lines_of(fx.dir / "audit.jsonl");
  std::vector<std::string> seen;
  for (const auto& l : audit) {
    json::object o = json::parse(l).as_object();
    seen.push_back(std::string(o.at("who").as_string()) + " " +
                   std::string(o.at("action").as_string()) + " " +
                   std::string(o.at("target").as_string()) + " " +
                   std::to_string(o.at("status").to_number<int>()));
  }
  REQUIRE(seen.size() >= 6);
  CHECK(seen[0] == "vera members.remove b 403");
  CHECK(seen[1] == "vera pause  403");
  CHECK(seen[2] == "otto members.remove b 200");
  CHECK(seen[3] == "otto members.add d 201");
  CHECK(seen[4] == "otto members.remove zed 404");
  CHECK(std::find(seen.begin(), seen.end(), "otto pause  200") != seen.end());
}

TEST_CASE(
    "admin api: the model of a committed round is served from the state folder, others get 404") {
  Fixture fx;
  FakeClient a(*fx.orch, "a"), c(*fx.orch, "c");
  REQUIRE(a.join(10));
  REQUIRE(c.join(10));
  CHECK(fx.call(http::verb::get, "/api/v1/model", viewer()).status ==
        404);  // nothing committed yet
  fx.runner = std::thread([&] { fx.result = fx.orch->run(); });
  for (FakeClient* x : {&a, &c}) {
    auto t = x->wait_for_task();
    REQUIRE(t);
    REQUIRE(x->upload(t->task.round(), std::vector<float>(test_layout.size(), 1.0f), 10,
                      test_layout.hash(), 3));
  }
  fx.runner.join();
  REQUIRE(fx.result);
  auto latest = fx.call(http::verb::get, "/api/v1/model", viewer());
  REQUIRE(latest.kind == ApiResponse::Kind::file);
  CHECK(latest.file_size == fs::file_size(fx.dir / "state" / "global.safetensors"));
  CHECK(fx.call(http::verb::get, "/api/v1/model?round=1", viewer()).kind ==
        ApiResponse::Kind::file);
  auto later = fx.call(http::verb::get, "/api/v1/model?round=2", viewer());
  CHECK(later.status == 404);
  CHECK(std::string(body(later).at("error").as_string()).find("has not been committed") !=
        std::string::npos);
  for (const char* bad :
       {"/api/v1/model?round=0", "/api/v1/model?round=-1",
        "/api/v1/model?round=..%2F..%2Fstate.json", "/api/v1/model?round=1&round=1"})
    CHECK_MESSAGE(fx.call(http::verb::get, bad, viewer()).status == 400, bad);
  auto round = body(fx.call(http::verb::get, "/api/v1/rounds/1", viewer()));
  CHECK(round.at("clients").as_array().size() == 2);
  CHECK(round.at("clients").as_array()[0].at("outcome") == "accepted");
  // The job is over: control requests say so.
  CHECK(fx.call(http::verb::post, "/api/v1/pause", an_operator(), "{}").status == 409);
}
