#!/usr/bin/env bash
# Prove the exports in a training stack's own code, with the stack's pinned version, in its own venv:
#
#   bash benchmarks/stacks/run.sh llamafactory|swift|verl|easyr1
#
# 1. `make setup` (this checkout's venv) and benchmarks/stacks/prepare.py: builds and every export.
# 2. A venv per stack under $STACKS_DIR (default out/stacks): torch from the local wheels, the
#    stack at its pinned version, getok-data (this checkout, editable) and its light dependencies.
#    EasyR1 is not on PyPI: EASYR1_SRC must point at a checkout of hiyouga/EasyR1 (its verl package
#    and reward loader are used from there; nothing of it is copied into this repo).
# 3. check_<stack>.py in that venv: the stack's loader, template and reward calling on the exports.
# Downloads the stack from PyPI the first time (minutes); later runs reuse the venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
STACK="${1:?usage: run.sh llamafactory|swift|verl|easyr1}"
STACKS_DIR="${STACKS_DIR:-out/stacks}"
declare -A PIN=(
  [llamafactory]="llamafactory==0.9.5"
  [swift]="ms-swift==4.6.0 modelscope==1.40.2 qwen_vl_utils==0.0.14"
  [verl]="verl==0.9.1 qwen-vl-utils==0.0.14"
  [easyr1]="transformers==4.57.6 datasets==5.0.1 ray==2.60.0 tensordict==0.15.3 qwen-vl-utils==0.0.14 codetiming mathruler pandas torchdata jinja2 omegaconf"
)
[[ -n "${PIN[$STACK]+x}" ]] || { echo "unknown stack $STACK" >&2; exit 2; }
TORCH="torch==2.14.1 torchvision==0.29.1"
LIGHT="numpy pycocotools opencv-python-headless scikit-image scipy pillow pyarrow webdataset fsspec pyyaml click tqdm tokenizers"

make -s setup
.venv/bin/python benchmarks/stacks/prepare.py "$STACKS_DIR/data" > /dev/null
VENV="$STACKS_DIR/$STACK"
if [[ ! -f "$VENV/.installed" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $TORCH ${PIN[$STACK]} $LIGHT
  "$VENV/bin/pip" install -q --no-deps -e .
  touch "$VENV/.installed"
fi
if [[ "$STACK" == easyr1 ]]; then
  : "${EASYR1_SRC:?set EASYR1_SRC to a checkout of EasyR1 (git clone https://github.com/hiyouga/EasyR1)}"
  export PYTHONPATH="$EASYR1_SRC${PYTHONPATH:+:$PYTHONPATH}"
fi
"$VENV/bin/python" -m pip freeze | grep -iE "^(llamafactory|ms-swift|modelscope|verl|transformers|trl|datasets|torch)==" || true
exec "$VENV/bin/python" "benchmarks/stacks/check_$STACK.py" "$STACKS_DIR/data"
