#include "sim/mpi_codec.hpp"

#include <cstring>

#include "common/wire.hpp"

namespace federa {

namespace {

class Writer {
 public:
  void u64(std::uint64_t v) { raw(&v, sizeof v); }
  void f64(double v) { raw(&v, sizeof v); }
  void str(const std::string& s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void floats(const std::vector<float>& v) {
    u64(v.size());
    raw(v.data(), v.size() * sizeof(float));
  }
  std::string take() { return std::move(out_); }

 private:
  void raw(const void* p, std::size_t n) {
    if (n > 0) out_.append(static_cast<const char*>(p), n);
  }
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}
  bool ok() const { return ok_; }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    raw(&v, sizeof v);
    return v;
  }
  double f64() {
    double v = 0;
    raw(&v, sizeof v);
    return v;
  }
  std::string str() {
    std::uint64_t n = u64();
    if (!ok_ || n > s_.size() - at_) return fail(), std::string();
    std::string v = s_.substr(at_, n);
    at_ += n;
    return v;
  }
  std::vector<float> floats() {
    std::uint64_t n = u64();
    if (!ok_ || n > (s_.size() - at_) / sizeof(float)) return fail(), std::vector<float>();
    std::vector<float> v(n);
    raw(v.data(), n * sizeof(float));
    return v;
  }
  // A count of items of at least `min_bytes` each: never more than the bytes left allow.
  std::uint64_t count(std::size_t min_bytes) {
    std::uint64_t n = u64();
    if (!ok_ || n > (s_.size() - at_) / min_bytes) return fail(), 0;
    return n;
  }

 private:
  void fail() { ok_ = false; }
  void raw(void* p, std::size_t n) {
    if (!ok_ || n > s_.size() - at_) return fail();
    if (n > 0) std::memcpy(p, s_.data() + at_, n);  // an empty vector's data() may be null
    at_ += n;
  }
  const std::string& s_;
  std::size_t at_ = 0;
  bool ok_ = true;
};

}  // namespace

std::string encode_order(const WorkOrder& o) {
  Writer w;
  w.u64(o.stop ? 1 : 0);
  if (o.stop) return w.take();
  w.u64(o.round);
  w.str(to_wire(o.config).SerializeAsString());
  w.floats(o.global);
  w.u64(o.clients.size());
  for (std::size_t c : o.clients) w.u64(c);
  return w.take();
}

Result<WorkOrder> decode_order(const std::string& s) {
  Reader r(s);
  WorkOrder o;
  o.stop = r.u64() != 0;
  if (!r.ok()) return Error{ErrorCode::data_loss, "rank 0 sent an empty work order"};
  if (o.stop) return o;
  o.round = r.u64();
  wire::TrainConfig wc;
  if (!wc.ParseFromString(r.str()))
    return Error{ErrorCode::data_loss, "rank 0 sent an unreadable train config"};
  o.config = from_wire(wc);
  o.global = r.floats();
  o.clients.resize(r.count(sizeof(std::uint64_t)));
  for (auto& c : o.clients) c = r.u64();
  if (!r.ok()) return Error{ErrorCode::data_loss, "rank 0 sent a truncated work order"};
  return o;
}

std::string encode_outcomes(const std::vector<TrainOutcome>& v) {
  Writer w;
  w.u64(v.size());
  for (const auto& o : v) {
    w.u64(o.client);
    w.u64(o.ok ? 1 : 0);
    w.str(o.error);
    w.u64(o.num_examples);
    w.u64(o.metrics.size());
    for (const auto& [k, x] : o.metrics) {
      w.str(k);
      w.f64(x);
    }
    w.floats(o.weights);
  }
  return w.take();
}

Result<std::vector<TrainOutcome>> decode_outcomes(const std::string& s) {
  Reader r(s);
  // Each outcome takes at least six 8-byte words.
  std::vector<TrainOutcome> v(r.count(6 * sizeof(std::uint64_t)));
  for (auto& o : v) {
    o.client = r.u64();
    o.ok = r.u64() != 0;
    o.error = r.str();
    o.num_examples = r.u64();
    for (std::uint64_t m = r.u64(); r.ok() && m > 0; --m) {
      std::string k = r.str();
      o.metrics[k] = r.f64();
    }
    o.weights = r.floats();
    if (!r.ok()) return Error{ErrorCode::data_loss, "a rank sent a truncated training result"};
  }
  if (!r.ok()) return Error{ErrorCode::data_loss, "a rank sent a truncated training result"};
  return v;
}

}  // namespace federa
