// The Transport seam, coordinator side. A transport (TLS WebSockets in coordinator/server.hpp,
// an in-process one for simulation) authenticates peers, frames messages and delivers them to
// a TransportHandler; the orchestrator talks back through ClientLink. Nothing above this seam
// knows about sockets.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "federa.pb.h"

namespace federa {

// A sequence of serialized Envelopes made one at a time, as the link drains (a model broadcast:
// nothing is serialized ahead of the peer, so memory does not grow with the model per link).
class MessageStream {
 public:
  virtual ~MessageStream() = default;
  // The next message; nullptr once the sequence is over (or abandoned).
  virtual std::shared_ptr<const std::string> next() = 0;
  // About how many bytes the whole sequence takes on the wire (for outbound-queue limits).
  virtual std::size_t size_bytes() const = 0;
};

// One connected, authenticated client.
class ClientLink {
 public:
  virtual ~ClientLink() = default;
  // The authenticated identity (certificate CN for TLS).
  virtual const std::string& id() const = 0;
  // Where the peer connects from ("198.51.100.7:51234"); empty for in-process links.
  virtual std::string address() const { return {}; }
  // Queues one serialized Envelope; shared so a broadcast is serialized once for everyone.
  virtual void send(std::shared_ptr<const std::string> envelope_bytes) = 0;
  // Queues a whole stream, in order with send()'s messages. A network link pulls each message
  // when the previous one is written; this default pulls them all now (in-process links).
  virtual void send_stream(std::shared_ptr<MessageStream> stream) {
    while (auto m = stream->next()) send(std::move(m));
  }
  // Sends an Error envelope with `code` and `reason`, then closes the connection.
  virtual void close_with_error(wire::Error::Code code, const std::string& reason) = 0;
  // Closes gracefully (after queued messages are sent).
  virtual void close() = 0;
};

// What the transport calls. Calls for one link are never concurrent with each other; calls for
// different links may be.
class TransportHandler {
 public:
  virtual ~TransportHandler() = default;
  // A peer authenticated as link->id(). Returning an Error refuses it (the reason is sent).
  virtual Status on_connect(const std::shared_ptr<ClientLink>& link) = 0;
  // One envelope from the peer. Returning an Error makes the transport send it and close.
  virtual Status on_message(const std::shared_ptr<ClientLink>& link, const wire::Envelope& msg) = 0;
  virtual void on_disconnect(const std::shared_ptr<ClientLink>& link, const std::string& why) = 0;
  // A peer was turned away before it became a link (TLS handshake failed, no certificate,
  // connection limit): for the record only.
  virtual void on_refused(const std::string& address, const std::string& why) {}
};

inline std::shared_ptr<const std::string> serialize_shared(const wire::Envelope& e) {
  auto s = std::make_shared<std::string>();
  e.SerializeToString(s.get());
  return s;
}

}  // namespace federa
