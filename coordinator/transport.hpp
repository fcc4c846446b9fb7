// The Transport seam, coordinator side. A transport (TLS WebSockets in coordinator/server.hpp,
// an in-process one for simulation) authenticates peers, frames messages and delivers them to
// a TransportHandler; the orchestrator talks back through ClientLink. Nothing above this seam
// knows about sockets.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/wire.hpp"
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
  // A TensorChunk envelope the transport read in place (common/wire.hpp, parse_chunk_envelope):
  // its data points into the transport's buffer, valid for this call only. The default hands
  // it to on_message as a parsed Envelope.
  virtual Status on_chunk(const std::shared_ptr<ClientLink>& link, const ChunkView& chunk) {
    wire::Envelope e;
    auto* c = e.mutable_chunk();
    c->set_round(chunk.round);
    c->set_index(chunk.index);
    c->set_offset(chunk.offset);
    c->set_data(chunk.data.data(), chunk.data.size());
    return on_message(link, e);
  }
  virtual void on_disconnect(const std::shared_ptr<ClientLink>& link, const std::string& why) = 0;
  // A peer was turned away before it became a link (TLS handshake failed, no certificate,
  // connection limit): for the record only.
  virtual void on_refused(const std::string& address, const std::string& why) {}
};

// What a transport does with one received message: a TensorChunk envelope is read in place and
// given to on_chunk (its payload is not copied out of `bytes`), anything else is parsed by
// protobuf and given to on_message. An Error is for the transport to send before it closes.
inline Status deliver(TransportHandler& handler, const std::shared_ptr<ClientLink>& link,
                      std::string_view bytes) {
  if (auto chunk = parse_chunk_envelope(bytes)) return handler.on_chunk(link, *chunk);
  wire::Envelope msg;
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return make_error("message is not a valid Envelope");
  return handler.on_message(link, msg);
}

inline std::shared_ptr<const std::string> serialize_shared(const wire::Envelope& e) {
  auto s = std::make_shared<std::string>();
  e.SerializeToString(s.get());
  return s;
}

}  // namespace federa
