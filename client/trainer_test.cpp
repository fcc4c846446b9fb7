#include "client/trainer_test.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <set>

#include "client/exec_trainer.hpp"
#include "client/exec_trainer_cli.hpp"
#include "common/safetensors.hpp"
#include "common/wire.hpp"

namespace federa {

namespace {

void add_test_flags(po::options_description& desc) {
  // clang-format off
  desc.add_options()
      ("model", po::value<std::string>(), "the global model to start from (safetensors) (required)")
      ("round", po::value<std::uint64_t>()->default_value(1), "the round number the program is told")
      ("evaluate", po::bool_switch(), "also run an evaluate task on the model")
      ("local-epochs", po::value<std::uint32_t>()->default_value(1), "hyper-parameter for task.json")
      ("batch-size", po::value<std::uint32_t>()->default_value(32), "hyper-parameter for task.json")
      ("lr", po::value<float>()->default_value(0.05f), "hyper-parameter for task.json")
      ("task-seed", po::value<std::uint64_t>()->default_value(1), "the seed task.json carries");
  // clang-format on
}

std::string fmt_bytes(double b) {
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.1f} MB", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.1f} kB", b / 1e3);
  return fmt::format("{} B", b);
}

// "float32", or the float dtypes a mixed model travels in ("BF16, F32").
std::string dtypes_text(const ModelLayout& layout) {
  std::set<std::string_view> names;
  for (const auto& r : layout.float_runs()) names.insert(dtype_name(r.dtype));
  if (names.empty() || (names.size() == 1 && *names.begin() == "F32")) return "float32";
  return fmt::format("{}", fmt::join(names, ", "));
}

std::string metrics_text(const std::map<std::string, double>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += fmt::format("{}{}={:.6g}", s.empty() ? "" : " ", k, v);
  return s.empty() ? "(none)" : s;
}

void print_fit(std::ostream& out, const Model& global, const FitResult& fit, const TrainConfig& c,
               std::uint64_t round) {
  double change = 0, largest = 0;
  for (std::size_t i = 0; i < global.data.size(); ++i) {
    const double d = double(fit.weights[i]) - double(global.data[i]);
    change += d * d;
    largest = std::max(largest, std::abs(d));
  }
  const std::size_t chunks = chunk_count(fit.weights.size(), kDefaultChunkElements);
  out << fmt::format(
             "  update:       {} tensors; names, shapes and dtypes match the global model; all "
             "values finite\n",
             global.layout.tensors().size())
      << fmt::format("  change:       L2 norm {:.6g}, largest |change| {:.6g}{}\n",
                     std::sqrt(change), largest,
                     change == 0 ? "  (the model did not change: did the program train?)" : "")
      << fmt::format("  num_examples: {}\n", fit.num_examples)
      << fmt::format("  metrics:      {}\n", metrics_text(fit.metrics))
      << fmt::format(
             "would send:     UpdateHeader{{round {}, num_examples {}, layout_hash {:016x}, {} "
             "metrics}}\n",
             round, fit.num_examples, global.layout.hash(), fit.metrics.size())
      << fmt::format(
             "                then {} ({}) in {} chunk{}; under secure aggregation the "
             "change\n"
             "                instead, clipped, quantised and masked here (the program never sees "
             "keys)\n",
             fmt_bytes(double(global.layout.float_bytes())), dtypes_text(global.layout), chunks,
             chunks == 1 ? "" : "s");
  (void)c;
}

void print_program(std::ostream& out, const ExecTrainer& t) {
  const auto& r = t.last_report();
  out << fmt::format("  program:      {} after {:.2f} s; task folder {} ({})\n", r.outcome,
                     r.seconds, r.work_dir.string(),
                     t.options().keep_work_dirs ? "kept" : "removed");
}

}  // namespace

int run_trainer_test(int argc, char** argv, po::options_description desc,
                     const std::map<std::string, PathResolver>& resolvers, std::ostream& out) {
  po::options_description test("trainer-test", 110);
  add_test_flags(test);
  desc.add(test);
  auto paths = resolvers;
  paths.emplace("model", resolve_path);
  auto vm = parse_options(argc, argv, desc, paths);
  if (!vm) {
    out << "federa-client trainer-test --model FILE [flags]: run the configured trainer once on a "
           "model, check its output and print what would be sent (no coordinator needed)\n\n"
        << desc << "\n";
    return 0;
  }
  setup_logging((*vm)["log-level"].as<std::string>(), "client");
  if (!vm->count("model")) throw OptionsError("--model FILE is required");
  if (!uses_exec_trainer(*vm))
    throw OptionsError(
        "trainer-test runs an external trainer: give --trainer exec and --trainer-command");
  ExecTrainer trainer(exec_trainer_options(*vm));
  const std::string path = (*vm)["model"].as<std::string>();
  auto file = load_safetensors(path);
  if (!file) throw OptionsError("--model: " + file.error().message);
  const Model& global = file->model;
  TrainConfig c;
  c.local_epochs = (*vm)["local-epochs"].as<std::uint32_t>();
  c.batch_size = (*vm)["batch-size"].as<std::uint32_t>();
  c.lr = (*vm)["lr"].as<float>();
  c.seed = (*vm)["task-seed"].as<std::uint64_t>();
  const std::uint64_t round = (*vm)["round"].as<std::uint64_t>();
  out << fmt::format(
      "trainer-test: {} ({} tensors, {} parameters, {})\n", path, global.layout.tensors().size(),
      global.data.size(),
      fmt_bytes(double(global.layout.float_bytes() + global.layout.carried_bytes())));
  trainer.begin_task(round, 1);
  auto fit = trainer.fit(global, c);
  out << "fit task:\n";
  print_program(out, trainer);
  if (!fit) {
    out << "REFUSED: " << fit.error().message << "\n"
        << "(a real round would tell the coordinator: training failed: "
        << fit.error().message.substr(0, 200) << (fit.error().message.size() > 200 ? "..." : "")
        << ")\n";
    return 1;
  }
  print_fit(out, global, *fit, c, round);
  if ((*vm)["evaluate"].as<bool>()) {
    trainer.begin_task(round, 1);
    auto ev = trainer.evaluate(global, c);
    out << "evaluate task:\n";
    print_program(out, trainer);
    if (!ev) {
      out << "REFUSED: " << ev.error().message << "\n";
      return 1;
    }
    out << fmt::format("  result:       loss {:.6g}{} on {} examples\n", ev->loss,
                       ev->accuracy ? fmt::format(", accuracy {:.6g}", *ev->accuracy) : "",
                       ev->num_examples);
  }
  out << "OK: this output would be accepted\n";
  return 0;
}

}  // namespace federa
