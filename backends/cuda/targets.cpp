// The architectures the CUDA backend generates for, each with the hardware
// profile (stdlib/hw/*.yaml) that describes it. Every hardware fact a kernel
// depends on (how much shared memory a block may use, which dtypes its tensor
// cores take: int8 and fp8 contractions) is read from that
// profile, so that adding an architecture is a row here and a profile there.
#include "targets.h"

#include "ncd/diagnostics.h"
#include "ncd/source.h"

namespace ncd::cuda {

namespace {

struct Target {
  const char *arch;
  const char *profile;
};

// The first is the default.
constexpr Target kTargets[] = {{"sm_80", "a100-80g"}, {"sm_90", "h100-sxm"}};

// The CUDA Programming Guide reserves 1 KiB of each SM's shared memory per
// block, so a block may opt in to the SM's capacity less that (sm_80: 164 KiB
// per SM, 163 KiB per block; sm_90: 228 and 227).
constexpr double kReservedPerBlock = 1024;

}  // namespace

std::string default_arch() { return kTargets[0].arch; }

bool check_arch(const std::string &arch, std::string &error) {
  std::string expected;
  size_t count = sizeof kTargets / sizeof kTargets[0];
  for (size_t i = 0; i < count; ++i) {
    if (arch == kTargets[i].arch) return true;
    expected += std::string(i == 0 ? "" : i + 1 == count ? " or " : ", ") + kTargets[i].arch;
  }
  error = "unknown --arch '" + arch + "'; expected " + expected;
  return false;
}

std::optional<detail::Limits> profile_limits(const HardwareProfile &hardware) {
  for (const Target &target : kTargets) {
    if (!hardware.answers_to(target.profile)) continue;
    detail::Limits limits;
    limits.profile = hardware.name;
    for (const auto &[dtype, rate] : hardware.tensor) limits.tensor.insert(dtype);
    int smem = hardware.level_index("smem");
    if (smem < 0)
      limits.unknown = "the hardware profile '" + hardware.name + "' has no level 'smem'";
    else
      limits.block_smem = static_cast<int64_t>(hardware.levels[static_cast<size_t>(smem)].capacity - kReservedPerBlock);
    return limits;
  }
  return std::nullopt;
}

detail::Limits target_limits(const std::string &arch) {
  detail::Limits limits;
  for (const Target &target : kTargets) {
    if (arch != target.arch) continue;
    SourceManager sources;
    DiagnosticEngine quiet(sources);
    auto hardware = load_hardware(target.profile, sources, quiet);
    int smem = hardware ? hardware->level_index("smem") : -1;
    limits.profile = target.profile;
    if (hardware)
      for (const auto &[dtype, rate] : hardware->tensor) limits.tensor.insert(dtype);
    if (!hardware)
      limits.unknown = "the hardware profile '" + std::string(target.profile) + "' of " + arch + " cannot be read";
    else if (smem < 0)
      limits.unknown = "the hardware profile '" + std::string(target.profile) + "' of " + arch + " has no level 'smem'";
    else
      limits.block_smem =
          static_cast<int64_t>(hardware->levels[static_cast<size_t>(smem)].capacity - kReservedPerBlock);
    return limits;
  }
  limits.unknown = "no hardware profile for --arch '" + arch + "'";
  return limits;
}

}  // namespace ncd::cuda
