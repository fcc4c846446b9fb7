#include "coordinator/model_broadcast.hpp"

#include <algorithm>
#include <limits>

#include "common/wire.hpp"

namespace federa {

namespace {
constexpr std::size_t kDone = std::numeric_limits<std::size_t>::max();
}

class ModelBroadcast::Reader final : public MessageStream {
 public:
  Reader(std::shared_ptr<ModelBroadcast> b, std::size_t id) : b_(std::move(b)), id_(id) {}
  ~Reader() override { b_->done(id_); }
  std::shared_ptr<const std::string> next() override {
    if (next_ >= b_->messages()) return nullptr;
    auto m = b_->message(id_, next_);
    next_ = m ? next_ + 1 : b_->messages();
    if (next_ == b_->messages()) b_->done(id_);
    return m;
  }
  std::size_t size_bytes() const override { return b_->size_bytes(); }

 private:
  std::shared_ptr<ModelBroadcast> b_;
  std::size_t id_;
  std::size_t next_ = 0;
};

ModelBroadcast::ModelBroadcast(std::shared_ptr<const std::string> head, std::uint64_t round,
                               std::span<const float> model, std::size_t chunk_elements,
                               std::vector<DTypeRun> runs)
    : head_(std::move(head)),
      round_(round),
      model_(model),
      chunk_elements_(chunk_elements),
      runs_(std::move(runs)),
      chunks_(chunk_count(model.size(), chunk_elements)),
      made_(chunks_) {
  // Per chunk: the data plus a few bytes of field tags and varints.
  bytes_ = head_->size() + wire_bytes(runs_, 0, model.size()) + 24 * chunks_;
}

std::shared_ptr<MessageStream> ModelBroadcast::reader() {
  std::lock_guard lk(mu_);
  cursors_.push_back(0);
  ++unfinished_;
  return std::make_shared<Reader>(shared_from_this(), cursors_.size() - 1);
}

std::shared_ptr<const std::string> ModelBroadcast::message(std::size_t reader, std::size_t i) {
  if (i == 0) return head_;
  std::lock_guard lk(mu_);
  cursors_[reader] = i + 1;
  const std::size_t c = i - 1;
  switch (source_) {
    case Source::none:
      return nullptr;
    case Source::kept:
      return kept_[c];
    case Source::model:
      break;
  }
  bool made = false;
  auto bytes = chunk_locked(c, made);
  if (!made) return bytes;
  held_bytes_ += bytes->size();
  held_.push_back(bytes);
  while (held_bytes_ > kHeldBytes && held_.size() > 1) {
    held_bytes_ -= held_.front()->size();
    held_.pop_front();
  }
  return bytes;
}

std::shared_ptr<const std::string> ModelBroadcast::chunk_locked(std::size_t c, bool& made) {
  if (auto shared = made_[c].lock()) return shared;
  auto bytes = std::make_shared<const std::string>(
      serialize_chunk(round_, model_, chunk_elements_, runs_, static_cast<std::uint32_t>(c)));
  made_[c] = bytes;
  ++serialized_;
  made = true;
  return bytes;
}

void ModelBroadcast::release_held_locked() {
  held_.clear();
  held_bytes_ = 0;
}

void ModelBroadcast::done(std::size_t reader) {
  std::lock_guard lk(mu_);
  if (cursors_[reader] == kDone) return;
  cursors_[reader] = kDone;
  if (--unfinished_ == 0) release_held_locked();  // nothing more will be asked for
}

void ModelBroadcast::freeze() {
  std::lock_guard lk(mu_);
  if (source_ != Source::model) return;
  // The lowest message an unfinished reader will ask for next; chunks before it are never
  // asked for again.
  std::size_t lowest = kDone;
  for (std::size_t c : cursors_) lowest = std::min(lowest, c);
  kept_.resize(chunks_);
  bool made = false;
  for (std::size_t m = std::max<std::size_t>(lowest, 1); m < messages(); ++m)
    kept_[m - 1] = chunk_locked(m - 1, made);
  made_.clear();
  release_held_locked();
  source_ = Source::kept;
}

void ModelBroadcast::abandon() {
  std::lock_guard lk(mu_);
  source_ = Source::none;
  made_.clear();
  release_held_locked();
  kept_.clear();
}

std::size_t ModelBroadcast::serialized() const {
  std::lock_guard lk(mu_);
  return serialized_;
}

}  // namespace federa
