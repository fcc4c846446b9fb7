#include "coordinator/admin/event_hub.hpp"

#include <boost/asio/post.hpp>
#include <vector>

namespace federa::admin {

void EventHub::publish(std::string_view event, std::string json) {
  boost::asio::post(executor_, [this, event = std::string(event), json = std::move(json)] {
    const std::uint64_t id = next_id_++;
    auto frame = std::make_shared<const std::string>(
        "id: " + std::to_string(id) + "\nevent: " + event + "\ndata: " + json + "\n\n");
    ring_.emplace_back(id, frame);
    while (ring_.size() > ring_size_) ring_.pop_front();
    deliver(std::move(frame));
  });
}

void EventHub::subscribe(const std::shared_ptr<EventSink>& sink,
                         std::optional<std::uint64_t> last_id) {
  sinks_[sink.get()] = sink;
  count_ = sinks_.size();
  if (!last_id) return;
  // A gap (the subscriber missed events the ring no longer holds): it must reload its state.
  if (!ring_.empty() && *last_id + 1 < ring_.front().first)
    sink->push(std::make_shared<const std::string>("event: resync\ndata: {}\n\n"));
  for (const auto& [id, frame] : ring_)
    if (id > *last_id) sink->push(frame);
}

void EventHub::unsubscribe(const EventSink* sink) {
  sinks_.erase(sink);
  count_ = sinks_.size();
}

void EventHub::deliver(std::shared_ptr<const std::string> frame) {
  std::vector<std::shared_ptr<EventSink>> live;
  for (auto it = sinks_.begin(); it != sinks_.end();) {
    if (auto s = it->second.lock()) {
      live.push_back(std::move(s));
      ++it;
    } else {
      it = sinks_.erase(it);
    }
  }
  count_ = sinks_.size();
  for (auto& s : live) s->push(frame);  // a sink may unsubscribe itself here
}

void EventHub::heartbeat() { deliver(std::make_shared<const std::string>(": keep-alive\n\n")); }

void EventHub::close_all() {
  std::vector<std::shared_ptr<EventSink>> live;
  for (auto& [_, w] : sinks_)
    if (auto s = w.lock()) live.push_back(std::move(s));
  for (auto& s : live) s->close();
  sinks_.clear();
  count_ = 0;
}

}  // namespace federa::admin
