#!/usr/bin/python3
"""Tests of plugin loading and the plugin SDK.

    plugin_tests.py --ncd NCD --fixtures DIR --root SRC --build BUILD TEST

TEST is one of:
  list          `ncd plugins` (text and --json) lists the svg and dot renderers with their files
  errors        missing file, not a shared library, no entry point, another API version, no
                plugin information, duplicate plugin name, duplicate renderer name: exact
                messages, exit 1, on every verb that takes --plugin
  passes        `ncd show --passes`: runs passes from plugins, unknown names get a did-you-mean
  search_path   NCD_PLUGIN_PATH folders are searched; a file reached twice loads once
  out_of_tree   `cmake --install` into a temporary prefix, examples/plugin-hello configured
                with find_package(ncd) against it, built, loaded by the installed ncd and run

Standard library only; exit status 0 when the test passes.
"""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile


class Failure(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failure(message)


class Context:
    def __init__(self, options):
        self.ncd = options.ncd
        self.fixtures = options.fixtures
        self.root = options.root
        self.build = options.build
        self.cmake = options.cmake
        self.attention = os.path.join(self.root, "examples", "attention.ncd")
        header = open(os.path.join(self.root, "core", "include", "ncd", "plugin.h")).read()
        self.api_version = int(re.search(r"#define NCD_PLUGIN_API_VERSION (\d+)", header).group(1))

    def run(self, args, ncd=None, env=None, cwd=None):
        full_env = dict(os.environ, NO_COLOR="1")
        full_env.pop("NCD_PLUGIN_PATH", None)
        if env:
            full_env.update(env)
        result = subprocess.run([ncd or self.ncd] + args, env=full_env, cwd=cwd, capture_output=True, timeout=300)
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    def fixture(self, name):
        return os.path.join(self.fixtures, name + ".so")


def builtin_file(context, name):
    return os.path.join(context.build, "plugins", "ncd-plugin-%s.so" % name)


# ---------------------------------------------------------------- list

def test_list(context):
    code, out, err = context.run(["plugins"])
    expect(code == 0 and not err, "ncd plugins: exit %d, %s" % (code, err))
    expect(out.startswith("plugin API version %d\n" % context.api_version), "first line: " + out.splitlines()[0])
    for plugin, renderer in (("render-dot", "dot"), ("render-svg", "svg")):
        line = "%s 1.0.0  %s\n  renderer %s\n" % (plugin, builtin_file(context, plugin), renderer)
        expect(line in out, "ncd plugins does not list %r:\n%s" % (line, out))
    code, out, err = context.run(["plugins", "--json"])
    expect(code == 0, "ncd plugins --json: " + err)
    listing = json.loads(out)
    expect(listing["api_version"] == context.api_version, "api_version in --json")
    by_name = {plugin["name"]: plugin for plugin in listing["plugins"]}
    for plugin, renderer in (("render-dot", "dot"), ("render-svg", "svg")):
        expect(plugin in by_name, "--json lacks " + plugin)
        entry = by_name[plugin]
        expect(entry["file"] == builtin_file(context, plugin), "--json file of %s: %s" % (plugin, entry["file"]))
        expect(entry["version"] == "1.0.0" and entry["description"], "--json version/description of " + plugin)
        expect({"kind": "renderer", "name": renderer} in entry["provides"], "--json provides of " + plugin)
    print("ok list")


# ---------------------------------------------------------------- errors

def test_errors(context):
    missing = os.path.join(context.fixtures, "missing", "nothing.so")
    text_file = os.path.join(context.root, "examples", "attention.ncd")
    svg_file = builtin_file(context, "render-svg")
    cases = [
        (missing, "ncd: error: cannot load plugin '%s': no such file\n" % missing),
        (context.fixture("no_entry"),
         "ncd: error: plugin '%s' has no entry point 'ncd_plugin_entry' (is it an ncd plugin?)\n" % context.fixture("no_entry")),
        (context.fixture("other_version"),
         "ncd: error: plugin '%s' was built for plugin API version %d, but this ncd supports version %d; rebuild the plugin\n"
         % (context.fixture("other_version"), context.api_version + 1, context.api_version)),
        (context.fixture("no_info"),
         "ncd: error: plugin '%s': its entry point returned no plugin information\n" % context.fixture("no_info")),
        (context.fixture("same_name"),
         "ncd: error: duplicate plugin 'render-svg': '%s' and '%s'\n" % (context.fixture("same_name"), svg_file)),
        (context.fixture("same_renderer"),
         "ncd: error: plugin '%s' failed to register: duplicate renderer 'svg': plugin 'same-renderer' registers it, "
         "but plugin 'render-svg' already did\n" % context.fixture("same_renderer")),
        (context.fixture("pass_twice"),
         "ncd: error: plugin '%s' failed to register: duplicate pass 'twin': plugin 'pass-twice' registers it twice\n"
         % context.fixture("pass_twice")),
        (context.fixture("throws_int"),
         "ncd: error: plugin '%s' failed to register: it threw an exception that is not a std::exception\n"
         % context.fixture("throws_int")),
    ]
    verbs = [["plugins"], ["check", context.attention], ["show", "--ir", context.attention],
             ["render", context.attention], ["fmt", context.attention]]
    for plugin, message in cases:
        for verb in verbs:
            code, out, err = context.run(verb + ["--plugin", plugin])
            expect(code == 1, "ncd %s --plugin %s: exit %d (want 1)\n%s" % (verb[0], plugin, code, err))
            expect(err == message, "ncd %s --plugin %s:\n got: %r\nwant: %r" % (verb[0], plugin, err, message))
    # Not a shared library at all: the loader's message names the file, then dlopen's reason.
    code, out, err = context.run(["plugins", "--plugin", text_file])
    expect(code == 1 and err.startswith("ncd: error: cannot load plugin '%s': " % text_file), "text file: " + err)
    # A truncated library is refused before dlopen maps it (which would die of SIGBUS).
    with tempfile.TemporaryDirectory() as folder:
        whole = open(os.path.join(context.fixtures, "path", "ncd-plugin-greeter.so"), "rb").read()
        # Where the last loadable segment ends: cuts before it are what dlopen cannot survive.
        phoff, = struct.unpack_from("<Q", whole, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", whole, 0x36)
        load_end = max(offset + filesz for kind, offset, filesz in
                       (struct.unpack_from("<I4xQ16xQ", whole, phoff + i * phentsize) for i in range(phnum)) if kind == 1)
        for size in (0, 10, 64, 200, load_end // 2, load_end - 1):
            cut = os.path.join(folder, "cut%d.so" % size)
            with open(cut, "wb") as f:
                f.write(whole[:size])
            code, out, err = context.run(["plugins", "--plugin", cut])
            expect(code == 1 and err.startswith("ncd: error: cannot load plugin '%s': " % cut) and err.count("\n") == 1,
                   "truncated to %d bytes: exit %d\n%s" % (size, code, err))
        code, out, err = context.run(["plugins", "--plugin", folder])
        expect(code == 1 and err == "ncd: error: cannot load plugin '%s': not a regular file\n" % folder, "folder: " + err)
    # Every bad plugin is reported, not just the first; nothing half-registered stays behind.
    code, out, err = context.run(["plugins", "--plugin", context.fixture("no_entry"), "--plugin", context.fixture("other_version")])
    expect(code == 1 and err.count("ncd: error: ") == 2, "two bad plugins, two errors:\n" + err)
    print("ok errors")


# ---------------------------------------------------------------- passes

def known_passes(context, extra):
    code, out, err = context.run(["plugins", "--json"] + [a for p in extra for a in ("--plugin", p)])
    expect(code == 0, err)
    return sorted(entry["name"] for plugin in json.loads(out)["plugins"] for entry in plugin["provides"]
                  if entry["kind"] == "pass")


def test_passes(context):
    greeter = os.path.join(context.fixtures, "path", "ncd-plugin-greeter.so")
    code, plain, err = context.run(["show", "--ir", context.attention])
    expect(code == 0, err)
    code, out, err = context.run(["show", "--ir", "--plugin", greeter, "--passes", "greet", context.attention])
    expect(code == 0 and out == plain and not err, "--passes greet: exit %d\n%s" % (code, err))
    code, out, err = context.run(["show", "--json", "--plugin", greeter, "--passes", "greet,greet", context.attention])
    expect(code == 0 and json.loads(out), "--json --passes greet,greet: " + err)
    known = known_passes(context, [greeter])
    code, out, err = context.run(["show", "--ir", "--plugin", greeter, "--passes", "gret", context.attention])
    want = "ncd: error: unknown pass 'gret'; did you mean 'greet'? known: %s\n" % ", ".join(known)
    expect(code == 1 and err == want and not out, "unknown pass:\n got: %r\nwant: %r" % (err, want))
    code, out, err = context.run(["show", "--ir", "--passes", "greet,zzzzzz", "--plugin", greeter, context.attention])
    expect(code == 1 and err.startswith("ncd: error: unknown pass 'zzzzzz'"), "second unknown pass: " + err)
    code, out, err = context.run(["show", "--ast", "--passes", "greet", context.attention])
    expect(code == 2 and "--passes works on the IR" in err, "--ast --passes: exit %d %s" % (code, err))
    print("ok passes")


# ---------------------------------------------------------------- search path

def test_search_path(context):
    folder = os.path.join(context.fixtures, "path")
    greeter = os.path.join(folder, "ncd-plugin-greeter.so")
    code, out, err = context.run(["plugins"], env={"NCD_PLUGIN_PATH": "/nonexistent/folder:" + folder})
    expect(code == 0 and ("greeter 0.1.0  %s\n  pass greet\n" % greeter) in out, "NCD_PLUGIN_PATH:\n" + out + err)
    # Reached through the path and through --plugin: loaded once, no duplicate error.
    code, out, err = context.run(["plugins", "--plugin", greeter], env={"NCD_PLUGIN_PATH": folder})
    expect(code == 0 and out.count("greeter 0.1.0") == 1, "same file twice:\n" + out + err)
    # Without the variable the folder is not searched.
    code, out, err = context.run(["plugins"])
    expect("greeter" not in out, "greeter loaded without NCD_PLUGIN_PATH")
    print("ok search_path")


# ---------------------------------------------------------------- out of tree

def test_out_of_tree(context):
    expect(context.cmake, "--cmake is required for out_of_tree")
    temp = tempfile.mkdtemp(prefix="ncd-sdk-")
    try:
        prefix = os.path.join(temp, "prefix")
        build = os.path.join(temp, "hello-build")

        def step(args):
            result = subprocess.run(args, capture_output=True, timeout=500)
            expect(result.returncode == 0, "%s failed:\n%s%s" % (" ".join(args), result.stdout.decode()[-3000:],
                                                                  result.stderr.decode()[-3000:]))
            return result.stdout.decode()

        step([context.cmake, "--install", context.build, "--prefix", prefix])
        ncd = os.path.join(prefix, "bin", "ncd")
        for path in ("include/ncd/plugin.h", "include/ncd/registry.h", "include/ncd/ir.h",
                     "share/ncd/stdlib/std/attention.ncd"):
            expect(os.path.exists(os.path.join(prefix, path)), "the install lacks " + path)
        configs = [os.path.join(d, f) for d, _, files in os.walk(prefix) for f in files if f == "ncdConfig.cmake"]
        expect(configs, "the install has no ncdConfig.cmake")
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        configure = step([context.cmake, "-S", os.path.join(context.root, "examples", "plugin-hello"), "-B", build]
                         + generator + ["-DCMAKE_PREFIX_PATH=" + prefix, "-DCMAKE_BUILD_TYPE=Release"])
        expect("ncd plugin API version %d" % context.api_version in configure,
               "find_package(ncd) did not report the API version:\n" + configure)
        step([context.cmake, "--build", build])
        hello = os.path.join(build, "ncd-plugin-hello.so")
        expect(os.path.exists(hello), "the build made no ncd-plugin-hello.so")

        # The installed ncd loads its own plugins from <prefix>/lib/ncd/plugins, plus the new one.
        code, out, err = context.run(["plugins", "--plugin", hello], ncd=ncd)
        expect(code == 0, "installed ncd plugins: " + err)
        expect(re.search(r"render-svg 1\.0\.0  %s/lib[^ ]*/ncd/plugins/ncd-plugin-render-svg\.so\n" % re.escape(prefix), out),
               "the installed ncd does not load its installed render-svg:\n" + out)
        expect(context.build not in out, "the installed ncd loaded plugins from the build tree:\n" + out)
        expect("hello 1.0.0  %s\n  pass hello\n" % hello in out, "hello is not listed:\n" + out)

        # The hello pass folds rsqrt(#d) into a constant and drops the sizeof.
        code, before, err = context.run(["show", "--ir", context.attention], ncd=ncd)
        expect(code == 0 and "sizeof[d]" in before and "rsqrt" in before, "installed show --ir: " + err)
        code, after, err = context.run(["show", "--ir", "--plugin", hello, "--passes", "hello", context.attention], ncd=ncd)
        expect(code == 0 and not err, "show --passes hello: exit %d\n%s" % (code, err))
        expect("constant 0.125()" in after and "sizeof" not in after and "rsqrt" not in after,
               "the hello pass had no visible effect:\n" + after)
        expect(after.replace("%5 = constant 0.125() : [] f32", "") != after, "folded op line:\n" + after)

        # The installed renderers work from the install too.
        code, svg, err = context.run(["render", context.attention], ncd=ncd)
        expect(code == 0 and svg.startswith("<?xml"), "installed render: " + err)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    print("ok out_of_tree")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ncd", required=True)
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--build", required=True)
    parser.add_argument("--cmake")
    parser.add_argument("test", choices=["list", "errors", "passes", "search_path", "out_of_tree"])
    options = parser.parse_args()
    context = Context(options)
    tests = {"list": test_list, "errors": test_errors, "passes": test_passes, "search_path": test_search_path,
             "out_of_tree": test_out_of_tree}
    try:
        tests[options.test](context)
    except Failure as failure:
        print("FAIL:", failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
