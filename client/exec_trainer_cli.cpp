#include "client/exec_trainer_cli.hpp"

#include <cmath>
#include <vector>

namespace federa {

void add_trainer_flags(po::options_description& desc) {
  // clang-format off
  desc.add_options()
      ("trainer", po::value<std::string>()->default_value("builtin"), "builtin (federa's models on --data) | exec (your own program, --trainer-command; see docs/external-trainer.md)")
      ("trainer-command", po::value<std::vector<std::string>>(), "the program run once per task: one value is a shell command line (/bin/sh -c), several (or a JSON array in --config) are the program and its arguments; {input_model} {output_model} {metrics} {task_config} {work_dir} {task} {round} are filled in")
      ("trainer-timeout", po::value<double>()->default_value(3600), "seconds a task's program may run before it is stopped (SIGTERM, then SIGKILL)")
      ("trainer-kill-grace", po::value<double>()->default_value(10), "seconds between SIGTERM and SIGKILL when the program must stop")
      ("max-examples", po::value<std::uint64_t>()->default_value(100'000'000), "largest num_examples the program may report; above it the task fails")
      ("trainer-examples", po::value<std::uint64_t>()->default_value(0), "examples this client trains on, announced to the coordinator (the program is not asked)")
      ("trainer-work-root", po::value<std::string>()->default_value(""), "folder for the per-task folders (default: $STATE_DIRECTORY/trainer under systemd, else the temp folder)")
      ("trainer-workdir", po::value<std::string>()->default_value(""), "working directory of the program (default: the client's)")
      ("trainer-no-evaluate", po::bool_switch(), "the program takes fit tasks only: tell the coordinator not to send evaluate tasks (FEDERA_TASK=evaluate)")
      ("trainer-keep-files", po::bool_switch(), "keep each task's folder (global.safetensors, task.json, model.safetensors, metrics.json) for debugging");
  // clang-format on
}

std::map<std::string, PathResolver> with_trainer_resolvers(
    std::map<std::string, PathResolver> resolvers) {
  resolvers.emplace("trainer-work-root", resolve_path);
  resolvers.emplace("trainer-workdir", resolve_path);
  return resolvers;
}

bool uses_exec_trainer(const po::variables_map& vm) {
  const std::string t = vm["trainer"].as<std::string>();
  if (t != "builtin" && t != "exec")
    throw OptionsError("--trainer must be builtin or exec, not '" + t + "'");
  if (t == "builtin" && vm.count("trainer-command"))
    throw OptionsError("--trainer-command is given but --trainer is builtin: add --trainer exec");
  return t == "exec";
}

ExecTrainerOptions exec_trainer_options(const po::variables_map& vm) {
  ExecTrainerOptions o;
  if (!vm.count("trainer-command"))
    throw OptionsError("--trainer exec needs --trainer-command (the program to run per task)");
  o.command = vm["trainer-command"].as<std::vector<std::string>>();
  if (o.command.empty() || o.command.front().empty())
    throw OptionsError("--trainer-command is empty");
  o.timeout = seconds_option(vm, "trainer-timeout", false);
  o.kill_grace = seconds_option(vm, "trainer-kill-grace", true);
  o.max_examples = vm["max-examples"].as<std::uint64_t>();
  if (o.max_examples == 0) throw OptionsError("--max-examples must be at least 1");
  o.num_train_examples = vm["trainer-examples"].as<std::uint64_t>();
  o.work_root = vm["trainer-work-root"].as<std::string>();
  o.working_directory = vm["trainer-workdir"].as<std::string>();
  o.keep_work_dirs = vm["trainer-keep-files"].as<bool>();
  o.evaluates = !vm["trainer-no-evaluate"].as<bool>();
  return o;
}

}  // namespace federa
