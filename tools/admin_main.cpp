// federa-admin: the coordinator's admin API from a shell. Every command takes --json to print
// the API's own JSON instead of a table.
//
//   federa-admin --server 127.0.0.1:8444 --kit pki/admins/alice status
//   FEDERA_ADMIN_TOKEN=fdt_... federa-admin --ca pki/ca.pem members remove hospital-b
//   federa-admin --kit pki/admins/alice model --round 12 -o round-12.safetensors
//
// Exit status: 0 done; 1 the coordinator answered with an error or could not be reached;
// 2 bad usage; 3 not authenticated or not allowed (401/403).
#include <boost/json.hpp>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "common/options.hpp"
#include "tools/admin_client.hpp"
#include "tools/admin_format.hpp"

using namespace federa;
using namespace federa::admin_cli;
namespace http = boost::beast::http;

namespace {

constexpr const char* kUsage =
    R"(federa-admin: operate a federa coordinator through its admin listener.

usage: federa-admin [options] COMMAND [ARGS]

commands
  status                      job, round, phase, deadline, clients connected
  clients                     every client: connected since, address, rounds taken part in, last outcome
  rounds [N]                  committed rounds (loss, accuracy, participation), or round N per client
  members [list]              the member list
  members add NAME            admit NAME at once (the members file is rewritten)
  members remove NAME         revoke NAME: its session is closed at once and it cannot reconnect
  pause | resume              no new round starts while paused (the open one finishes)
  stop [--after-round]        stop the job (now: the open round is abandoned; or after it commits)
  statistics                  tabular federations: compute the feature statistics again before the next round
  model [--round N] -o FILE   download the global model (safetensors) of round N (default: latest)
  events [--count N]          follow the live event stream (stop after N events)

options
  --server HOST:PORT   the admin listener (default $FEDERA_ADMIN_SERVER or 127.0.0.1:8444)
  --kit DIR            admin kit from `federa-pki issue --admin NAME --role ROLE` (ca.pem, cert.pem, key.pem);
                       default $FEDERA_ADMIN_KIT
  --token TOKEN        bearer token from `federa-pki token` (default $FEDERA_ADMIN_TOKEN); needs --ca
  --ca FILE            the federation's ca.pem, to check the coordinator when using a token ($FEDERA_ADMIN_CA)
  --json               print the API's JSON
  --help               this text
)";

struct Args {
  AdminEndpoint ep;
  bool json = false;
  std::vector<std::string> words;  // the command and its arguments
  std::string out;
  std::string round;
  bool after_round = false;
  long count = 0;
};

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

Args parse(int argc, char** argv) {
  Args a;
  std::string server = env("FEDERA_ADMIN_SERVER");
  a.ep.kit = env("FEDERA_ADMIN_KIT");
  a.ep.token = env("FEDERA_ADMIN_TOKEN");
  a.ep.ca = env("FEDERA_ADMIN_CA");
  auto value = [&](int& i, const std::string& flag) {
    if (i + 1 >= argc) throw OptionsError(flag + " needs a value");
    return std::string(argv[++i]);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string w = argv[i];
    if (w == "--help" || w == "-h")
      throw OptionsError("");
    else if (w == "--server")
      server = value(i, w);
    else if (w == "--kit")
      a.ep.kit = value(i, w);
    else if (w == "--token")
      a.ep.token = value(i, w);
    else if (w == "--ca")
      a.ep.ca = value(i, w);
    else if (w == "--json")
      a.json = true;
    else if (w == "-o" || w == "--output")
      a.out = value(i, w);
    else if (w == "--round")
      a.round = value(i, w);
    else if (w == "--after-round")
      a.after_round = true;
    else if (w == "--count")
      a.count = std::stol(value(i, w));
    else if (w.rfind("--", 0) == 0)
      throw OptionsError("unknown option " + w);
    else
      a.words.push_back(w);
  }
  if (!server.empty()) {
    HostPort hp = parse_host_port(server, "server");
    a.ep.host = hp.host;
    a.ep.port = hp.port;
  }
  if (a.ep.kit.empty() && a.ep.token.empty())
    throw OptionsError(
        "give an admin kit (--kit DIR) or a bearer token (--token or FEDERA_ADMIN_TOKEN)");
  if (!a.ep.kit.empty() && !a.ep.token.empty()) a.ep.token.clear();  // the certificate decides
  if (a.words.empty()) throw OptionsError("no command given");
  return a;
}

// Prints the reply (JSON as is, or through `human`) and returns the exit status.
int finish(const Args& a, const Result<Reply>& r,
           const std::function<void(const boost::json::value&)>& human) {
  if (!r) {
    std::cerr << "federa-admin: " << r.error().message << "\n";
    return 1;
  }
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(r->body, ec);
  if (r->status >= 400) {
    const std::string why = !ec && v.is_object() && v.as_object().contains("error")
                                ? std::string(v.at("error").as_string())
                                : r->body;
    std::cerr << "federa-admin: " << r->status << ": " << why << "\n";
    return r->status == 401 || r->status == 403 ? 3 : 1;
  }
  if (a.json || ec)
    std::cout << r->body << (r->body.empty() || r->body.back() != '\n' ? "\n" : "");
  else
    human(v);
  return 0;
}

int run_command(const Args& a) {
  const auto& w = a.words;
  const std::string& cmd = w[0];
  auto get = [&](const std::string& path) { return admin_request(a.ep, http::verb::get, path); };
  if (cmd == "status" && w.size() == 1) return finish(a, get("/api/v1/status"), print_status);
  if (cmd == "clients" && w.size() == 1) return finish(a, get("/api/v1/clients"), print_clients);
  if (cmd == "rounds" && w.size() == 1) return finish(a, get("/api/v1/rounds"), print_rounds);
  if (cmd == "rounds" && w.size() == 2)
    return finish(a, get("/api/v1/rounds/" + w[1]), print_round);
  if (cmd == "members" && (w.size() == 1 || (w.size() == 2 && w[1] == "list")))
    return finish(a, get("/api/v1/members"), print_members);
  if (cmd == "members" && w.size() == 3 && w[1] == "add") {
    const std::string body = boost::json::serialize(boost::json::object{{"name", w[2]}});
    return finish(a, admin_request(a.ep, http::verb::post, "/api/v1/members", body), print_members);
  }
  if (cmd == "members" && w.size() == 3 && w[1] == "remove")
    return finish(a, admin_request(a.ep, http::verb::delete_, "/api/v1/members/" + w[2]),
                  print_members);
  if ((cmd == "pause" || cmd == "resume" || cmd == "stop") && w.size() == 1) {
    const std::string body = cmd == "stop" && a.after_round ? R"({"after_round":true})" : "{}";
    return finish(a, admin_request(a.ep, http::verb::post, "/api/v1/" + cmd, body),
                  [&](const boost::json::value&) { print_control(cmd, a.after_round); });
  }
  if (cmd == "statistics" && w.size() == 1)
    return finish(a, admin_request(a.ep, http::verb::post, "/api/v1/statistics", "{}"),
                  [](const boost::json::value&) {
                    std::cout << "statistics requested: computed before the next round\n";
                  });
  if (cmd == "model" && w.size() == 1) {
    if (a.out.empty()) throw OptionsError("model needs -o FILE");
    const std::string target = a.round.empty() ? "/api/v1/model" : "/api/v1/model?round=" + a.round;
    auto r = admin_download(a.ep, target, a.out);
    if (r && r->status == 200) {
      if (a.json)
        std::cout << boost::json::serialize(
                         boost::json::object{{"file", a.out}, {"bytes", r->bytes}})
                  << "\n";
      else
        std::cout << "wrote " << a.out << " (" << r->bytes << " bytes)\n";
      return 0;
    }
    return finish(a, r, [](const boost::json::value&) {});
  }
  if (cmd == "events" && w.size() == 1) {
    long seen = 0;
    Reply refused;
    Status s = admin_events(
        a.ep,
        [&](const std::string& event, const std::string& data) {
          if (a.json)
            std::cout << R"({"event":")" << event << R"(","data":)" << data << "}\n";
          else
            std::cout << event << " " << data << "\n";
          std::cout.flush();
          return a.count <= 0 || ++seen < a.count;
        },
        refused);
    if (s) return 0;
    if (refused.status != 0)
      return finish(a, Result<Reply>(refused), [](const boost::json::value&) {});
    std::cerr << "federa-admin: " << s.message() << "\n";
    return 1;
  }
  throw OptionsError("unknown command '" + cmd + (w.size() > 1 ? " " + w[1] : "") + "'");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_command(parse(argc, argv));
  } catch (const OptionsError& e) {
    if (std::string(e.what()).empty()) {
      std::cout << kUsage;
      return 0;
    }
    std::cerr << "federa-admin: " << e.what() << "\nRun with --help for usage.\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "federa-admin: " << e.what() << "\n";
    return 2;
  }
}
