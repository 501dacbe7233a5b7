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
OUTDIR="$CACHE/torch-$TORCH${MMCV_OPT_FLAGS:+-custom}"
mkdir -p "$OUTDIR"

if ! ls "$OUTDIR"/mmcv-$VERSION-*.whl >/dev/null 2>&1; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: \
        "mmcv==$VERSION" -d "$WORK"
    tar xzf "$WORK/mmcv-$VERSION.tar.gz" -C "$WORK"
    # C++20 for torch's headers; plus our optimisation flags (after setup.py's, so they win
    # over Python's default "-g -O3"): no debug info and -O1 cut the build ~3x. Our models
    # call no mmcv op (mmseg only imports them); set MMCV_OPT_FLAGS="-O3" for full speed.
    OPT=${MMCV_OPT_FLAGS:--O1 -g0}
    FLAGS="'-std=c++20'"
    for f in $OPT; do FLAGS="$FLAGS, '$f'"; done
    sed -i "s/'-std=c++1[47]'/$FLAGS/g" "$WORK/mmcv-$VERSION/setup.py"
    grep -q -- "-std=c++20" "$WORK/mmcv-$VERSION/setup.py" || { echo "build_mmcv.sh: patching setup.py failed" >&2; exit 1; }
    echo "building mmcv $VERSION against torch $TORCH with $OPT (about 5 minutes on 2 cores)..."
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
        "$PY" -m pip wheel -q --no-deps --no-build-isolation "$WORK/mmcv-$VERSION" -w "$OUTDIR"
fi
"$PY" -m pip install -q --no-deps "$OUTDIR"/mmcv-$VERSION-*.whl
