#!/usr/bin/env bash
# The paper's loss ablation (Khan, Huerta & Das sec. 2.2.3) on the accuracy profile: the physics head
# (q, S_eff, sigma_eff -> spins by solving eqs. 2-3) against the direct MSE head (q, s1z, s2z), trained on
# the same data for the same epochs, each in its own folder under $1 (default: runs/wavenet-ablation),
# with one MLflow store. Prints each Table 1 and the IQR of Delta s2. Arms (ARMS, default "physics direct"):
#   physics        the paper's loss: standardised MSE of (q, S_eff / (sigma_1 + sigma_2), sigma_eff), the default
#                  (s_eff_scale: mass_ratio, S_eff in units of its range at that q; gwpe.models.wavenet)
#   physics-abs    the same with S_eff itself as the target (s_eff_scale: absolute)
#   physics-spin   physics + the spin-consistency term (spin_loss_weight: 1; gwpe.models.wavenet_module)
#   direct         (q, s1z, s2z) with MSE
#   [ARMS="physics physics-abs physics-spin direct"] bash experiments/wavenet-head-ablation.sh [folder] [profile]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-runs/wavenet-ablation}")
profile=$(realpath "${2:-$repo/experiments/wavenet-accuracy.yaml}")
mkdir -p "$out/data"
export MLFLOW_TRACKING_URI="sqlite:///$out/mlflow.db"
cd "$out"
cp "$profile" params.yaml
gwpe generate h22 --params params.yaml
arms=${ARMS:-physics direct}
for arm in $arms; do
  case $arm in
    physics) head=physics weight=0.0 scale=mass_ratio ;;
    physics-abs) head=physics weight=0.0 scale=absolute ;;
    physics-spin) head=physics weight=1.0 scale=mass_ratio ;;
    direct) head=direct weight=0.0 scale=mass_ratio ;;
    *) echo "unknown arm '$arm'; allowed: physics, physics-abs, physics-spin, direct" >&2; exit 2 ;;
  esac
  mkdir -p "$out/$arm"
  sed "s/^    head: physics .*/    head: $head/; s/^    spin_loss_weight: .*/    spin_loss_weight: $weight/;
       s/^    s_eff_scale: .*/    s_eff_scale: $scale/;
       s/^  registered_name: .*/  registered_name: gwpe-wavenet-$arm/" params.yaml > "$out/$arm/params.yaml"
  grep -q "head: $head" "$out/$arm/params.yaml" && grep -q "spin_loss_weight: $weight" "$out/$arm/params.yaml" \
    && grep -q "s_eff_scale: $scale" "$out/$arm/params.yaml"
  ln -sfn "$out/data" "$out/$arm/data"
  (cd "$out/$arm" && gwpe train wavenet --params params.yaml --resume --no-progress --metrics metrics/wavenet-train.json \
     && gwpe evaluate wavenet --params params.yaml --no-progress --metrics metrics/wavenet-eval.json)
done
python - "$out" $arms <<'PY'
import json, sys
out, arms = sys.argv[1], sys.argv[2:]
rows = {arm: json.load(open(f"{out}/{arm}/metrics/wavenet-eval.json")) for arm in arms}
for arm, m in rows.items():
    t = json.load(open(f"{out}/{arm}/metrics/wavenet-train.json"))
    print(f"{arm:>13}: median O {m['median_overlap']:.4f} (baseline {m['baseline']['median_overlap']:.4f}), "
          f"IQR(Δs2) {m['iqr_delta_s2']:.4f}, IQR(Δs1) {m['iqr_delta_s1']:.4f}, epochs {t['epochs']}, {t['train_seconds']:.0f} s")
for arm in ("physics", "physics-abs", "physics-spin"):
    if arm in rows and "direct" in rows:
        print(f"{arm} head beats direct head on IQR(Δs2): {rows[arm]['iqr_delta_s2'] < rows['direct']['iqr_delta_s2']}")
PY
