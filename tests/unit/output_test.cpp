// write_output: atomic files (a failed or interrupted write leaves neither the
// file nor a temporary), special files and links written through, and
// Makefile dependency files.
#include "ncd/output.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>
#include <fstream>

#include "test_support.h"

namespace fs = std::filesystem;

namespace ncd {
namespace {

class WriteOutput : public ::testing::Test {
 protected:
  void SetUp() override { dir = test::make_temp_dir(); }
  void TearDown() override { fs::remove_all(dir); }

  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto &entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::string path(const std::string &name) const { return (fs::path(dir) / name).string(); }
  void put(const std::string &name, const std::string &content) const { std::ofstream(path(name)) << content; }

  std::string dir;
};

TEST_F(WriteOutput, CreatesTheFile) {
  std::string error;
  ASSERT_TRUE(write_output(path("out.ncd"), "axis q = 4\n", error)) << error;
  EXPECT_EQ(test::read_file(path("out.ncd")), "axis q = 4\n");
  EXPECT_EQ(entries(), std::vector<std::string>{"out.ncd"});  // no temporary left behind
}

TEST_F(WriteOutput, WritesEmptyFiles) {
  std::string error;
  ASSERT_TRUE(write_output(path("empty"), "", error)) << error;
  EXPECT_EQ(test::read_file(path("empty")), "");
}

TEST_F(WriteOutput, ReplacesAnExistingFile) {
  put("out.ncd", "old content that is longer than the new one\n");
  std::string error;
  ASSERT_TRUE(write_output(path("out.ncd"), "new\n", error)) << error;
  EXPECT_EQ(test::read_file(path("out.ncd")), "new\n");
  EXPECT_EQ(entries(), std::vector<std::string>{"out.ncd"});
}

TEST_F(WriteOutput, GivesThePermissionsOfAPlainCreate) {
  mode_t old = umask(022);
  std::string error;
  bool ok = write_output(path("out"), "x", error);
  umask(old);
  ASSERT_TRUE(ok) << error;
  struct stat info {};
  ASSERT_EQ(stat(path("out").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);  // not mkstemp's 0600
}

TEST_F(WriteOutput, RelativePathsUseTheWorkingDirectory) {
  fs::path cwd = fs::current_path();
  fs::current_path(dir);
  std::string error;
  bool ok = write_output("relative.txt", "r", error);
  fs::current_path(cwd);
  ASSERT_TRUE(ok) << error;
  EXPECT_EQ(test::read_file(path("relative.txt")), "r");
  EXPECT_EQ(entries(), std::vector<std::string>{"relative.txt"});
}

TEST_F(WriteOutput, MissingFolderFailsCleanly) {
  std::string error;
  EXPECT_FALSE(write_output(path("no/such/folder/out.ncd"), "x", error));
  EXPECT_EQ(error, "cannot write '" + path("no/such/folder/out.ncd") + "': No such file or directory");
  EXPECT_TRUE(entries().empty());
}

TEST_F(WriteOutput, DirectoryTargetFailsCleanly) {
  fs::create_directory(path("taken"));
  std::string error;
  EXPECT_FALSE(write_output(path("taken"), "x", error));
  EXPECT_EQ(error.rfind("cannot write '" + path("taken") + "': ", 0), 0u) << error;
  EXPECT_TRUE(fs::is_directory(path("taken")));
  EXPECT_EQ(entries(), std::vector<std::string>{"taken"});  // the temporary was removed
}

TEST_F(WriteOutput, FailedWriteLeavesNoFileAndKeepsTheOldOne) {
  // A file size limit makes write() fail half way (EFBIG), like a full disk.
  put("kept.ncd", "original\n");
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit {1000, 1000};
    setrlimit(RLIMIT_FSIZE, &limit);
    std::string error;
    bool a = write_output(path("new.ncd"), std::string(100000, 'x'), error);
    bool b = write_output(path("kept.ncd"), std::string(100000, 'y'), error);
    bool worded = error.rfind("cannot write '" + path("kept.ncd") + "': ", 0) == 0;
    _exit(!a && !b && worded ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "write_output reported success, or worded the error otherwise";
  EXPECT_EQ(entries(), std::vector<std::string>{"kept.ncd"});  // neither new.ncd nor a temporary
  EXPECT_EQ(test::read_file(path("kept.ncd")), "original\n");
}

TEST_F(WriteOutput, ReadOnlyFolderFailsCleanly) {
  if (geteuid() == 0) GTEST_SKIP() << "root ignores folder permissions";
  fs::create_directory(path("ro"));
  fs::permissions(path("ro"), fs::perms::owner_read | fs::perms::owner_exec);
  std::string error;
  EXPECT_FALSE(write_output(path("ro/out"), "x", error));
  fs::permissions(path("ro"), fs::perms::owner_all);
  EXPECT_TRUE(fs::is_empty(path("ro")));
}

TEST_F(WriteOutput, FifoIsWrittenInPlace) {
  ASSERT_EQ(mkfifo(path("pipe").c_str(), 0600), 0);
  std::string received;
  std::thread reader([&] {
    std::ifstream in(path("pipe"));
    received.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  });
  std::string error;
  bool ok = write_output(path("pipe"), "through the pipe\n", error);
  reader.join();
  EXPECT_TRUE(ok) << error;
  EXPECT_EQ(received, "through the pipe\n");
  struct stat info {};
  ASSERT_EQ(lstat(path("pipe").c_str(), &info), 0);
  EXPECT_TRUE(S_ISFIFO(info.st_mode)) << "the FIFO was replaced by a regular file";
  EXPECT_EQ(entries(), std::vector<std::string>{"pipe"});
}

TEST_F(WriteOutput, SymlinkToADeviceIsWrittenThrough) {
  fs::create_symlink("/dev/null", path("sink"));
  std::string error;
  EXPECT_TRUE(write_output(path("sink"), "discarded\n", error)) << error;
  EXPECT_TRUE(fs::is_symlink(path("sink")));
  struct stat info {};
  ASSERT_EQ(stat("/dev/null", &info), 0);
  EXPECT_TRUE(S_ISCHR(info.st_mode));
  EXPECT_EQ(entries(), std::vector<std::string>{"sink"});
}

TEST_F(WriteOutput, SymlinkIsKeptAndItsTargetRewritten) {
  put("real.ncd", "old\n");
  fs::create_symlink("real.ncd", path("link.ncd"));
  std::string error;
  ASSERT_TRUE(write_output(path("link.ncd"), "new\n", error)) << error;
  EXPECT_TRUE(fs::is_symlink(path("link.ncd")));
  EXPECT_EQ(test::read_file(path("real.ncd")), "new\n");
  EXPECT_EQ(entries(), (std::vector<std::string>{"link.ncd", "real.ncd"}));
}

TEST_F(WriteOutput, DanglingSymlinkCreatesItsTarget) {
  fs::create_symlink("made.ncd", path("link.ncd"));
  std::string error;
  ASSERT_TRUE(write_output(path("link.ncd"), "made\n", error)) << error;
  EXPECT_TRUE(fs::is_symlink(path("link.ncd")));
  EXPECT_EQ(test::read_file(path("made.ncd")), "made\n");
}

TEST_F(WriteOutput, InterruptRemovesTheTemporary) {
  // SIGTERM while the temporary is being written: neither it nor the target stays.
  bool caught = false;
  for (int attempt = 0; attempt < 5 && !caught; ++attempt) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      std::string content(size_t(256) << 20, 'x');
      std::string error;
      write_output(path("big.npy"), content, error);
      _exit(0);
    }
    // Poll for the temporary, then interrupt.
    for (int i = 0; i < 200000 && !caught; ++i) {
      for (const auto &name : entries())
        if (name.find(".tmp") != std::string::npos) caught = true;
      if (!caught) usleep(50);
    }
    if (caught) kill(child, SIGTERM);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    if (caught) {
      if (WIFEXITED(status)) {  // finished before the signal arrived: try again
        caught = false;
        fs::remove(path("big.npy"));
        continue;
      }
      ASSERT_TRUE(WIFSIGNALED(status));
      EXPECT_EQ(WTERMSIG(status), SIGTERM);
      // The signal may land after the rename: then the whole file is there, and only it.
      for (const auto &name : entries()) {
        EXPECT_EQ(name, "big.npy") << "left " << name;
        if (name == "big.npy") {
          EXPECT_EQ(fs::file_size(path(name)), size_t(256) << 20);
        }
      }
    }
  }
  EXPECT_TRUE(caught) << "never saw the temporary file";
}

TEST_F(WriteOutput, DashIsStandardOutput) {
  testing::internal::CaptureStdout();
  std::string error;
  bool ok = write_output("-", "to stdout\n", error);
  std::string captured = testing::internal::GetCapturedStdout();
  EXPECT_TRUE(ok) << error;
  EXPECT_EQ(captured, "to stdout\n");
  EXPECT_TRUE(entries().empty());
}

TEST(DependencyFile, ListsTheRootThenImports) {
  EXPECT_EQ(make_dependency_file("out.svg", {"model.ncd", "lib/a.ncd", "std/nn.ncd"}),
            "out.svg: \\\n  model.ncd \\\n  lib/a.ncd \\\n  std/nn.ncd\n\nlib/a.ncd:\n\nstd/nn.ncd:\n");
}

TEST(DependencyFile, NoImports) {
  EXPECT_EQ(make_dependency_file("out.svg", {"model.ncd"}), "out.svg: \\\n  model.ncd\n");
}

TEST(DependencyFile, EscapesMakeSpecialCharacters) {
  EXPECT_EQ(make_dependency_file("my out", {"a b.ncd", "c#d.ncd", "$x.ncd"}),
            "my\\ out: \\\n  a\\ b.ncd \\\n  c\\#d.ncd \\\n  $$x.ncd\n\nc\\#d.ncd:\n\n$$x.ncd:\n");
}

}  // namespace
}  // namespace ncd
