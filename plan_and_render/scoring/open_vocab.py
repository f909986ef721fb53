"""Open-vocabulary detectors through transformers: OWL-ViT, OWLv2 and Grounding DINO.

Loaded the standard way - ``AutoProcessor`` + ``AutoModelForZeroShotObjectDetection`` from a hub id in the
local Hugging Face cache or a folder - and read the same way for every family: each predicted box gets a
score per text query (a sigmoid of the box's logit for that query; for Grounding DINO, the best of the
query's tokens in the joined caption), takes the best query as its label, is kept above
``threshold``, and then class-aware NMS thins each query's boxes. LMD's image protocol is OWL-ViT with
score 0.15 and NMS 0.15, the defaults here. Nothing is downloaded when ``HF_HUB_OFFLINE`` is set;
a missing model is one ``ModelUnavailableError`` line.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelUnavailableError
from .detection import Detection, class_aware_nms, clip_box

FAMILIES = ("owlvit", "owlv2", "grounding-dino")
TEMPLATES = {"owlvit": "a photo of {}", "owlv2": "a photo of {}", "grounding-dino": "{}"}  # LMD asks OWL so
DEFAULT_THRESHOLDS = {"owlvit": 0.15, "owlv2": 0.15, "grounding-dino": 0.35}  # LMD; Grounding DINO's demo
DEFAULT_NMS = 0.15  # LMD's class-aware NMS


class OpenVocabDetector:
    """A zero-shot detector of one family (``owlvit``, ``owlv2``, ``grounding-dino``) loaded from ``source``."""

    def __init__(self, family: str, source: str, threshold: float | None = None, nms: float | None = None,
                 device: str | None = None):
        import torch
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.family, self.source = family, source
        self.name = f"{family}:{source}"
        self.threshold = DEFAULT_THRESHOLDS[family] if threshold is None else threshold
        self.nms = DEFAULT_NMS if nms is None else nms
        self.template = TEMPLATES[family]
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        local = Path(source).expanduser()
        try:
            self.processor = AutoProcessor.from_pretrained(str(local) if local.exists() else source)
            self.model = AutoModelForZeroShotObjectDetection.from_pretrained(str(local) if local.exists() else source)
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(
                f"detector {self.name!r} cannot be loaded ({str(e).splitlines()[0][:160]}); give a local folder or "
                "a hub id already in the Hugging Face cache (huggingface-cli download ID)") from None
        self.model.to(self.device).eval()

    def detect(self, image, queries: list[str]) -> list[Detection]:
        """Boxes answering ``queries`` (bare phrases: the family's template is applied here), best first."""
        import torch

        if not queries:
            return []
        image = image.convert("RGB")
        texts = [self.template.format(q) for q in queries]
        with torch.no_grad():
            if self.family == "grounding-dino":
                scores, boxes = self._grounding_dino(image, texts)
            else:
                scores, boxes = self._owl(image, texts)
        best, label = scores.max(dim=-1)
        found = [Detection(int(q), float(s), self._normalise(b, image.size))
                 for s, q, b in zip(best.tolist(), label.tolist(), boxes.tolist()) if s > self.threshold]
        return class_aware_nms(found, self.nms)

    # -- one forward pass per family: (boxes x queries) scores, (boxes x 4) centre boxes ---------------
    def _owl(self, image, texts: list[str]):
        import torch

        inputs = self.processor(text=[texts], images=image, return_tensors="pt").to(self.device)
        out = self.model(**inputs)
        return torch.sigmoid(out.logits[0].float()), out.pred_boxes[0].float()

    def _grounding_dino(self, image, texts: list[str]):
        import torch

        caption = " ".join(t.rstrip(".") + "." for t in texts)
        inputs = self.processor(images=image, text=caption, return_tensors="pt").to(self.device)
        out = self.model(**inputs)
        token_scores = torch.sigmoid(out.logits[0].float())  # boxes x text tokens
        per_query, start = [], 1  # after [CLS]; each query's tokens are followed by a "." token
        for t in texts:
            n = len(self.processor.tokenizer(t.rstrip("."), add_special_tokens=False)["input_ids"])
            span = token_scores[:, start:start + n]
            per_query.append(span.max(dim=-1).values if span.shape[1] else token_scores[:, 0] * 0)
            start += n + 1
        return torch.stack(per_query, dim=-1), out.pred_boxes[0].float()

    def _normalise(self, cxcywh, size: tuple[int, int]):
        """A predicted (cx, cy, w, h) box -> normalised corners on the original image. OWLv2 pads the image
        to a square at the bottom and right, so its coordinates are shares of the longer side."""
        w, h = size
        cx, cy, bw, bh = cxcywh
        corners = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
        if self.family == "owlv2":
            side = max(w, h)
            return clip_box([v * side for v in corners], w, h)
        return clip_box(corners, 1.0, 1.0)
