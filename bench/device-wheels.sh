#!/usr/bin/env bash
# Fetch, on a connected machine, the wheels bench/device.sh installs on a GPU machine that lacks them
# (Python 3.12, x86-64 manylinux): pycocotools, and Ultralytics with what its image does not hold.
# They land in .whl/ (ignored by git); name .whl in the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
# polars is left out: Ultralytics imports it only inside plotting functions, and its 54 MB runtime
# would not fit the device tool's 64 MiB working-tree limit beside the repo
for spec in pycocotools==2.0.11 ultralytics==8.4.190 ultralytics-thop ultralytics-platform; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
    -d .whl "$spec" || echo "could not fetch $spec" >&2
done
ls -la .whl
