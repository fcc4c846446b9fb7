// federa-bench: one binary, one subcommand per benchmark. Each prints progress to stderr and,
// with --json, one JSON object as the last line of stdout.
#include <cstring>
#include <iostream>
#include <string_view>

namespace federa::bench {
int aggregate_main(int argc, char** argv);  // tools/bench_aggregate.cpp
int secagg_main(int argc, char** argv);     // tools/bench_secagg.cpp
int latency_main(int argc, char** argv);    // tools/bench_latency.cpp
int load_main(int argc, char** argv);       // tools/bench_load.cpp
int wire_main(int argc, char** argv);       // tools/bench_wire.cpp
}  // namespace federa::bench

namespace {
void usage(std::ostream& os) {
  os << "usage: federa-bench SUBCOMMAND [flags] [--json]\n\n"
        "subcommands:\n"
        "  aggregate   server-side aggregation throughput vs the machine's memory bandwidth\n"
        "  secagg      SecAgg+ protocol cost (all phases, real cryptography, one process)\n"
        "  latency     a Hello's wait for its Welcome while a large update is aggregated\n"
        "  load        N mutual-TLS members against a real coordinator process: round time, "
        "ingest,\n"
        "              the coordinator's peak memory and CPU\n\n"
        "  wire        bytes and conversion time of a model in F32, F16 and BF16\n\n"
        "Run `federa-bench SUBCOMMAND --help` for its flags.\n";
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  std::string_view cmd = argv[1];
  if (cmd == "-h" || cmd == "--help") {
    usage(std::cout);
    return 0;
  }
  try {
    if (cmd == "aggregate") return federa::bench::aggregate_main(argc - 1, argv + 1);
    if (cmd == "secagg") return federa::bench::secagg_main(argc - 1, argv + 1);
    if (cmd == "latency") return federa::bench::latency_main(argc - 1, argv + 1);
    if (cmd == "load") return federa::bench::load_main(argc - 1, argv + 1);
    if (cmd == "wire") return federa::bench::wire_main(argc - 1, argv + 1);
  } catch (const std::exception& e) {
    std::cerr << "federa-bench " << cmd << ": " << e.what() << "\n";
    return 2;
  }
  std::cerr << "federa-bench: unknown subcommand '" << cmd << "'\n";
  usage(std::cerr);
  return 2;
}
