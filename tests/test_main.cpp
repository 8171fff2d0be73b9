// Catch2 entry point shared by the test executables. With --cuda-only the run reports itself
// skipped (exit 77, which CTest counts as "Skipped") when no CUDA device answers.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "engine/device.h"

int main(int argc, char** argv) {
  std::vector<char*> args;
  bool cuda_only = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cuda-only") == 0) {
      cuda_only = true;
      continue;
    }
    args.push_back(argv[i]);
  }
  if (cuda_only && !dualflow::cuda_available()) {
    std::printf("no CUDA device answers: CUDA tests skipped\n");
    return 77;
  }
  return Catch::Session().run(int(args.size()), args.data());
}
