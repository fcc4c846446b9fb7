// The CUDA backend's shared context: streams, staging, pipelined copies (context.hpp).
#include "coordinator/cuda/context.hpp"

#include <algorithm>
#include <cstring>

#include "coordinator/cuda/kernels.cuh"

namespace federa::cuda {

static_assert(Context::kStagingBytes % (kNormBlock * sizeof(float)) == 0);
static_assert(Context::kPinnedChunkBytes % (kNormBlock * sizeof(float)) == 0);

Error cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  ErrorCode code = ErrorCode::internal;
  if (e == cudaErrorMemoryAllocation) code = ErrorCode::resource_exhausted;
  if (e == cudaErrorDevicesUnavailable || e == cudaErrorNoDevice ||
      e == cudaErrorInsufficientDriver)
    code = ErrorCode::unavailable;
  return make_error(code, std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                              cudaGetErrorString(e) + ") in " + expr + " at " + file + ":" +
                              std::to_string(line));
}

// ---------------------------------------------------------------------------------------------

PinnedRegistry& pinned_registry() {
  static PinnedRegistry* registry = new PinnedRegistry;  // never destroyed, see context.hpp
  return *registry;
}

void PinnedRegistry::add(const void* p, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  ranges_[reinterpret_cast<std::uintptr_t>(p)] = bytes;
}

void PinnedRegistry::remove(const void* p) {
  std::lock_guard<std::mutex> lock(mutex_);
  ranges_.erase(reinterpret_cast<std::uintptr_t>(p));
}

bool PinnedRegistry::contains(const void* p, std::size_t bytes) const {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = ranges_.upper_bound(a);
  if (it == ranges_.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

// ---------------------------------------------------------------------------------------------

Context::Context(HostCopy copy) : copy_(std::move(copy)) {}

Context::~Context() {
  drain();
  for (int l = 0; l < kLanes; ++l) {
    if (staging_[l]) cudaFreeHost(staging_[l]);
    if (staged_[l]) cudaEventDestroy(staged_[l]);
    if (joined_[l]) cudaEventDestroy(joined_[l]);
    if (stream_[l]) cudaStreamDestroy(stream_[l]);
  }
  for (cudaEvent_t e : {start_, slot_event_, timer_[0], timer_[1]})
    if (e) cudaEventDestroy(e);
  if (slot_) cudaFreeHost(slot_);
}

Status Context::init() {
  CUDA_CHECK(cudaSetDevice(0));
  for (int l = 0; l < kLanes; ++l) {
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_[l], cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&staged_[l], cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&joined_[l], cudaEventDisableTiming));
    CUDA_CHECK(cudaMallocHost(&staging_[l], kStagingBytes));
  }
  CUDA_CHECK(cudaEventCreateWithFlags(&start_, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&slot_event_, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreate(&timer_[0]));
  CUDA_CHECK(cudaEventCreate(&timer_[1]));
  CUDA_CHECK(cudaMallocHost(&slot_, kSlotBytes));
  return {};
}

bool Context::is_pinned(const void* p, std::size_t bytes) const {
  if (pinned_registry().contains(p, bytes)) return true;
  cudaPointerAttributes attr{};
  const bool pinned =
      cudaPointerGetAttributes(&attr, p) == cudaSuccess && attr.type == cudaMemoryTypeHost;
  cudaGetLastError();  // pageable memory may leave an error behind on old drivers
  return pinned;
}

Status Context::fan_out() {
  CUDA_CHECK(cudaEventRecord(start_, stream_[0]));
  for (int l = 1; l < kLanes; ++l) CUDA_CHECK(cudaStreamWaitEvent(stream_[l], start_, 0));
  return {};
}

Status Context::join(int lanes_used) {
  for (int l = 1; l < std::min(lanes_used, kLanes); ++l) {
    CUDA_CHECK(cudaEventRecord(joined_[l], stream_[l]));
    CUDA_CHECK(cudaStreamWaitEvent(stream_[0], joined_[l], 0));
  }
  return {};
}

Status Context::upload(void* dst, const void* src, std::size_t bytes, std::size_t elem,
                       const ChunkFn& on_chunk) {
  if (bytes == 0) return {};
  const bool pinned = is_pinned(src, bytes);
  const std::size_t chunk = pinned ? kPinnedChunkBytes : kStagingBytes;  // multiples of elem (4)
  if (Status st = fan_out(); !st) return st;
  int c = 0;
  for (std::size_t off = 0; off < bytes; off += chunk, ++c) {
    const int l = c % kLanes;
    const std::size_t len = std::min(chunk, bytes - off);
    auto* d = static_cast<char*>(dst) + off;
    const auto* s = static_cast<const char*>(src) + off;
    if (pinned) {
      CUDA_CHECK(cudaMemcpyAsync(d, s, len, cudaMemcpyHostToDevice, stream_[l]));
    } else {
      CUDA_CHECK(cudaEventSynchronize(staged_[l]));  // staging_[l]'s previous copy is done
      if (copy_)
        copy_(staging_[l], s, len);
      else
        std::memcpy(staging_[l], s, len);
      CUDA_CHECK(cudaMemcpyAsync(d, staging_[l], len, cudaMemcpyHostToDevice, stream_[l]));
      CUDA_CHECK(cudaEventRecord(staged_[l], stream_[l]));
    }
    if (on_chunk)
      if (Status st = on_chunk(off / elem, len / elem, stream_[l]); !st) return st;
  }
  return join(c);
}

Status Context::copy_chunk_out(const void* src, std::size_t len, int lane) {
  CUDA_CHECK(cudaMemcpyAsync(staging_[lane], src, len, cudaMemcpyDeviceToHost, stream_[lane]));
  CUDA_CHECK(cudaEventRecord(staged_[lane], stream_[lane]));
  return {};
}

Status Context::download(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return {};
  if (is_pinned(dst, bytes)) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_[0]));
    return sync();
  }
  if (Status st = fan_out(); !st) return st;
  const std::size_t chunks = (bytes + kStagingBytes - 1) / kStagingBytes;
  auto piece = [&](std::size_t c) { return std::min(kStagingBytes, bytes - c * kStagingBytes); };
  for (std::size_t c = 0; c < std::min<std::size_t>(chunks, kLanes); ++c)
    if (Status st = copy_chunk_out(static_cast<const char*>(src) + c * kStagingBytes, piece(c),
                                   static_cast<int>(c));
        !st)
      return st;
  for (std::size_t c = 0; c < chunks; ++c) {
    const int l = static_cast<int>(c % kLanes);
    CUDA_CHECK(cudaEventSynchronize(staged_[l]));
    char* out = static_cast<char*>(dst) + c * kStagingBytes;
    if (copy_)
      copy_(out, staging_[l], piece(c));
    else
      std::memcpy(out, staging_[l], piece(c));
    const std::size_t next = c + kLanes;
    if (next < chunks)
      if (Status st =
              copy_chunk_out(static_cast<const char*>(src) + next * kStagingBytes, piece(next), l);
          !st)
        return st;
  }
  return {};
}

Status Context::read_small(void* dst, const void* dev, std::size_t bytes) {
  if (bytes > kSlotBytes)
    return make_error(ErrorCode::internal, "read_small: more than the slot holds");
  CUDA_CHECK(cudaMemcpyAsync(slot_, dev, bytes, cudaMemcpyDeviceToHost, stream_[0]));
  CUDA_CHECK(cudaEventRecord(slot_event_, stream_[0]));
  CUDA_CHECK(cudaEventSynchronize(slot_event_));
  std::memcpy(dst, slot_, bytes);
  return {};
}

Result<double> Context::read_double(const double* dev) {
  double v = 0.0;
  if (Status st = read_small(&v, dev, sizeof v); !st) return st.error();
  return v;
}

Status Context::sync() {
  CUDA_CHECK(cudaStreamSynchronize(stream_[0]));
  return {};
}

void Context::drain() {
  for (int l = 0; l < kLanes; ++l)
    if (stream_[l]) cudaStreamSynchronize(stream_[l]);
  cudaGetLastError();
}

}  // namespace federa::cuda
