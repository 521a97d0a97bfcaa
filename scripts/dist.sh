#!/usr/bin/env bash
# Builds swestar for clusters: a Linux x86_64 binary that needs glibc 2.17
# at most (RHEL/CentOS 7 and every later enterprise Linux), and a wheel
# (manylinux2014) that installs the same binary as the `swestar` command.
# Zig, from PyPI's `ziglang`, is the C toolchain and linker against glibc
# 2.17's symbols; maturin packs the wheel.
#
#   bash scripts/dist.sh [OUT]        # default OUT: dist
#
# OUT then holds swestar-VERSION-x86_64-linux (copy it to the cluster and
# run it) and swestar-VERSION-py3-none-manylinux_2_17_x86_64.whl (copy it to
# a wheelhouse and `pip install --no-index --find-links WHEELHOUSE swestar`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)

venv=.venv-dist
if [ ! -x "$venv/bin/maturin" ] || ! "$venv/bin/python" -c "import ziglang" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "maturin[zig]>=1.5,<2"
fi

target=x86_64-unknown-linux-gnu
# Its own target directory: the zig-linked build must not mix with cargo's.
# The `dist` profile: release with thin LTO (Cargo.toml).
export CARGO_TARGET_DIR="$PWD/target/zig"
PATH="$PWD/$venv/bin:$PATH" maturin build --profile dist --locked --zig \
  --compatibility manylinux2014 --target "$target" --out "$out"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cp "$CARGO_TARGET_DIR/$target/dist/swestar" "$out/swestar-$version-x86_64-linux"
ls -l "$out"
