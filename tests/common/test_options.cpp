// Command lines and config files (common/options.hpp): paths inside a --config file are relative
// to that file, and logs for the systemd journal carry syslog priorities instead of timestamps.
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/options.hpp"

using namespace federa;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("federa_options_" + std::to_string(std::random_device{}()));
  fs::create_directories(d);
  return d;
}

po::variables_map parse(std::vector<std::string> args, po::options_description& desc,
                        const std::map<std::string, PathResolver>& paths) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  auto vm = parse_options(static_cast<int>(argv.size()), argv.data(), desc, paths);
  REQUIRE(vm.has_value());
  return *vm;
}

std::string dev_ino(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

}  // namespace

TEST_CASE("options: one path and the files inside a dataset spec resolve against a folder") {
  const fs::path dir = "/etc/federa";
  CHECK(resolve_path("kit", dir) == "/etc/federa/kit");
  CHECK(resolve_path("../data/x.csv", dir) == "/etc/data/x.csv");
  CHECK(resolve_path("/srv/kit", dir) == "/srv/kit");
  CHECK(resolve_path("", dir) == "");
  CHECK(resolve_data_spec("fashion-mnist", dir) == "fashion-mnist");
  CHECK(resolve_data_spec("idx:img.gz,lab.gz", dir) == "idx:/etc/federa/img.gz,/etc/federa/lab.gz");
  CHECK(resolve_data_spec("idx:/a/img,lab", dir) == "idx:/a/img,/etc/federa/lab");
  CHECK(resolve_data_spec("csv:data/t.csv:label=y", dir) == "csv:/etc/federa/data/t.csv:label=y");
  CHECK(resolve_data_spec("csv:/abs/t.csv:label=y", dir) == "csv:/abs/t.csv:label=y");
  CHECK(resolve_data_spec("csv:nolabel", dir) == "csv:nolabel");  // load_dataset explains
}

TEST_CASE("options: a --config file's paths are relative to it; the command line's stay as typed") {
  const fs::path dir = temp_dir();
  fs::create_directories(dir / "etc");
  {
    std::ofstream f(dir / "etc/client.json");
    f << R"({"kit": "kit", "data": "csv:tables/t.csv:label=y", "name": "kit", "rounds": 3})";
  }
  po::options_description desc("test");
  desc.add_options()("kit", po::value<std::string>())("data", po::value<std::string>())(
      "name", po::value<std::string>())("rounds", po::value<int>());
  const std::map<std::string, PathResolver> paths{{"kit", resolve_path},
                                                  {"data", resolve_data_spec}};
  // Given by a relative path from another working directory: still the file's folder.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir);
  auto vm = parse({"prog", "--config", "etc/client.json"}, desc, paths);
  fs::current_path(cwd);
  const std::string etc = fs::canonical(dir / "etc").string();
  CHECK(vm["kit"].as<std::string>() == etc + "/kit");
  CHECK(vm["data"].as<std::string>() == "csv:" + etc + "/tables/t.csv:label=y");
  CHECK(vm["name"].as<std::string>() == "kit");  // not a path key: untouched
  CHECK(vm["rounds"].as<int>() == 3);

  po::options_description desc2("test");
  desc2.add_options()("kit", po::value<std::string>())("data", po::value<std::string>())(
      "name", po::value<std::string>())("rounds", po::value<int>());
  auto vm2 = parse({"prog", "--config", (dir / "etc/client.json").string(), "--kit", "mykit"},
                   desc2, paths);
  CHECK(vm2["kit"].as<std::string>() == "mykit");  // a flag wins, relative to the shell's folder
  fs::remove_all(dir);
}

TEST_CASE("options: stderr_is_journal only when JOURNAL_STREAM names stderr itself") {
  const char* saved = std::getenv("JOURNAL_STREAM");
  const std::string before = saved ? saved : "";
  ::unsetenv("JOURNAL_STREAM");
  CHECK_FALSE(stderr_is_journal());
  ::setenv("JOURNAL_STREAM", dev_ino(STDERR_FILENO).c_str(), 1);
  CHECK(stderr_is_journal());
  ::setenv("JOURNAL_STREAM", "1:2", 1);
  CHECK_FALSE(stderr_is_journal());
  ::setenv("JOURNAL_STREAM", "garbage", 1);
  CHECK_FALSE(stderr_is_journal());
  if (saved)
    ::setenv("JOURNAL_STREAM", before.c_str(), 1);
  else
    ::unsetenv("JOURNAL_STREAM");
}

TEST_CASE("options: logs for the journal carry syslog priorities and no timestamps") {
  const fs::path dir = temp_dir();
  const fs::path file = dir / "stderr.log";
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  REQUIRE(saved >= 0);
  std::FILE* f = std::fopen(file.c_str(), "w");
  REQUIRE(f);
  REQUIRE(::dup2(::fileno(f), STDERR_FILENO) >= 0);
  ::setenv("JOURNAL_STREAM", dev_ino(STDERR_FILENO).c_str(), 1);
  auto previous = spdlog::default_logger();
  setup_logging("debug", "journal-test");
  spdlog::info("joined federation");
  spdlog::warn("retrying in 2.0 s");
  spdlog::error("refused");
  spdlog::debug("detail");
  spdlog::default_logger()->flush();
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  std::fclose(f);
  ::unsetenv("JOURNAL_STREAM");
  spdlog::drop("journal-test");
  spdlog::set_default_logger(previous);
  spdlog::set_pattern("%+");

  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  CHECK(ss.str() == "<6>joined federation\n<4>retrying in 2.0 s\n<3>refused\n<7>detail\n");
  fs::remove_all(dir);
}

TEST_CASE("options: run_program maps option errors to 2 and other exceptions to 1") {
  auto ok = [](int, char**) { return 5; };
  auto bad_flag = [](int, char**) -> int { throw OptionsError("--rounds must be positive"); };
  auto broken = [](int, char**) -> int { throw std::runtime_error("disk on fire"); };
  char prog[] = "prog";
  char* argv[] = {prog, nullptr};
  CHECK(run_program("prog", 1, argv, ok) == 5);
  CHECK(run_program("prog", 1, argv, bad_flag) == 2);
  CHECK(run_program("prog", 1, argv, broken) == 1);
}

// Found by the config fuzz target: Boost.Program_options 1.81 fills "%value%" in an error
// message until none is left, so a bad value holding "%value%" made what() loop forever and every
// federa program hang at start (`federa-coordinator --rounds '%value%'`). Each case runs in a
// child process with an alarm, so the old behaviour fails the test instead of hanging it.
TEST_CASE("options: a bad value or flag holding a message placeholder is reported, not hung on") {
  const std::vector<std::vector<std::string>> cases = {{"--rounds", "%value%"},
                                                       {"--rounds", "x%value%y%value%"},
                                                       {"--rounds", "%canonical_option%%value%"},
                                                       {"--%value%", "1"},
                                                       {"--rounds=%option%"}};
  for (const auto& extra : cases) {
    CAPTURE(extra.front());
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::alarm(20);
      po::options_description desc("test");
      desc.add_options()("rounds", po::value<int>(), "rounds");
      std::vector<std::string> args = {"prog"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      try {
        parse_options(static_cast<int>(argv.size()), argv.data(), desc, {});
      } catch (const OptionsError& e) {
        ::_exit(std::string(e.what()).find("%25") != std::string::npos ? 0 : 3);
      }
      ::_exit(4);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK_MESSAGE(WIFEXITED(status), "killed by signal ", WTERMSIG(status),
                  " (hung until the alarm)");
    if (WIFEXITED(status)) CHECK(WEXITSTATUS(status) == 0);
  }
}
