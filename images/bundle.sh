#!/usr/bin/env bash
# `make bundle`: the offline bundle flash.sh puts on every card, so that first boot
# installs Custodian without the internet: the project's wheel, the wheels of its
# dependencies for the Pi (aarch64; CPython 3.11 for bookworm, 3.13 for trixie), and pip.
#
#   images/bundle.sh OUT [--platform TAG]... [--python X.Y]...
#
# Layout (checked by flash.sh before it writes anything, and by tests/e2e/test_flash.py):
#   OUT/wheels/*.whl      custodian_appliance-*.whl, its dependencies, pip-*.whl
#   OUT/SHA256SUMS        sha256sum of every file under wheels/ (checked again at first boot)
#   OUT/BUNDLE            what it holds: version, platforms, Python versions
set -euo pipefail

usage() { echo "usage: $0 OUT [--platform TAG]... [--python X.Y]..." >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1; shift
platforms=() pythons=()
while [ $# -gt 0 ]; do
  case $1 in
    --platform) platforms+=("$2"); shift 2 ;;
    --python) pythons+=("$2"); shift 2 ;;
    *) usage ;;
  esac
done
# manylinux2014 covers most wheels; a few newer ones need glibc 2.28 (bookworm has 2.36).
[ ${#platforms[@]} -gt 0 ] || platforms=(manylinux2014_aarch64 manylinux_2_28_aarch64)
[ ${#pythons[@]} -gt 0 ] || pythons=(3.11 3.13)

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3

rm -rf "$out"
mkdir -p "$out/wheels"
echo "building the custodian wheel"
"$python" -m pip wheel -q --no-deps -w "$out/wheels" "$root"
wheel=$(ls "$out"/wheels/custodian_appliance-*.whl)
platform_args=()
for p in "${platforms[@]}"; do platform_args+=(--platform "$p"); done
for v in "${pythons[@]}"; do
  echo "downloading its dependencies for CPython $v on ${platforms[*]}"
  "$python" -m pip download -q -d "$out/wheels" --only-binary=:all: --implementation cp \
    --python-version "$v" "${platform_args[@]}" "$wheel" pip
done
(cd "$out" && find wheels -type f -name '*.whl' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
version=$(basename "$wheel" | cut -d- -f2)
{
  echo "custodian $version"
  echo "platforms ${platforms[*]}"
  echo "pythons ${pythons[*]}"
} > "$out/BUNDLE"
echo "bundle in $out: $(find "$out/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1)"
