#!/usr/bin/env bash
# The main job on the embedded default: make the synthetic demo data, train the pose model with
# Ray Train on it, evaluate the best checkpoint with pycocotools and draw predictions.
# Usage: scripts/demo.sh [extra --set KEY=VALUE ...]   (outputs under data/demo and work_dirs/)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
cd "$root"
start=$(date +%s)
if [ ! -f data/demo/coco/annotations/person_keypoints_val2017.json ]; then
  platform data demo --out data/demo
fi
platform train tasks/pose_demo.yaml "$@"
platform eval tasks/pose_demo.yaml --checkpoint work_dirs/pose_demo/best.pth --out work_dirs/pose_demo/final_eval "$@"
platform predict tasks/pose_demo.yaml --checkpoint work_dirs/pose_demo/best.pth \
  --input data/demo/coco/images/val2017 --boxes data/demo/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json \
  --out work_dirs/pose_demo/predictions "$@"
python - <<'PY'
import json
m = json.load(open("work_dirs/pose_demo/final_eval/metrics.json"))
print(f"\n[demo] COCO keypoint AP on the demo val split: {m['AP']:.3f} (AP50 {m['AP50']:.3f}, AR {m['AR']:.3f})")
PY
echo "[demo] pictures: work_dirs/pose_demo/predictions/vis/   total time: $(( $(date +%s) - start )) s"
