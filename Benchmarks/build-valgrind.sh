#!/usr/bin/env bash
# Builds a valgrind that can run Swift 6.3 binaries, into .sluice/valgrind,
# for repeatable instruction counts (Benchmarks/worker-instructions.sh).
#
#   Benchmarks/build-valgrind.sh        (about 3 minutes on 2 cores)
#
# Why not Debian 12's valgrind (3.19): its DWARF reader gives up on the
# DWARF 5 forms Swift 6.3 emits ("unhandled dwarf2 abbrev form code 0x25").
# 3.24 (Debian 13's) reads them, but stops with an internal SIGSEGV as soon as
# libdispatch's signal thread calls sigsuspend(2): valgrind's wrapper of
# rt_sigsuspend clears its own kill signal in the caller's mask, and
# libdispatch passes a `static const sigset_t`, in read-only memory. The mask
# never holds that signal, so the build below clears it only when it is set.
# The source comes from Debian's archive (the only network here); nothing is
# installed outside .sluice/valgrind, and apt's own configuration is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.sluice/valgrind
version=3.24.0
debian_version=1:3.24.0-3
if [ -x "$root/bin/valgrind" ] && [ "$("$root/bin/valgrind" --version)" = "valgrind-$version" ]; then
  echo "valgrind: $root/bin/valgrind ($version) is already built"
  exit 0
fi
# The source version is pinned: the fix below is written against it.
command -v make >/dev/null && command -v gcc >/dev/null && command -v bzip2 >/dev/null && command -v python3 >/dev/null || {
  echo "valgrind: installing make, gcc, bzip2 and python3" >&2
  apt-get update -qq && apt-get install -y -qq make gcc libc6-dbg bzip2 python3 >/dev/null
}
work=$root.src
rm -rf "$work" && mkdir -p "$work/lists/partial"
cd "$work"
echo "deb-src http://deb.debian.org/debian trixie main" > sources.list
mkdir -p "$work/cache/archives/partial"
apt_options=(-o Dir::Etc::sourcelist="$work/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$work/lists"
             -o Dir::Cache="$work/cache")
apt-get "${apt_options[@]}" update -qq
apt-get "${apt_options[@]}" source --download-only "valgrind=$debian_version" >/dev/null
tar xjf "valgrind_$version.orig.tar.bz2"
cd "valgrind-$version"
python3 - <<'EOF'
path = "coregrind/m_syswrap/syswrap-linux.c"
text = open(path).read()
before = "         VG_(sigdelset)((vki_sigset_t *) (Addr)ARG1, VG_SIGVGKILL);\n"
after = ("         /* Only when set: the mask may be read-only (libdispatch). */\n"
         "         if (VG_(sigismember)((vki_sigset_t *) (Addr)ARG1, VG_SIGVGKILL))\n"
         "            VG_(sigdelset)((vki_sigset_t *) (Addr)ARG1, VG_SIGVGKILL);\n")
if text.count(before) != 1:
    raise SystemExit("valgrind: the rt_sigsuspend wrapper is not where expected; patch not applied")
open(path, "w").write(text.replace(before, after))
EOF
echo "valgrind: building $version (a few minutes)" >&2
trap 'echo "valgrind: the build failed; see the logs in $work" >&2' ERR
nice -n 10 ./configure --prefix="$root" >"$work/configure.log" 2>&1
nice -n 10 make -j"$(nproc)" >"$work/make.log" 2>&1
make install >"$work/install.log" 2>&1
rm -rf "$work"
"$root/bin/valgrind" --version
