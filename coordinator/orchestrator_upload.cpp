// Uploads: an announced update waits for one of the pool's slots, its chunks are checked and
// copied into that slot on the link's own thread (outside the state lock), and the completed
// update goes to the aggregation worker. Plain updates and SecAgg+ masked inputs share the
// pool and the flow control (UpdateHeader / SecAggMaskedInputHeader -> UploadReady -> chunks).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "coordinator/orchestrator.hpp"
#include "coordinator/orchestrator_internal.hpp"

namespace federa {

Orchestrator::Upload::~Upload() {
  if (buffer) pool->release(std::move(buffer));
}

namespace {
constexpr std::size_t kMaxMetrics = 32;  // a client's figures per update; more are dropped
}  // namespace

void Orchestrator::take_metrics(const std::string& id, const wire::UpdateHeader& h,
                                std::map<std::string, double>& out) {
  std::size_t dropped = 0;
  for (const auto& [k, v] : h.metrics()) {
    if (out.size() >= kMaxMetrics || !plain_name(k) || !std::isfinite(v)) {
      ++dropped;
      continue;
    }
    out[k] = v;
  }
  if (dropped > 0)
    log_client_error(id,
                     std::to_string(dropped) + " of its " + std::to_string(h.metrics_size()) +
                         " metrics left out (names [A-Za-z0-9_.-]{1,64}, finite values, at most " +
                         std::to_string(kMaxMetrics) + ")");
}

Status Orchestrator::handle_update_header(Client& c, const wire::UpdateHeader& h) {
  const std::string& id = c.link->id();
  if (!round_.open || h.round() != round_.round || round_.secure) {
    c.link->close_with_error(
        wire::Error::WRONG_ROUND,
        "update for round " + std::to_string(h.round()) + ", which is not open");
    spdlog::warn("client '{}': update for round {} which is not open; session closed", id,
                 h.round());
    return {};
  }
  auto sel = round_.selected.find(id);
  if (sel == round_.selected.end())
    return make_error(ErrorCode::failed_precondition,
                      "update from a client not selected for this round");
  if (sel->second.stage != Stage::waiting) {
    c.link->close_with_error(wire::Error::DUPLICATE_UPDATE,
                             "second update in round " + std::to_string(h.round()));
    spdlog::warn("client '{}': second update in round {}; session closed", id, h.round());
    release_upload(id);
    settle(id, Stage::rejected, "second update in the round");
    return {};
  }
  // The update counts with the weight it announced, bounded by what the client said it holds
  // at join and by the federation's cap: a member cannot outweigh the others by claiming more.
  std::uint64_t weight = std::min(h.num_examples(), opt_.max_examples_per_client);
  if (c.num_train_examples > 0) weight = std::min(weight, c.num_train_examples);
  if (weight < h.num_examples())
    spdlog::info(
        "client '{}': update announced {} examples; weighted as {} (its Hello and "
        "--max-examples-per-client)",
        id, h.num_examples(), weight);
  sel->second.num_examples = weight;
  take_metrics(id, h, sel->second.metrics);
  auto reject = [&](const std::string& why) {
    settle(id, Stage::rejected, why);
    return make_error(ErrorCode::invalid_argument, "rejected update: " + why);
  };
  if (h.layout_hash() != global_.layout.hash())
    return reject("wrong layout hash (model built from another spec?)");
  if (h.total_elements() != global_.data.size())
    return reject("update has " + std::to_string(h.total_elements()) + " elements, the model " +
                  std::to_string(global_.data.size()));
  if (h.num_chunks() != chunk_count(global_.data.size(), opt_.chunk_elements))
    return reject("wrong chunk count " + std::to_string(h.num_chunks()));
  if (h.num_examples() == 0) return reject("num_examples is 0");
  auto up = std::make_shared<Upload>();
  up->pool = &pool_;
  up->client = id;
  up->generation = round_.generation;
  up->round = round_.round;
  up->num_examples = weight;
  sel->second.stage = Stage::uploading;
  round_.uploads[id] = up;
  round_.waiting.push_back(id);
  grant_slots();
  return {};
}

Status Orchestrator::begin_upload(Upload& up) {
  if (!up.secure) {
    auto floats = up.buffer->floats(global_.data.size(), pool_.backend());
    if (!floats) return floats.error();
    up.floats = *floats;
    // The round's model is the reference: the copy measures each update's change as it arrives
    // (for the outlier screen and the strategy's bounds), so nothing reads the update twice.
    return up.assembler.begin(
        up.round, global_.data.size(), chunk_count(global_.data.size(), opt_.chunk_elements),
        opt_.chunk_elements, up.floats, true, global_.data, global_.layout.float_runs());
  }
  const auto& cfg = round_.secure->config;
  up.words = up.buffer->words(cfg.masked_length());
  return up.masked.begin(up.masked_header, cfg, up.words);
}

void Orchestrator::grant_slots() {
  while (!round_.waiting.empty()) {
    auto u = round_.uploads.find(round_.waiting.front());
    if (u == round_.uploads.end() || u->second->buffer) {  // gone, or granted already
      round_.waiting.pop_front();
      continue;
    }
    auto buffer = pool_.acquire();
    if (!buffer) return;  // every slot busy; the next finished upload grants one
    const std::string id = round_.waiting.front();
    round_.waiting.pop_front();
    Upload& up = *u->second;
    up.buffer = std::move(buffer);
    up.last_progress = Clock::now();
    if (Status s = begin_upload(up); !s) {
      spdlog::error("client '{}': cannot receive its update: {}", id, s.message());
      round_.uploads.erase(u);
      settle(id, Stage::rejected, "coordinator: " + s.message());
      continue;
    }
    auto c = clients_.find(id);
    if (c == clients_.end()) continue;
    wire::Envelope ready;
    ready.mutable_upload_ready()->set_round(round_.round);
    c->second.link->send(serialize_shared(ready));
  }
}

void Orchestrator::release_upload(const std::string& id) {
  auto u = round_.uploads.find(id);
  if (u == round_.uploads.end()) return;
  round_.uploads.erase(u);  // the buffer returns to the pool once no chunk copy still holds it
  grant_slots();
}

Status Orchestrator::on_chunk(const std::shared_ptr<ClientLink>& link, const ChunkView& chunk) {
  const std::string& id = link->id();
  std::shared_ptr<Upload> up;
  {
    std::lock_guard lk(mu_);
    auto c = clients_.find(id);
    if (c == clients_.end() || c->second.link != link)
      return make_error(ErrorCode::failed_precondition, "connection was replaced");
    if (!c->second.ready)
      return make_error(ErrorCode::failed_precondition, "expected hello first, got chunk");
    auto u = round_.uploads.find(id);
    if (u == round_.uploads.end() || !u->second->buffer) {
      if (!round_.open || chunk.round != round_.round) {
        spdlog::debug("client '{}': chunk for closed round {} ignored", id, chunk.round);
        return {};
      }
      return make_error(ErrorCode::failed_precondition,
                        "chunk without a granted upload (send a header and wait for upload_ready)");
    }
    up = u->second;
    ++round_.copying;
  }
  // The copy and its checks (order, size, finite values) run without the lock: calls for one
  // link never overlap, and the round cannot reuse this slot while `up` holds it. close_round()
  // waits for copies under way, so nothing reads the round's model once the next one is made.
  Status s = up->secure ? up->masked.add(chunk) : up->assembler.add(chunk);
  const bool complete = s && (up->secure ? up->masked.complete() : up->assembler.complete());

  FlushOnExit flush(events_);
  std::lock_guard lk(mu_);
  if (--round_.copying == 0) cv_.notify_all();
  auto u = round_.uploads.find(id);
  if (u == round_.uploads.end() || u->second != up) {  // the round closed, or the client left
    up.reset();
    grant_slots();
    return {};
  }
  up->last_progress = Clock::now();
  if (!s) {
    round_.uploads.erase(u);
    up.reset();
    if (round_.secure) {
      note_secure_failure(id, "masked input: " + s.message());
    } else {
      settle(id, Stage::rejected, s.message());
    }
    grant_slots();
    return make_error(ErrorCode::invalid_argument, "rejected update: " + s.message());
  }
  if (!complete) return {};
  round_.uploads.erase(u);
  if (up->secure) {
    ++round_.in_flight;
    worker_.post([this, up = std::move(up)]() mutable { sum_masked_input(std::move(up)); });
  } else {
    settle(id, Stage::aggregating, "");
    worker_.post([this, up = std::move(up)]() mutable { aggregate_upload(std::move(up)); });
  }
  return {};
}

// On the worker. The screen looks at the update's change before the strategy sees it.
void Orchestrator::aggregate_upload(std::shared_ptr<Upload> up) {
  Status s;
  const UpdateFacts facts = up->assembler.facts();
  // Measured against the round's model while the chunks were copied (begin_upload).
  const double norm =
      std::sqrt(facts.sum_sq_delta.value_or(std::numeric_limits<double>::infinity()));
  if (auto why = screen_.check(norm)) s = make_error(ErrorCode::invalid_argument, *why);
  if (s) s = strategy_->add_update(ClientUpdate{up->client, up->num_examples, up->floats, facts});
  if (s) {
    screen_.accept(norm);
    round_norms_[up->client] = norm;
  }
  FlushOnExit flush(events_);
  std::lock_guard lk(mu_);
  const std::string id = up->client;
  const std::uint64_t generation = up->generation;
  up.reset();  // the slot is free again before it is granted below
  if (round_.generation == generation) {
    auto sel = round_.selected.find(id);
    if (s && sel != round_.selected.end()) {
      auto loss = sel->second.metrics.find("train_loss");
      if (loss != sel->second.metrics.end() && std::isfinite(loss->second)) {
        round_.train_loss_sum += loss->second * double(sel->second.num_examples);
        round_.train_weight += double(sel->second.num_examples);
      }
      settle(id, Stage::accepted, "");
    } else {
      spdlog::warn("client '{}': update left out of round {}: {}", id, round_.round, s.message());
      auto c = clients_.find(id);
      if (c != clients_.end())
        c->second.link->send(serialize_shared(
            make_error_envelope(wire::Error::BAD_UPDATE, "update left out: " + s.message())));
      settle(id, Stage::rejected, s.message());
    }
  }
  grant_slots();
}

}  // namespace federa

namespace federa {

Orchestrator::Clock::time_point Orchestrator::reap_stalled_uploads() {
  const auto now = Clock::now();
  const auto stall =
      std::max<Clock::duration>(opt_.upload_stall_timeout, std::chrono::milliseconds(1));
  auto next = now + std::clamp<Clock::duration>(stall / 2, std::chrono::milliseconds(5),
                                                std::chrono::seconds(1));
  std::vector<std::string> stalled;
  for (const auto& [id, up] : round_.uploads) {
    if (!up->buffer) continue;  // still waiting for a slot: holds nothing
    if (now - up->last_progress >= stall)
      stalled.push_back(id);
    else
      next = std::min(next, up->last_progress + stall);
  }
  const std::string why =
      fmt::format("upload stalled: no chunk for {:g} s (--upload-stall-timeout)",
                  std::chrono::duration<double>(opt_.upload_stall_timeout).count());
  for (const auto& id : stalled) {
    spdlog::warn("client '{}': {}; its upload slot is released", id, why);
    round_.uploads.erase(id);
    if (auto c = clients_.find(id); c != clients_.end())
      c->second.link->send(serialize_shared(make_error_envelope(wire::Error::BAD_UPDATE, why)));
    if (round_.secure) {
      note_secure_failure(id, why);
    } else {
      settle(id, Stage::dropped, why);
    }
  }
  if (!stalled.empty()) grant_slots();
  return next;
}

}  // namespace federa
