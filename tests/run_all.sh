#!/usr/bin/env bash
# Every test inside a real ComfyUI: the engine and node tests, the ComfyUI integration tests, the
# point picker in headless Chromium (ComfyUI's pinned frontend and the newest one tested), then the
# JS unit tests. Nothing is skipped: a missing ComfyUI, Chromium or node fails the run.
#
# The first run builds .venv-comfyui (torch 2.14.1 + torchvision 0.29.1, ComfyUI's requirements
# and the pack's), installs Debian's chromium when it is missing and runs `npm ci`; later runs
# reuse them. ComfyUI's source is copied to a temporary folder and never written.
#   COMFYUI_SRC   ComfyUI source tree (default ../shared/comfyui: ComfyUI 0.3.64 on these machines)
#   COMFYUI_VENV  the environment to build or reuse (default .venv-comfyui)
# Extra arguments go to pytest (e.g. tests/run_all.sh -k comfy).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(realpath "${COMFYUI_SRC:-../shared/comfyui}")
venv=${COMFYUI_VENV:-.venv-comfyui}
[ -f "$src/main.py" ] || { echo "no ComfyUI source at $src (set COMFYUI_SRC)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "Python environment: $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
# torch and torchvision: the builds on these machines' disk (any other version downloads a CUDA
# build of several GB); torchaudio is left out: only ComfyUI's audio nodes need it.
grep -vE '^\s*(torch|torchvision|torchaudio)\s*$' "$src/requirements.txt" > "$tmp/comfyui-requirements.txt"
"$py" -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 \
    -r "$tmp/comfyui-requirements.txt" -r requirements.txt -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
"$py" -c "import torch, torchvision, diffusers, peft; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"

step "Chromium and playwright-core"
if ! command -v "${CHROMIUM:-chromium}" > /dev/null; then
    apt-get install -y -q chromium > "$tmp/apt.log" 2>&1 || { apt-get update -q > /dev/null && apt-get install -y -q chromium > "$tmp/apt.log" 2>&1; } \
        || { tail -20 "$tmp/apt.log" >&2; exit 1; }
fi
"${CHROMIUM:-chromium}" --version
npm ci --silent --no-audit --no-fund

step "ComfyUI copied from $src"
cp -r "$src" "$tmp/ComfyUI"
chmod -R u+w "$tmp/ComfyUI"
"$py" -c "import sys; sys.path.insert(0, '$tmp/ComfyUI'); import comfyui_version; print('ComfyUI', comfyui_version.__version__)"

step "pytest (COMFYUI_PATH set, --no-skips)"
set +e
COMFYUI_PATH="$tmp/ComfyUI" "$py" -m pytest tests -q -n 2 --dist loadgroup --no-skips -p no:cacheprovider --durations=15 "$@" 2>&1 | tee "$tmp/pytest.log"
py_rc=${PIPESTATUS[0]}
step "node --test tests/js/"
node --test tests/js/ 2>&1 | tee "$tmp/node.log"
js_rc=${PIPESTATUS[0]}
set -e

step "summary"
echo "pytest:    $(grep -E '(passed|failed|error)' "$tmp/pytest.log" | tail -n 1)"
echo "node test: $(grep -E '^# (tests|pass|fail|skipped)' "$tmp/node.log" | tr '\n' ' ')"
[ "$py_rc" -eq 0 ] && [ "$js_rc" -eq 0 ]
