// The client side of the transport seam: how a ClientSession (client/session.hpp) talks to its
// coordinator and asks its host to run a task. The TLS client (client/client.cpp) implements both
// over a WebSocket and a worker thread, the simulator (sim/) in process over threads and MPI
// ranks, the unit tests with recording fakes. The session holds every rule of the protocol; an
// implementation only moves bytes and runs trainers.
//
//   class Recorder final : public ServerLink {
//     void send(const wire::Envelope& e) override { sent.push_back(e); }
//     void close(const SessionEnd& end) override { ended = end; }
//   };
//
// Both interfaces are called on the session's thread, and neither may call back into the session
// from inside the call: queue, and deliver afterwards.
#pragma once

#include <string>

#include "client/task.hpp"
#include "federa.pb.h"

namespace federa {

// Why a session ended, which decides what its host does next.
struct SessionEnd {
  enum class Kind {
    retry,     // the coordinator said goodbye for now (or the link broke): reconnect later
    complete,  // the federation is complete (Bye with federation_complete)
    refused,   // this client is not a member: reconnecting cannot help
    fatal,     // the protocol versions differ: upgrade before reconnecting
  };
  Kind kind = Kind::retry;
  std::string reason;
};

class ServerLink {
 public:
  virtual ~ServerLink() = default;
  // Queues one envelope for the coordinator, in order.
  virtual void send(const wire::Envelope& envelope) = 0;
  // The session is over: close the connection after what was queued. Called at most once.
  virtual void close(const SessionEnd& end) = 0;
};

class TaskRunner {
 public:
  virtual ~TaskRunner() = default;
  // Runs `task` (on a worker thread, or batched with other clients' tasks) and later hands the
  // outcome to the session's on_task_done on the session's thread. The session asks for one
  // task at a time: never again before the previous one's result was handed back.
  virtual void run(Task task) = 0;
};

}  // namespace federa
