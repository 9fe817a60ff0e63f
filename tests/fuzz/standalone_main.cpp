// A small driver for the fuzz targets where libFuzzer is not at hand (GCC
// builds, the test suite): it runs every seed file given, then a fixed number
// of seeded mutations of them (bit flips, byte edits, splices, truncations,
// interesting bytes). The same seed gives the same inputs, so a failure in
// the suite reproduces. It takes libFuzzer's -runs=, -seed= and
// -max_total_time= flags; the long run uses libFuzzer itself (tests/fuzz/README.md).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

namespace {

// The input being run, written out by the crash handler (only async-signal-safe calls there).
const std::string *current = nullptr;

void save_and_die(int signal_number) {
  if (current) {
    int fd = ::open("fuzz-crash.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ssize_t ignored = ::write(fd, current->data(), current->size());
      (void)ignored;
      ::close(fd);
    }
    const char note[] = "fuzz: the failing input is in fuzz-crash.bin\n";
    ssize_t ignored = ::write(2, note, sizeof note - 1);
    (void)ignored;
  }
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

void run_one(const std::string &input) {
  current = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t *>(input.data()), input.size());
  current = nullptr;
}

std::string mutate(const std::vector<std::string> &seeds, std::mt19937_64 &random) {
  auto pick = [&](size_t n) { return n ? static_cast<size_t>(random() % n) : 0; };
  std::string out = seeds[pick(seeds.size())];
  static const char *const kInteresting[] = {"\x00", "\xff", "\x7f", "\x80", "-1", "0", "9223372036854775807",
                                             "18446744073709551616", "1e400", "nan", "[", "]", "{", "}", ",", ":",
                                             "\n", "\"", "'", "(", ")", "*", "#", "..", "\xc3\xa9"};
  const int edits = 1 + static_cast<int>(pick(4));
  for (int e = 0; e < edits; ++e) {
    switch (pick(7)) {
      case 0:  // flip a bit
        if (!out.empty()) out[pick(out.size())] ^= static_cast<char>(1u << pick(8));
        break;
      case 1:  // set a byte
        if (!out.empty()) out[pick(out.size())] = static_cast<char>(random());
        break;
      case 2:  // delete a run
        if (!out.empty()) {
          size_t at = pick(out.size());
          out.erase(at, 1 + pick(std::min<size_t>(16, out.size() - at)));
        }
        break;
      case 3: {  // insert an interesting token
        const char *token = kInteresting[pick(std::size(kInteresting))];
        out.insert(pick(out.size() + 1), token, std::max<size_t>(1, std::strlen(token)));
        break;
      }
      case 4:  // truncate
        out.resize(pick(out.size() + 1));
        break;
      case 5: {  // splice in a piece of another seed
        const std::string &other = seeds[pick(seeds.size())];
        if (!other.empty()) {
          size_t from = pick(other.size());
          out.insert(pick(out.size() + 1), other.substr(from, 1 + pick(std::min<size_t>(64, other.size() - from))));
        }
        break;
      }
      default:  // duplicate a run
        if (!out.empty()) {
          size_t at = pick(out.size());
          out.insert(at, out.substr(at, 1 + pick(std::min<size_t>(32, out.size() - at))));
        }
    }
  }
  return out;
}

}  // namespace

int main(int argc, char **argv) {
  long runs = 1000, seed = 1, max_seconds = 0;
  std::vector<std::string> seeds;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("-runs=", 0) == 0) runs = std::atol(arg.c_str() + 6);
    else if (arg.rfind("-seed=", 0) == 0) seed = std::atol(arg.c_str() + 6);
    else if (arg.rfind("-max_total_time=", 0) == 0) max_seconds = std::atol(arg.c_str() + 16);
    else if (arg.rfind("-", 0) == 0) std::fprintf(stderr, "fuzz: ignoring %s (a libFuzzer flag)\n", arg.c_str());
    else {
      std::vector<std::filesystem::path> files;
      if (std::filesystem::is_directory(arg)) {
        for (const auto &entry : std::filesystem::directory_iterator(arg))
          if (entry.is_regular_file()) files.push_back(entry.path());
      } else {
        files.push_back(arg);
      }
      std::sort(files.begin(), files.end());
      for (const auto &file : files) {
        std::ifstream in(file, std::ios::binary);
        seeds.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      }
    }
  }
  for (int s : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(s, save_and_die);
  if (seeds.empty()) seeds.emplace_back();
  for (const auto &input : seeds) run_one(input);
  std::mt19937_64 random(static_cast<uint64_t>(seed));
  const auto start = std::chrono::steady_clock::now();
  long done = 0;
  for (; done < runs; ++done) {
    if (max_seconds && std::chrono::steady_clock::now() - start > std::chrono::seconds(max_seconds)) break;
    run_one(mutate(seeds, random));
  }
  std::printf("fuzz: %zu seeds and %ld mutations ran clean\n", seeds.size(), done);
  return 0;
}
