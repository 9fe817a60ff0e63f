// `ncd check FILE...`: parse, resolve and shape-check; silent on success.
#include <iostream>

#include "common.h"
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
    int status = kSuccess;
    for (const std::string &file : options->files) {
      auto compilation = load_program(file, options->frontend);
      if (!compilation) {
        status = kUserError;
        continue;
      }
      if (!write_dependency_file(options->frontend, *compilation, file, "")) status = kUserError;
    }
    return status;
  };
}

}  // namespace ncd::cli
