"""torchvision Faster R-CNN (COCO categories) as a Detector."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import DetectorError, Detections


def coco_categories() -> list[str]:
    """torchvision's 91-entry COCO list (index = label id; '__background__' and 'N/A' included)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    return list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


class FasterRCNNDetector:
    def __init__(self, model, categories: Sequence[str], device: str = "cpu", conf: float = 0.5, max_det: int = 20):
        import torch

        self.torch = torch
        self.model = model.eval().to(device)
        self.categories = list(categories)
        self.class_names = [c for c in self.categories if c not in ("__background__", "N/A")]
        self.device, self.conf, self.max_det = device, conf, max_det

    @classmethod
    def from_spec(cls, path: str | None, device: str = "cpu", conf: float = 0.5, max_det: int = 20) -> "FasterRCNNDetector":
        import torch
        from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, fasterrcnn_resnet50_fpn

        if path is None:  # torchvision downloads the COCO weights into its own cache
            try:
                model = fasterrcnn_resnet50_fpn(weights=FasterRCNN_ResNet50_FPN_Weights.COCO_V1)
            except Exception as e:
                raise DetectorError(f"cannot fetch torchvision's Faster R-CNN weights ({type(e).__name__}); "
                                    "pass a local file with --detector frcnn:PATH") from None
        else:
            if not Path(path).is_file():
                raise DetectorError(f"Faster R-CNN weights {path!r} not found")
            model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
            try:
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except Exception as e:
                raise DetectorError(f"cannot load Faster R-CNN weights {path!r}: {str(e).splitlines()[0][:200]}") from None
        return cls(model, coco_categories(), device, conf, max_det)

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        torch = self.torch
        batch = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float().div(255).to(self.device) for im in images]
        with torch.inference_mode():
            preds = self.model(batch)
        out = []
        for p in preds:
            valid = torch.tensor([self.categories[int(l)] in self.class_names for l in p["labels"]], dtype=torch.bool)
            keep = ((p["scores"].cpu() >= self.conf) & valid).nonzero().flatten()[: self.max_det]
            labels = p["labels"].cpu()[keep].numpy()
            out.append(Detections(p["boxes"].cpu()[keep].numpy().astype(np.float32),
                                  p["scores"].cpu()[keep].numpy().astype(np.float32),
                                  [self.categories[int(l)] for l in labels]))
        return out
