// The fixed device code at the top of every generated .cu file (prelude.cpp).
#pragma once

namespace ncd::cuda {

extern const char *const kPrelude;

}  // namespace ncd::cuda
