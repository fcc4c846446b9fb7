// `federa-client trainer-test --model FILE [client flags]`: a dry run for an agency. It runs the
// configured external trainer once on a model file, exactly as a task would (the same folder,
// environment, deadline and checks), and prints what would be sent to the coordinator, with no
// coordinator and no certificate needed. Exit status 0: the output would be accepted; 1: it
// would not (the reason is printed); 2: bad flags.
//
//   federa-client trainer-test --config /etc/federa/client.json --model global.safetensors
//   federa-client trainer-test --trainer exec --trainer-command 'python3 train.py'
//                              --model init.safetensors --evaluate --lr 0.01
#pragma once

#include <map>
#include <ostream>
#include <string>

#include "common/options.hpp"

namespace federa {

// `desc` and `resolvers` are the agent's own flags, so its --config file reads the same here.
int run_trainer_test(int argc, char** argv, po::options_description desc,
                     const std::map<std::string, PathResolver>& resolvers, std::ostream& out);

}  // namespace federa
