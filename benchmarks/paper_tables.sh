#!/usr/bin/env bash
# Issue #6: the paper's comparison on real data, one suite per YAML (methods x seeds, resumable:
# finished runs are skipped), then every summary in one markdown file.
#   bash benchmarks/paper_tables.sh [YAML ...]          (default: the 2-core CPU budget: Beauty and Toys at patience 20, Beauty rounds)
#   DEVICE=cuda:0 bash benchmarks/paper_tables.sh yamls/paper_beauty_full.yaml yamls/paper_toys_full.yaml
# Output: each suite's folder (see the YAML's `output`), and runs/paper_tables.md.
set -euo pipefail
[ $# -gt 0 ] || set -- yamls/paper_beauty_cpu_p20.yaml yamls/paper_toys_cpu_p20.yaml yamls/paper_beauty_cpu_rounds.yaml
DEVICE=${DEVICE:-cpu}
OUT_MD=${OUT_MD:-runs/paper_tables.md}
mkdir -p "$(dirname "$OUT_MD")"
tmp="$OUT_MD.tmp"
: > "$tmp"
for y in "$@"; do
  start=$(date +%s)
  python -m recstudio_rsir.cli suite "$y" --device "$DEVICE" --quiet
  out=$(python -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['output'])" "$y")
  { echo "## $y"; echo; echo "Folder: \`$out\`; device $DEVICE; this call: $(( $(date +%s) - start )) s wall"
    echo; cat "$out/summary.md"; echo; } >> "$tmp"
done
mv "$tmp" "$OUT_MD"
echo "written: $OUT_MD"
