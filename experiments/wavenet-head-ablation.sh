#!/usr/bin/env bash
# The paper's loss ablation (Khan, Huerta & Das sec. 2.2.3) on the accuracy profile: the physics head
# (q, S_eff, sigma_eff -> spins by solving eqs. 2-3) against the direct MSE head (q, s1z, s2z), trained on
# the same data for the same epochs, each in its own folder under $1 (default: runs/wavenet-ablation),
# with one MLflow store. Prints each Table 1 and the IQR of Delta s2.
#   bash experiments/wavenet-head-ablation.sh [folder] [profile]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-runs/wavenet-ablation}")
profile=$(realpath "${2:-$repo/experiments/wavenet-accuracy.yaml}")
mkdir -p "$out/data"
export MLFLOW_TRACKING_URI="sqlite:///$out/mlflow.db"
cd "$out"
cp "$profile" params.yaml
gwpe generate h22 --params params.yaml
for head in physics direct; do
  mkdir -p "$out/$head"
  sed "s/^    head: physics .*/    head: $head/; s/^  registered_name: .*/  registered_name: gwpe-wavenet-$head/" params.yaml > "$out/$head/params.yaml"
  grep -q "head: $head" "$out/$head/params.yaml"
  ln -sfn "$out/data" "$out/$head/data"
  (cd "$out/$head" && gwpe train wavenet --params params.yaml --resume --no-progress --metrics metrics/wavenet-train.json \
     && gwpe evaluate wavenet --params params.yaml --no-progress --metrics metrics/wavenet-eval.json)
done
python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = {head: json.load(open(f"{out}/{head}/metrics/wavenet-eval.json")) for head in ("physics", "direct")}
for head, m in rows.items():
    t = json.load(open(f"{out}/{head}/metrics/wavenet-train.json"))
    print(f"{head:>8}: median O {m['median_overlap']:.4f} (baseline {m['baseline']['median_overlap']:.4f}), "
          f"IQR(Δs2) {m['iqr_delta_s2']:.4f}, IQR(Δs1) {m['iqr_delta_s1']:.4f}, epochs {t['epochs']}, {t['train_seconds']:.0f} s")
better = rows["physics"]["iqr_delta_s2"] < rows["direct"]["iqr_delta_s2"]
print(f"physics head beats direct head on IQR(Δs2): {better}")
PY
