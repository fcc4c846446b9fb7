// federa-client's command line: the flags (every one also a --config key), how a config file's
// paths resolve, and what the program builds from them. Shared by the program and its `doctor`
// (client/doctor.hpp), so both read a setup the same way.
//
//   po::options_description desc = client_flags();
//   auto vm = parse_options(argc, argv, desc, client_path_resolvers());  // common/options.hpp
//   require_client_flags(*vm);                            // throws OptionsError
//   ClientOptions opt = connection_options(*vm);          // kit files, --key-file, reconnects
//   require_kit_files(*vm, opt);
//   std::unique_ptr<Trainer> trainer = load_trainer(*vm, opt.seed);   // reads --data
#pragma once

#include <map>
#include <memory>
#include <string>

#include "client/client.hpp"
#include "client/trainer.hpp"
#include "common/options.hpp"

namespace federa {

po::options_description client_flags();
// In a --config file, the kit, the key and the data files are relative to the file.
std::map<std::string, PathResolver> client_path_resolvers();
// --coordinator and --kit are given, and --data unless --trainer exec (the program reads its own).
void require_client_flags(const po::variables_map& vm);
// The connection: coordinator, kit (its private key from --key-file when given), reconnect
// policy. Throws OptionsError on a malformed value.
ClientOptions connection_options(const po::variables_map& vm);
// Throws OptionsError naming the first of the kit's files (opt's) that is missing.
void require_kit_files(const po::variables_map& vm, const ClientOptions& opt);
// This client's rows of --data (its share of a split, less the held-out ones), kept in memory
// alone (a tenth of the file for a 10-way split), and the built-in trainer over them.
std::unique_ptr<Trainer> load_trainer(const po::variables_map& vm, std::uint64_t client_seed);
// An external trainer with --data csv:FILE:label=COLUMN: federa reads the file too, to report
// its schema and statistics in a tabular federation (the program trains on its own reading).
std::unique_ptr<Trainer> with_table_of(const po::variables_map& vm,
                                       std::unique_ptr<Trainer> trainer);

}  // namespace federa
