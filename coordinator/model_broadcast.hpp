// One model broadcast (a fit or evaluate task and the model's chunks), shared by the links it
// goes to. Chunks are serialized when a link asks for them, straight from the global model, and
// freed once written, so a broadcast holds a few chunks per link instead of a second copy of the
// model. A chunk that links ask for while one of them still holds it, or while it is among the
// last kHeldBytes made, is serialized once (with a small model, once for every link).
//
// The model must not change while a reader may still copy from it: before the orchestrator
// writes the global model it calls freeze(), which serializes the chunks that unfinished readers
// have yet to take (none in the usual case) so they no longer read the model.
//
//   auto b = std::make_shared<ModelBroadcast>(serialize_shared(task), round, global.data,
//                                             chunk_elements, global.layout.float_runs());
//   for (auto& link : cohort) link->send_stream(b->reader());
//   ...
//   b->freeze();  // then the model may change
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "common/model.hpp"
#include "coordinator/transport.hpp"

namespace federa {

class ModelBroadcast : public std::enable_shared_from_this<ModelBroadcast> {
 public:
  ModelBroadcast(std::shared_ptr<const std::string> head, std::uint64_t round,
                 std::span<const float> model, std::size_t chunk_elements,
                 std::vector<DTypeRun> runs);

  // A cursor from the first message (the task) to the last chunk.
  std::shared_ptr<MessageStream> reader();
  // Stops reading the model: what unfinished readers still need is serialized now.
  void freeze();
  // Stops reading the model without keeping anything: unfinished readers end early (shutdown).
  void abandon();

  std::size_t messages() const { return 1 + chunks_; }
  std::size_t size_bytes() const { return bytes_; }
  // Chunks serialized so far (by any reader, or by freeze); for tests and benchmarks.
  std::size_t serialized() const;

 private:
  class Reader;
  // Message `i` (0 = the head), or nullptr when abandoned. `reader` advanced to `i`.
  std::shared_ptr<const std::string> message(std::size_t reader, std::size_t i);
  void done(std::size_t reader);
  // Under mu_: chunk `c`, shared if a reader or the held window still has it, else made now
  // (`made` set); and letting the held window go.
  std::shared_ptr<const std::string> chunk_locked(std::size_t c, bool& made);
  void release_held_locked();

  const std::shared_ptr<const std::string> head_;
  const std::uint64_t round_;
  const std::span<const float> model_;
  const std::size_t chunk_elements_;
  const std::vector<DTypeRun> runs_;
  const std::size_t chunks_;
  std::size_t bytes_ = 0;

  mutable std::mutex mu_;
  enum class Source { model, kept, none } source_ = Source::model;
  static constexpr std::size_t kHeldBytes = 16u << 20;
  std::vector<std::weak_ptr<const std::string>> made_;   // shared while some reader holds one
  std::deque<std::shared_ptr<const std::string>> held_;  // the last made, up to kHeldBytes
  std::size_t held_bytes_ = 0;
  std::vector<std::shared_ptr<const std::string>> kept_;  // after freeze()
  std::vector<std::size_t> cursors_;                      // per reader: next message; npos = done
  std::size_t unfinished_ = 0;
  std::size_t serialized_ = 0;
};

}  // namespace federa
