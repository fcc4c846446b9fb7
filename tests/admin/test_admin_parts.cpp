// The admin listener's parts without a network: request targets, the members file, the audit
// log, and the view AdminState builds from orchestrator events (JSON and Prometheus text).
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/fsutil.hpp"
#include "coordinator/admin/admin_state.hpp"
#include "coordinator/admin/audit_log.hpp"
#include "coordinator/admin/http_util.hpp"
#include "coordinator/admin/members_file.hpp"
#include "tests/admin/admin_test_util.hpp"

using namespace federa;
using namespace federa::admin;
using federa::testing::fresh_dir;
using federa::testing::lines_of;
namespace fs = std::filesystem;
namespace json = boost::json;

TEST_CASE("admin: request targets are decoded strictly and traversal is refused") {
  auto t = parse_target("/api/v1/rounds/3?round=12&x=a%20b");
  REQUIRE(t);
  CHECK(t->segments == std::vector<std::string>{"api", "v1", "rounds", "3"});
  CHECK(t->query.at("round") == "12");
  CHECK(t->query.at("x") == "a b");
  CHECK(parse_target("//api//v1/")->segments.size() == 2);
  for (const char* bad :
       {"/../etc/passwd", "/api/v1/members/..", "/api/v1/members/..%2Fetc", "/%2e%2e/x",
        "/api/v1/members/a%5Cb", "/a%00b", "/a%zz", "/a%4", "relative", "", "/x?a=1&a=2"}) {
    auto r = parse_target(bad);
    CHECK_MESSAGE(!r, bad);
    if (!r) CHECK(r.error().code == ErrorCode::invalid_argument);
  }
  CHECK(!parse_target("/" + std::string(kMaxTargetLength, 'a')));
  CHECK(parse_uint("42") == 42u);
  for (const char* bad : {"", "-1", "+1", "1.5", " 1", "1e3", "../1", "99999999999999999999"})
    CHECK(!parse_uint(bad));
}

TEST_CASE("admin: members file edits keep comments, refuse the last member and read back") {
  const std::string text = "# hospitals\nsite-a   # north\nsite-b\n\nsite-c";
  auto added = members_text_add(text, "site-d", "added by alice");
  REQUIRE(added);
  CHECK(*added == text + "\nsite-d  # added by alice\n");
  CHECK(members_text_add(text, "site-a", "").error().code == ErrorCode::already_exists);
  auto removed = members_text_remove(text, "site-a");
  REQUIRE(removed);
  CHECK(*removed == "# hospitals\nsite-b\n\nsite-c\n");
  CHECK(members_text_remove(text, "nobody").error().code == ErrorCode::not_found);
  CHECK(members_text_remove("only # the one\n# x\n", "only").error().code ==
        ErrorCode::failed_precondition);

  const fs::path dir = fresh_dir("federa-members");
  const fs::path file = dir / "members.txt";
  REQUIRE(write_file_atomic(file, "site-a\nsite-b\n"));
  MembersFile m(file);
  auto now = m.add("site-c", "note");
  REQUIRE(now);
  CHECK(*now == std::set<std::string>{"site-a", "site-b", "site-c"});
  now = m.remove("site-a");
  REQUIRE(now);
  CHECK(*now == std::set<std::string>{"site-b", "site-c"});
  CHECK(*read_file(file) == "site-b\nsite-c  # note\n");
  CHECK(!m.remove("site-a"));
  CHECK(*read_file(file) ==
        "site-b\nsite-c  # note\n");  // a refused edit leaves the file as it was
  CHECK(!fs::exists(dir / "members.txt.tmp"));
  fs::remove_all(dir);
}

TEST_CASE(
    "admin: the audit log appends one JSON line per entry, mode 0600, and refuses a shared file") {
  const fs::path dir = fresh_dir("federa-audit");
  const fs::path file = dir / "audit.jsonl";
  {
    auto log = AuditLog::open(file);
    REQUIRE(log);
    REQUIRE(log->write({"alice", "operator", "certificate", "127.0.0.1:1", "members.remove",
                        "site-b", 200, "ok", ""}));
  }
  {
    auto log = AuditLog::open(file);  // reopening appends, never truncates
    REQUIRE(log);
    REQUIRE(log->write(
        {"bob", "viewer", "token", "127.0.0.1:2", "pause", "", 403, "refused", "a viewer"}));
  }
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto lines = lines_of(file);
  REQUIRE(lines.size() == 2);
  json::object first = json::parse(lines[0]).as_object();
  CHECK(first.at("who") == "alice");
  CHECK(first.at("action") == "members.remove");
  CHECK(first.at("target") == "site-b");
  CHECK(first.at("outcome") == "ok");
  CHECK(std::string(first.at("time").as_string()).size() == 24);  // 2025-05-01T12:00:00.123Z
  json::object second = json::parse(lines[1]).as_object();
  CHECK(second.at("status") == 403);
  CHECK(second.at("reason") == "a viewer");
  ::chmod(file.c_str(), 0666);
  CHECK(AuditLog::open(file).error().code == ErrorCode::failed_precondition);
  fs::remove_all(dir);
}

TEST_CASE("admin: AdminState follows clients and rounds from events and publishes each one") {
  std::vector<std::pair<std::string, std::string>> published;
  AdminState st({.federation = "demo", .total_rounds = 3, .min_clients = 2},
                [&](std::string_view e, std::string j) { published.emplace_back(e, j); });
  st.seed_rounds({R"({"round":1,"clients":2,"selected":2,"loss":0.9,"accuracy":0.5})", "not json"});
  LiveFacts f;
  f.completed = 1;
  f.connected = 2;
  f.members = {"a", "b", "c"};
  st.on_client_joined({"a", "127.0.0.1:1000", 10, "federa-client"});
  st.on_client_joined({"b", "127.0.0.1:1001", 30, "federa-client"});
  CHECK(st.status(f).at("phase") == "waiting");
  st.on_round_started({2,
                       1,
                       TaskKind::fit,
                       {"a", "b"},
                       2,
                       false,
                       std::chrono::system_clock::now() + std::chrono::seconds(60)});
  CHECK(st.round_open());
  CHECK(st.status(f).at("phase") == "training");
  CHECK(st.status(f).at("round").at("selected").as_array().size() == 2);
  st.on_update({2, 1, {"a", UpdateOutcome::accepted, "", 10, {{"train_loss", 0.5}}}});
  st.on_update({2, 1, {"b", UpdateOutcome::dropped, "missed the 60 s deadline", 0, {}}});
  CHECK(st.status(f).at("phase") == "aggregating");
  RoundReport r;
  r.round = 2;
  r.selected = 2;
  r.accepted = 1;
  r.dropped = 1;
  r.duration_ms = 1500;
  r.clients = {{"a", UpdateOutcome::accepted, "", 10, {}},
               {"b", UpdateOutcome::dropped, "missed the 60 s deadline", 0, {}}};
  r.metrics_line =
      R"({"round":2,"clients":1,"selected":2,"loss":0.7,"accuracy":0.6,"fed_loss":0.8,"fed_accuracy":0.55})";
  st.on_round_committed(r);
  st.on_client_left({"b", "closed by the client"});
  f.completed = 2;
  f.connected = 1;
  CHECK(!st.round_open());

  json::object clients = st.clients(f);
  auto& list = clients.at("clients").as_array();
  REQUIRE(list.size() == 3);  // a, b seen; c a member never seen
  CHECK(list[0].at("name") == "a");
  CHECK(list[0].at("connected") == true);
  CHECK(list[0].at("address") == "127.0.0.1:1000");
  CHECK(list[0].at("rounds_accepted") == 1);
  CHECK(list[1].at("connected") == false);
  CHECK(list[1].at("last_outcome") == "dropped");
  CHECK(list[1].at("last_reason") == "missed the 60 s deadline");
  CHECK(list[1].at("left_reason") == "closed by the client");
  CHECK(list[2].at("seen") == false);

  auto rounds = st.rounds().at("rounds").as_array();
  REQUIRE(rounds.size() == 2);
  CHECK(rounds[0].at("round") == 1);  // seeded from the metrics file of an earlier run
  CHECK(rounds[1].at("fed_accuracy").as_double() == doctest::Approx(0.55));
  auto detail = st.round(2);
  REQUIRE(detail);
  CHECK(detail->at("clients").as_array()[1].at("reason") == "missed the 60 s deadline");
  CHECK(!st.round(7));

  const std::string prom = st.prometheus(f);
  CHECK(prom.find("federa_rounds_completed 2\n") != std::string::npos);
  CHECK(prom.find("federa_clients_connected 1\n") != std::string::npos);
  CHECK(prom.find("federa_round_duration_seconds_bucket{le=\"2.5\"} 1\n") != std::string::npos);
  CHECK(prom.find("federa_round_duration_seconds_bucket{le=\"1\"} 0\n") != std::string::npos);
  CHECK(prom.find("federa_updates_total{outcome=\"dropped\",reason=\"deadline\"} 1\n") !=
        std::string::npos);
  CHECK(prom.find("federa_last_round_fed_accuracy 0.55\n") != std::string::npos);
  CHECK(prom.find("process_resident_memory_bytes ") != std::string::npos);
  // Every sample line is "name{labels} value" and every family has HELP and TYPE.
  std::istringstream in(prom);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# ", 0) == 0) continue;
    CHECK_MESSAGE(line.find(' ') != std::string::npos, line);
  }

  std::vector<std::string> names;
  for (const auto& [e, j] : published) {
    names.push_back(e);
    CHECK(json::parse(j).is_object());
  }
  CHECK(names == std::vector<std::string>{"client_joined", "client_joined", "round_started",
                                          "update", "update", "round_committed", "client_left"});
  st.on_job_finished(Status(make_error(ErrorCode::cancelled, "stopped")));
  CHECK(st.status(f).at("phase") == "stopped");
}

TEST_CASE("admin: update reasons fall into a few classes for /metrics") {
  CHECK(reason_class(UpdateOutcome::accepted, "") == "none");
  CHECK(reason_class(UpdateOutcome::dropped, "missed the 600 s deadline") == "deadline");
  CHECK(reason_class(UpdateOutcome::dropped, "membership revoked") == "revoked");
  CHECK(reason_class(UpdateOutcome::dropped, "disconnected: closed by the client") ==
        "disconnected");
  CHECK(reason_class(UpdateOutcome::dropped, "client reported: out of memory") == "client_error");
  CHECK(reason_class(UpdateOutcome::rejected, "second update in the round") == "duplicate");
  CHECK(
      reason_class(
          UpdateOutcome::rejected,
          "outlier: the update's change from the global model has norm 1e+39, over the bound 12") ==
      "outlier");
  CHECK(reason_class(UpdateOutcome::rejected, "something new") == "other");
}
