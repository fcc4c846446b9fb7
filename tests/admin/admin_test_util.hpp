// Helpers shared by the admin suites: a fresh temporary folder and a file's lines.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace federa::testing {

inline std::filesystem::path fresh_dir(const char* stem) {
  auto d = std::filesystem::temp_directory_path() /
           (std::string(stem) + std::to_string(std::random_device{}()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

inline std::vector<std::string> lines_of(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace federa::testing
