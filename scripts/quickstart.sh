#!/usr/bin/env bash
# The main job on the bundled example: set up, build, then run the pipeline
# on examples/attention.ncd, writing what it produces under out/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
ncd=build/bin/ncd
example=examples/attention.ncd
mkdir -p out

echo "== check";  $ncd check "$example" && echo "ok: $example"
echo "== fmt";    $ncd fmt --check "$example" && echo "ok: canonical"
echo "== ir";     $ncd show --ir "$example" -o out/attention.ir.txt && cat out/attention.ir.txt
echo "== json";   $ncd show --json "$example" -o out/attention.ir.json && echo "wrote out/attention.ir.json"
echo "== cost";   $ncd cost "$example" --diagram Attention --hw h100-sxm -D q=8192 -D k=8192
$ncd cost "$example" --diagram Attention --hw h100-sxm --sweep q,k=1024..16384:*2 --plot out/attention-cost.svg >/dev/null &&
  echo "wrote out/attention-cost.svg"
echo "== render"; $ncd render "$example" -o out/attention.svg && $ncd render "$example" -o out/attention.png &&
  echo "wrote out/attention.svg and out/attention.png"
echo "== run";    $ncd run "$example" --diagram Attention -D q=256 -D k=256 --random 1 --out-dir out/run &&
  echo "wrote out/run/O.npy (inputs in out/run/inputs/)"
echo "== optimize"; $ncd optimize "$example" --diagram Attention --hw h100-sxm -O2 --explain -o out/attention.opt.ncd
$ncd cost out/attention.opt.ncd --hw h100-sxm -D q=8192 -D k=8192 | sed -n '/^Schedule/,/memory per block/p'
echo "== emit";   $ncd emit --cuda out/attention.opt.ncd --diagram Attention --harness -o out/attention.cu &&
  echo "wrote out/attention.cu (nvcc -O3 -arch=sm_90 out/attention.cu -o out/attention)"
