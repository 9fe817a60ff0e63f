// `ncd check FILE...`: parse, resolve and shape-check; silent on success.
// With --MD, each file's imports go to FILE.d, or all of them into --MF.
#include <iostream>

#include "common.h"
#include "ncd/output.h"
#include "verbs.h"

namespace ncd::cli {

Handler setup_check(CLI::App &command) {
  struct Options {
    std::vector<std::string> files;
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("files", options->files, "The .ncd files to check")->required()->type_name("FILE");
  add_frontend_options(command, options->frontend);
  return [options] {
    const FrontendOptions &frontend = options->frontend;
    bool dependencies = frontend.dependency_file || !frontend.dependency_path.empty();
    std::string combined;  // the rules of every file, when --MF names one file for all
    int status = kSuccess;
    for (const std::string &file : options->files) {
      auto compilation = load_program(file, frontend);
      if (!compilation) {
        status = kUserError;
        continue;
      }
      if (!dependencies) continue;
      std::string target = frontend.dependency_target.empty() ? file : frontend.dependency_target;
      std::string rules = make_dependency_file(target, compilation->dependencies());
      if (frontend.dependency_path.empty()) {
        if (!write_or_report(file + ".d", rules)) status = kUserError;
      } else {
        combined += (combined.empty() ? "" : "\n") + rules;
      }
    }
    if (dependencies && !frontend.dependency_path.empty() && status == kSuccess)
      if (!write_or_report(frontend.dependency_path, combined)) status = kUserError;
    return status;
  };
}

}  // namespace ncd::cli
