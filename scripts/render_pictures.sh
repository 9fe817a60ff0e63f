#!/usr/bin/env bash
# Regenerates the pictures in docs/ that README.md, docs/RENDER.md, docs/OPTIMIZE.md and docs/AUTODIFF.md
# show (the gallery of docs/RENDER.md), every one laid out by ncd's own layout.
# Usage: scripts/render_pictures.sh [NCD]   (default: build/bin/ncd)
set -euo pipefail
cd "$(dirname "$0")/.."
ncd=${1:-build/bin/ncd}
"$ncd" render examples/attention.ncd -o docs/attention.png
"$ncd" render examples/multihead.ncd -o docs/multihead.png
"$ncd" render stdlib/std/transformer.ncd --diagram GPT2Block -o docs/gpt2_block.png
"$ncd" render stdlib/std/transformer.ncd --diagram GPT2Block --style paper -o docs/gpt2_block_paper.png
"$ncd" render stdlib/std/llama.ncd --diagram LlamaDecoderLayer --style paper -o docs/llama_block.png
"$ncd" render stdlib/std/conv.ncd --diagram Conv2d -o docs/conv2d.png
"$ncd" render stdlib/std/moe.ncd --diagram MixtralSparseMoeBlock -o docs/moe.png
"$ncd" render tests/render/golden/attention_schedule.ncd --title "Causal attention, scheduled" -o docs/attention_schedule.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ncd" optimize examples/multihead.ncd --diagram MultiHeadAttention -O2 -o "$tmp/multihead_optimized.ncd"
"$ncd" render "$tmp/multihead_optimized.ncd" --diagram MultiHeadAttention --title "MultiHeadAttention at -O2" \
  -o docs/multihead_optimized.png
"$ncd" grad examples/attention.ncd --diagram Attention --no-train -o "$tmp/attention_grad.ncd"
"$ncd" render "$tmp/attention_grad.ncd" --diagram Attention_grad --title "Attention, its gradient" -o docs/attention_grad.png
