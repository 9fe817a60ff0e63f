// The CUDA backend's architectures and the limits their hardware profiles
// give the kernels (targets.cpp).
#pragma once

#include <optional>
#include <string>

#include "plan.h"

namespace ncd::cuda {

std::string default_arch();
// False, with the message listing the architectures, for one the backend does not know.
bool check_arch(const std::string &arch, std::string &error);
// The limits of a known architecture; a profile that cannot be read leaves
// them unknown with the reason (an error only for a kernel that needs them).
detail::Limits target_limits(const std::string &arch);
// The limits of the architecture whose profile `hardware` is (by name or
// alias), or nullopt when it is none of them.
std::optional<detail::Limits> profile_limits(const HardwareProfile &hardware);

}  // namespace ncd::cuda
