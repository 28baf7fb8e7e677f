// vfiod_conformance [gtest flags] [--kernel=model|linux] [--device=BDF] [--nonviable=BDF]
#include <gtest/gtest.h>

#include <cstdio>

#include "conformance_target.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);  // removes the gtest flags
  vfiod::conformance::Options options;
  std::string error = vfiod::conformance::ParseOptions(argc, argv, &options);
  if (!error.empty()) {
    std::fprintf(stderr,
                 "vfiod_conformance: %s\nusage: vfiod_conformance [--kernel=model|linux] "
                 "[--device=BDF] [--nonviable=BDF]\n",
                 error.c_str());
    return 2;
  }
  std::fprintf(stderr, "vfiod_conformance: kernel=%s device=%s nonviable=%s\n",
               options.kernel.c_str(), options.device.c_str(), options.nonviable.c_str());
  vfiod::conformance::Target::Configure(options);
  return RUN_ALL_TESTS();
}
