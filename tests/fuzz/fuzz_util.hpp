// Helpers for the libFuzzer targets in this folder: the parsers under test read files, so an
// input is handed to them as an anonymous in-memory file, and structured inputs are split into
// length-prefixed records.
//
//   extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
//     federa::fuzz::MemFile f(data, size);          // f.path() = "/proc/self/fd/N"
//     (void)federa::read_members_file(f.path());    // any Result is fine; a crash is not
//     return 0;
//   }
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace federa::fuzz {

// An anonymous file (memfd) holding `bytes`; open it again by path() as many times as needed.
class MemFile {
 public:
  MemFile(const void* bytes, std::size_t size) {
    fd_ = ::memfd_create("federa-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) std::abort();
    const auto* p = static_cast<const char*>(bytes);
    while (size > 0) {
      const ssize_t n = ::write(fd_, p, size);
      if (n <= 0) std::abort();
      p += n;
      size -= static_cast<std::size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  explicit MemFile(std::string_view bytes) : MemFile(bytes.data(), bytes.size()) {}
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Reads [u32 little-endian length][bytes] records; a short tail becomes the last record.
class Records {
 public:
  Records(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  bool next(std::string_view& out) {
    if (p_ == end_) return false;
    std::uint32_t n = 0;
    const std::size_t have = static_cast<std::size_t>(end_ - p_);
    if (have < 4) {
      out = {reinterpret_cast<const char*>(p_), have};
      p_ = end_;
      return true;
    }
    std::memcpy(&n, p_, 4);
    p_ += 4;
    const std::size_t len = std::min<std::size_t>(n, static_cast<std::size_t>(end_ - p_));
    out = {reinterpret_cast<const char*>(p_), len};
    p_ += len;
    return true;
  }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

// The inverse of Records, for seed generators.
inline void append_record(std::string& out, std::string_view record) {
  const auto n = static_cast<std::uint32_t>(record.size());
  out.append(reinterpret_cast<const char*>(&n), 4);
  out.append(record);
}

}  // namespace federa::fuzz
