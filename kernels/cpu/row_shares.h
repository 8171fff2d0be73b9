// Rows of one product shared out between the threads that compute it, with stealing. Each
// share starts as an equal range of rows; its thread takes pieces from the front of its own
// range, and once that is empty takes pieces from the back of the others'. So on a quiet
// machine every thread computes about its own half (the rows whose inputs the previous
// elementwise pass, split the same way, left in its cache), and a thread that is slowed (a
// preempted core, a cold cache) hands the rest of its range to one that is not, instead of
// making it wait at the end of the job. Internal to kernels/cpu.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

namespace dualflow::cpu {

class RowShares {
 public:
  // `rows` rows (fewer than 2^32) in `shares` equal ranges; a thread takes pieces of `own_piece`
  // rows from its own range and of `stolen_piece` from another's (both at least one).
  RowShares(int64_t rows, int shares, int64_t own_piece, int64_t stolen_piece)
      : shares_(std::max(shares, 1)),
        own_piece_(std::max<int64_t>(own_piece, 1)),
        stolen_piece_(std::max<int64_t>(stolen_piece, 1)),
        ranges_(new std::atomic<uint64_t>[size_t(shares_)]) {
    for (int s = 0; s < shares_; ++s) ranges_[size_t(s)].store(pack(rows * s / shares_, rows * (s + 1) / shares_));
  }

  // The next rows [begin, end) for the thread of share `self`; false when every row is taken.
  bool next(int self, int64_t& begin, int64_t& end) {
    if (take(ranges_[size_t(self)], own_piece_, true, begin, end)) return true;
    for (int i = 1; i < shares_; ++i)
      if (take(ranges_[size_t((self + i) % shares_)], stolen_piece_, false, begin, end)) return true;
    return false;
  }

 private:
  // A range is one word, begin in the low half and end in the high, so the thread of the range
  // (taking from the front) and a thief (from the back) agree on it through one compare-and-swap.
  static uint64_t pack(int64_t begin, int64_t end) { return uint64_t(begin) | uint64_t(end) << 32; }

  static bool take(std::atomic<uint64_t>& range, int64_t piece, bool front, int64_t& begin, int64_t& end) {
    uint64_t w = range.load();
    for (;;) {
      const int64_t b = int64_t(w & 0xffffffffu), e = int64_t(w >> 32);
      if (b >= e) return false;
      // A remainder of less than half a piece goes with the piece before it.
      const int64_t take = e - b < piece + piece / 2 ? e - b : piece;
      if (range.compare_exchange_weak(w, front ? pack(b + take, e) : pack(b, e - take))) {
        begin = front ? b : e - take;
        end = front ? b + take : e;
        return true;
      }
    }
  }

  int shares_;
  int64_t own_piece_, stolen_piece_;
  std::unique_ptr<std::atomic<uint64_t>[]> ranges_;
};

}  // namespace dualflow::cpu
