// federa-client's trainer flags (every one also a --config key), shared by the agent and its
// `trainer-test` dry run (client/trainer_test.hpp):
//
//   add_trainer_flags(desc);
//   auto vm = parse_options(argc, argv, desc, with_trainer_resolvers(resolvers));
//   if (uses_exec_trainer(*vm)) trainer = std::make_unique<ExecTrainer>(exec_trainer_options(*vm));
//
// In a config file "trainer-command" may be a JSON array (the program and its arguments, run
// directly) or a string (a shell command line, run by /bin/sh -c); on the command line one
// --trainer-command is a shell command line, several make up the argument list.
#pragma once

#include <map>
#include <string>

#include "client/exec_trainer.hpp"
#include "common/options.hpp"

namespace federa {

void add_trainer_flags(po::options_description& desc);
// `resolvers` plus the trainer's folders, relative to a config file.
std::map<std::string, PathResolver> with_trainer_resolvers(
    std::map<std::string, PathResolver> resolvers);
// --trainer exec (the default is builtin); throws OptionsError on an unknown --trainer.
bool uses_exec_trainer(const po::variables_map& vm);
// Throws OptionsError on a missing command or a bad value.
ExecTrainerOptions exec_trainer_options(const po::variables_map& vm);

}  // namespace federa
