// federa-test-member: one scripted member (honest or attacking) against a real coordinator, for
// the shell tests that run the programs as operators do (tests/integration/*.sh).
//
//   federa-test-member --coordinator 127.0.0.1:8443 --kit pki/clients/evil --attack poison
//
// Attacks: honest, poison, huge-weight, staller, garbage-shares, bad-secagg, wrong-data
// (tests/coordinator/attack_member.hpp). Exit 0 when the federation completed, 1 when the
// coordinator closed the session or the time limit passed, 2 for bad arguments.
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include "common/options.hpp"
#include "tests/integration/attack_client.hpp"

using namespace federa;
using namespace federa::testing;

int main(int argc, char** argv) {
  std::map<std::string, std::string> args;
  for (int i = 1; i + 1 < argc; i += 2) args[argv[i]] = argv[i + 1];
  if (argc % 2 == 0 || !args.count("--coordinator") || !args.count("--kit")) {
    std::cerr << "usage: federa-test-member --coordinator HOST:PORT --kit DIR [--attack NAME] "
                 "[--examples N] "
                 "[--seed S] [--train-ms MS] [--limit SECONDS]\n";
    return 2;
  }
  auto attack = attack_from_name(args.count("--attack") ? args["--attack"] : "honest");
  if (!attack) {
    std::cerr << "federa-test-member: unknown --attack\n";
    return 2;
  }
  MemberOptions mo;
  if (args.count("--examples"))
    mo.examples = std::strtoull(args["--examples"].c_str(), nullptr, 10);
  if (args.count("--seed"))
    mo.seed = static_cast<std::uint32_t>(std::strtoul(args["--seed"].c_str(), nullptr, 10));
  if (args.count("--train-ms"))
    mo.train_time = std::chrono::milliseconds(std::atoll(args["--train-ms"].c_str()));
  TlsMemberOptions to;
  try {
    HostPort hp = parse_host_port(args["--coordinator"], "coordinator");
    to.host = hp.host;
    to.port = hp.port;
  } catch (const std::exception& e) {
    std::cerr << "federa-test-member: " << e.what() << "\n";
    return 2;
  }
  to.kit = args["--kit"];
  if (args.count("--limit")) to.limit = std::chrono::seconds(std::atoll(args["--limit"].c_str()));
  Member member(*attack, mo);
  auto end = run_tls_member(to, member);
  if (!end) {
    std::cerr << "federa-test-member: " << end.error().message << "\n";
    return 1;
  }
  std::cerr << "federa-test-member: " << end->received << " messages, "
            << (end->federation_complete ? "federation complete" : "ended: " + end->closed_with)
            << "\n";
  return end->federation_complete ? 0 : 1;
}
