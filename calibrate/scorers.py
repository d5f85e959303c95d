"""Image-quality scorers for ``calibrate quality``: a registry of name -> factory.

A scorer gives each image a score against a prompt (higher is better), the cosine similarity of
two prompts' text embeddings (used when a pairs file has no similarity column) and image
features (the embedding FID is computed on).

* ``clip:PATH``: the CLIP score of a local CLIP model directory, ``100 * max(cos(image, text), 0)``,
  as in torchmetrics and the Nirvana paper (e.g. openai/clip-vit-large-patch14);
* ``pickscore:PATH``: PickScore, ``logit_scale.exp() * cos(image, text)`` of a local CLIP-architecture
  directory holding the PickScore weights (yuvalkirstain/PickScore_v1, with the tokenizer and image
  processor of laion/CLIP-ViT-H-14-laion2B-s32B-b79K copied in), as its authors compute it;
* ``tiny`` and ``tiny-pickscore``: the same computations with a miniature random-weight CLIP built
  in code, so the whole quality pipeline runs in tests without downloads; their numbers measure
  nothing about image quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from calibrate.tokenizer import generated_tokenizer
from sim.base.errors import ConfigError
from traces.model_dirs import check_model_dir

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from PIL import Image

try:  # transformers >= 5 names the torchvision-free processor explicitly
    from transformers import CLIPImageProcessorPil as _ImageProcessor
except ImportError:  # pragma: no cover - older transformers
    from transformers import CLIPImageProcessor as _ImageProcessor


def _features(out: Any) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipScorer:
    """CLIP score of images against prompts, and CLIP-text cosine similarity of prompt pairs."""

    def __init__(
        self,
        name: str,
        model: CLIPModel,
        processor: Any,
        tokenizer: Any,
        device: str = "cpu",
        pickscore: bool = False,
    ) -> None:
        self.name = name
        self.pickscore = pickscore  # score with PickScore's formula instead of the CLIP score's
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.tokenizer = tokenizer

    @torch.inference_mode()
    def _text(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=77, return_tensors="pt"
        ).to(self.device)
        feats = _features(
            self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        )
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    @torch.inference_mode()
    def _image(self, images: Sequence[Image.Image], normalize: bool = True) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        feats = _features(self.model.get_image_features(pixel_values=pixels.to(self.model.dtype))).float()
        return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        """Score of each image against its prompt: the CLIP score ``100 * max(cos, 0)``, or for a
        PickScore scorer ``logit_scale.exp() * cos``."""
        if len(images) != len(prompts):
            raise ValueError("score() needs one prompt per image")
        cos = (self._image(images) * self._text(prompts)).sum(-1)
        if self.pickscore:
            scale = float(self.model.logit_scale.detach().exp())
            return (scale * cos).cpu().numpy().astype(np.float64)
        return (100.0 * cos.clamp(min=0)).cpu().numpy().astype(np.float64)

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The model's (projected, unnormalised) image embeddings, one row per image: what FID uses."""
        return self._image(images, normalize=False).cpu().numpy().astype(np.float64)

    def text_similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarity of the text embeddings of ``a[i]`` and ``b[i]``."""
        return (self._text(a) * self._text(b)).sum(-1).cpu().numpy().astype(np.float64)


def _local_clip(kind: str, arg: str | None, device: str, pickscore: bool) -> ClipScorer:
    if not arg:
        raise ConfigError("--scorer", kind, f"{kind}:PATH with PATH a local CLIP model directory")
    path = Path(arg)
    if not (path / "config.json").is_file():
        raise ConfigError(
            "--scorer", f"{kind}:{arg}", f"{kind}:PATH with PATH a directory holding a CLIP config.json"
        )
    problem = check_model_dir("clip", path)
    if problem:
        raise ConfigError("--scorer", f"clip:{arg}", problem)
    model = CLIPModel.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    return ClipScorer(
        f"{kind}:{path.name}",
        model,
        _ImageProcessor.from_pretrained(path, local_files_only=True),
        CLIPTokenizer.from_pretrained(path, local_files_only=True),
        device,
        pickscore=pickscore,
    )


def clip_scorer(arg: str | None, device: str = "cpu") -> ClipScorer:
    """``clip:PATH``: a local CLIP model directory (``CLIPModel`` weights, tokenizer, preprocessor)."""
    return _local_clip("clip", arg, device, pickscore=False)


def pickscore_scorer(arg: str | None, device: str = "cpu") -> ClipScorer:
    """``pickscore:PATH``: a local directory with the PickScore weights (CLIP architecture)."""
    return _local_clip("pickscore", arg, device, pickscore=True)


def tiny_pickscore(arg: str | None = None, device: str = "cpu") -> ClipScorer:
    """A miniature random-weight PickScore model (for tests): another seed, PickScore's formula."""
    return tiny_scorer(arg, device, seed=1, pickscore=True)


def tiny_scorer(arg: str | None = None, device: str = "cpu", seed: int = 0, pickscore: bool = False) -> ClipScorer:
    """A miniature random-weight CLIP (for tests): exercises the scoring path, measures nothing."""
    tokenizer = generated_tokenizer()
    eos = tokenizer.eos_token_id
    small = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(
        text_config={
            **small,
            "vocab_size": 600,
            "bos_token_id": eos - 1,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    processor = _ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    name = "tiny-pickscore" if pickscore else "tiny"
    return ClipScorer(name, CLIPModel(config), processor, tokenizer, device, pickscore=pickscore)


SCORERS: dict[str, Callable[..., ClipScorer]] = {
    "clip": clip_scorer,
    "tiny": tiny_scorer,
    "pickscore": pickscore_scorer,
    "tiny-pickscore": tiny_pickscore,
}


def get_scorer(spec: str, device: str = "cpu") -> ClipScorer:
    """A scorer from ``NAME`` or ``NAME:ARG`` (``tiny``, ``clip:/models/clip-vit-large-patch14``,
    ``pickscore:/models/PickScore_v1``)."""
    name, _, arg = spec.partition(":")
    if name not in SCORERS:
        raise ConfigError("--scorer", spec, f"one of {', '.join(f'{n}[:ARG]' for n in sorted(SCORERS))}")
    return SCORERS[name](arg or None, device)
