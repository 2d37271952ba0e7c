#!/usr/bin/env bash
# The main job on the embedded default: make the synthetic demo data, train with Ray Train on it,
# evaluate the best checkpoint and draw predictions.
#   scripts/demo.sh            pose: HRNet on the COCO-format demo set, COCO keypoint AP (pycocotools)
#   scripts/demo.sh seg        segmentation: HRNetV2-W18-small on the Cityscapes-layout demo set, mIoU
# Extra arguments are passed to every platform command (e.g. --set train.epochs=5).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
cd "$root"
task=pose
if [ "${1:-}" = "pose" ] || [ "${1:-}" = "seg" ]; then task=$1; shift; fi
start=$(date +%s)
if [ ! -f data/demo/coco/annotations/person_keypoints_val2017.json ] || [ ! -d data/demo/cityscapes/gtFine/val ]; then
  platform data demo --out data/demo
elif [ "$task" = seg ] && [ "$(find data/demo/cityscapes/gtFine/train -name '*_labelIds.png' | wc -l)" -lt 400 ]; then
  platform data demo --out data/demo --task seg   # street scenes written before the set grew to 400
fi
run=work_dirs/${task}_demo
platform train tasks/${task}_demo.yaml "$@"
platform eval tasks/${task}_demo.yaml --checkpoint $run/best.pth --out $run/final_eval "$@"
if [ "$task" = pose ]; then
  platform predict tasks/pose_demo.yaml --checkpoint $run/best.pth --input data/demo/coco/images/val2017 \
    --boxes data/demo/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json \
    --out $run/predictions "$@"
  python -c "import json; m = json.load(open('$run/final_eval/metrics.json')); print(f\"\n[demo] COCO keypoint AP on the demo val split: {m['AP']:.3f} (AP50 {m['AP50']:.3f}, AR {m['AR']:.3f})\")"
else
  platform predict tasks/seg_demo.yaml --checkpoint $run/best.pth --input data/demo/cityscapes/leftImg8bit/val \
    --out $run/predictions "$@"
  python -c "import json; m = json.load(open('$run/final_eval/metrics.json')); print(f\"\n[demo] mIoU on the demo val split: {m['mIoU']:.3f} (pixel accuracy {m['aAcc']:.3f})\")"
fi
echo "[demo] pictures: $run/predictions/vis/   total time: $(( $(date +%s) - start )) s"
