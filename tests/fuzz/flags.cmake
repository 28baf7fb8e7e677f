# Compiler flags of the fuzz build (-DVFIOD_FUZZ=ON, scripts/fuzz.sh): every
# library gets libFuzzer's coverage instrumentation and ASan+UBSan; only the
# targets in tests/fuzz link the libFuzzer driver (-fsanitize=fuzzer).
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "VFIOD_FUZZ needs clang: configure with CXX=clang++-16")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                    -fno-sanitize-recover=undefined)
add_link_options(-fsanitize=address,undefined)
# libstdc++ 12 declares std::expected only when __cpp_concepts >= 202002L;
# clang 16 implements what it needs (P0848) but still reports 201907L.
add_compile_options(-D__cpp_concepts=202002L -Wno-macro-redefined)
