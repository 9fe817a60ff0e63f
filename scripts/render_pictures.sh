#!/usr/bin/env bash
# Regenerates the pictures in docs/ that README.md, docs/RENDER.md, docs/OPTIMIZE.md and docs/AUTODIFF.md
# show (the gallery of docs/RENDER.md), every one laid out by ncd's own layout (--layout ncd).
# Usage: scripts/render_pictures.sh [NCD]   (default: build/bin/ncd)
set -euo pipefail
cd "$(dirname "$0")/.."
ncd=${1:-build/bin/ncd}
"$ncd" render --layout ncd examples/attention.ncd -o docs/attention.png
"$ncd" render --layout ncd examples/multihead.ncd -o docs/multihead.png
"$ncd" render --layout ncd stdlib/std/transformer.ncd --diagram GPT2Block -o docs/gpt2_block.png
"$ncd" render --layout ncd stdlib/std/transformer.ncd --diagram GPT2Block --style paper -o docs/gpt2_block_paper.png
"$ncd" render --layout ncd stdlib/std/gpt2.ncd --diagram GPT2Block --style paper --direction tb -o docs/gpt2_block_tb.png
"$ncd" render --layout ncd stdlib/std/llama.ncd --diagram LlamaDecoderLayer --style paper -o docs/llama_block.png
"$ncd" render --layout ncd stdlib/std/conv.ncd --diagram Conv2d -o docs/conv2d.png
"$ncd" render --layout ncd stdlib/std/moe.ncd --diagram MixtralSparseMoeBlock -o docs/moe.png
"$ncd" render --layout ncd tests/render/golden/attention_schedule.ncd --title "Causal attention, scheduled" -o docs/attention_schedule.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ncd" optimize stdlib/std/attention.ncd --diagram MultiHeadAttention -O2 -o "$tmp/multihead_optimized.ncd"
"$ncd" render --layout ncd "$tmp/multihead_optimized.ncd" --diagram MultiHeadAttention --title "MultiHeadAttention at -O2" \
  -o docs/multihead_optimized.png
"$ncd" grad examples/attention.ncd --diagram Attention --no-train -o "$tmp/attention_grad.ncd"
"$ncd" render --layout ncd "$tmp/attention_grad.ncd" --diagram Attention_grad --title "Attention, its gradient" -o docs/attention_grad.png
