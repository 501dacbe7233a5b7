#!/usr/bin/env bash
# Build mmcv 2.1.0 (full, with compiled CPU ops) against the venv's torch and install it.
#
# Why a script: mmcv 2.1.0 ships only as a source distribution, and its setup.py pins
# -std=c++14/17, while torch >= 2.14 headers require C++20. We patch that one flag.
# The built wheel is cached in $MMCV_WHEEL_CACHE so a second setup on the same machine
# (a fresh clone, CI) installs it in seconds instead of recompiling for ~10 minutes.
set -euo pipefail
PY=${1:?usage: build_mmcv.sh PATH/TO/python}
VERSION=2.1.0
CACHE=${MMCV_WHEEL_CACHE:-$HOME/.cache/mmseg_dynopool/wheels}
TORCH=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
OUTDIR="$CACHE/torch-$TORCH"
mkdir -p "$OUTDIR"

if ! ls "$OUTDIR"/mmcv-$VERSION-*.whl >/dev/null 2>&1; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: \
        "mmcv==$VERSION" -d "$WORK"
    tar xzf "$WORK/mmcv-$VERSION.tar.gz" -C "$WORK"
    sed -i 's/-std=c++1[47]/-std=c++20/g' "$WORK/mmcv-$VERSION/setup.py"
    echo "building mmcv $VERSION against torch $TORCH (about 10 minutes on 2 cores)..."
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
        "$PY" -m pip wheel -q --no-deps --no-build-isolation "$WORK/mmcv-$VERSION" -w "$OUTDIR"
fi
"$PY" -m pip install -q --no-deps "$OUTDIR"/mmcv-$VERSION-*.whl
