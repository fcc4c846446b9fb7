// Fans the orchestrator's events out to the open /api/v1/events streams (server-sent events).
// publish() may be called from any thread; everything else runs on the admin listener's thread.
// The last `ring` events are kept, so a dashboard that reconnects with Last-Event-ID misses
// nothing (Last-Event-ID: 0 replays all that is kept); one that fell further behind gets a
// "resync" event first and reloads its state.
//
//   EventHub hub(io.get_executor());
//   hub.publish("round_committed", R"({"round":3})");   // id: 1, event: round_committed, data: ...
//   hub.subscribe(sink, last_event_id);                 // on the io thread
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace federa::admin {

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Queues one SSE frame; a sink that cannot keep up closes itself.
  virtual void push(std::shared_ptr<const std::string> frame) = 0;
  virtual void close() = 0;
};

class EventHub {
 public:
  explicit EventHub(boost::asio::any_io_executor executor, std::size_t ring = 512)
      : executor_(std::move(executor)), ring_size_(ring) {}

  void publish(std::string_view event, std::string json);  // thread-safe
  // On the executor's thread.
  void subscribe(const std::shared_ptr<EventSink>& sink, std::optional<std::uint64_t> last_id);
  void unsubscribe(const EventSink* sink);
  void heartbeat();
  void close_all();
  std::size_t subscribers() const { return count_.load(); }

 private:
  void deliver(std::shared_ptr<const std::string> frame);

  boost::asio::any_io_executor executor_;
  std::size_t ring_size_;
  std::uint64_t next_id_ = 1;
  std::deque<std::pair<std::uint64_t, std::shared_ptr<const std::string>>> ring_;
  std::map<const EventSink*, std::weak_ptr<EventSink>> sinks_;
  std::atomic<std::size_t> count_{0};
};

}  // namespace federa::admin
