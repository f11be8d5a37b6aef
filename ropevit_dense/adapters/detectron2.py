"""detectron2 adapter: the RoPE backbones as detectron2 ``Backbone`` modules, for LazyConfigs and yacs configs.

Classes (usable directly from a LazyConfig, e.g. ``L(RoPEViTDetBackbone)(net=L(RoPEViTBackbone)(...), ...)``):

* :class:`RoPEViTBackbone` — :class:`~ropevit_dense.backbones.RoPEViT` returning ``{"last_feat": NCHW}`` (stride =
  patch), the single-scale ``net`` of a ViTDet backbone;
* :class:`RoPEViTDetBackbone` — detectron2's own ``SimpleFeaturePyramid`` (ViTDet, Li et al. ECCV 2022) over a
  :class:`RoPEViTBackbone`, with padding constraints that reach ``ImageList.from_tensors``;
* :class:`RoPESwinBackbone` — :class:`~ropevit_dense.backbones.RoPESwin` returning its stages as ``res2`` ..
  ``res5`` (strides 4 .. 32), the ``bottom_up`` of detectron2's ``FPN``.

yacs configs: :func:`add_ropevit_config` adds ``cfg.MODEL.ROPEVIT`` / ``cfg.MODEL.ROPESWIN``; the build functions
``build_ropevit_sfp_backbone``, ``build_ropeswin_backbone`` and ``build_ropeswin_fpn_backbone`` are registered in
detectron2's ``BACKBONE_REGISTRY`` (once, when this module is first imported) for ``cfg.MODEL.BACKBONE.NAME``.

Pretrained weights: the backbones take ``pretrained=`` — a name of :data:`ropevit_dense.PRETRAINED` (e.g.
``"rope_mixed_deit_base_patch16_LS"``), a local path, an http(s) URL or ``hf://owner/repo/file`` — and load it
through :func:`ropevit_dense.load_pretrained` (naver, timm, OpenMMLab / detectron2-prefixed or our layout,
strict by default, the key report is logged), ``.pkl`` files through the restricted unpickler. A whole-detector
checkpoint of this package (``backbone.net.`` / ``backbone.bottom_up.`` keys) gives its backbone.
``train.init_checkpoint`` stays for checkpoints of the whole detector (resume, evaluation, fine-tuning), read by
:class:`~ropevit_dense.adapters.d2_checkpoint.SafeDetectionCheckpointer` (re-exported here): use it instead of
detectron2's ``DetectionCheckpointer`` in scripts of your own, so that no checkpoint can run code.

Importing this module needs detectron2 (not on PyPI; install it from its source, see
https://detectron2.readthedocs.io/en/latest/tutorials/install.html). ``import ropevit_dense`` never imports it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any, Optional, Union

try:
    from detectron2.config import CfgNode
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone, SimpleFeaturePyramid
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool
except ImportError as exc:  # detectron2 missing, or installed against another torch
    raise ImportError(
        "ropevit_dense.adapters.detectron2 needs detectron2, which is not on PyPI: install it from its source "
        "following https://detectron2.readthedocs.io/en/latest/tutorials/install.html, into this environment and "
        "against its torch (pip install --no-build-isolation <detectron2 checkout>). "
        f"The import failed with: {exc}"
    ) from exc
import torch
from torch import nn

from ..backbones import RoPESwin, RoPEViT
from ..checkpoints import LoadReport, load_pretrained
from ..checkpoints.zoo import PRETRAINED
from .d2_checkpoint import SafeDetectionCheckpointer

logger = logging.getLogger(__name__)

Pretrained = Optional[Union[str, os.PathLike]]

__all__ = [
    "RoPESwinBackbone",
    "RoPEViTBackbone",
    "RoPEViTDetBackbone",
    "SafeDetectionCheckpointer",
    "add_ropevit_config",
    "backbone_lr_factor",
    "build_ropeswin_backbone",
    "build_ropeswin_fpn_backbone",
    "build_ropevit_sfp_backbone",
]


# -- pretrained weights ------------------------------------------------------------------------------------------
def _architecture(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments of a built backbone that a checkpoint's architecture fixes."""
    if isinstance(model, RoPEViT):
        return dict(embed_dim=model.embed_dim, depth=model.depth, num_heads=model.num_heads,
                    rope_type=model.rope_type, use_ape=model.pos_embed is not None)
    stages = list(model.layers)
    return dict(embed_dim=model.num_features[0], depths=tuple(len(s.blocks) for s in stages),
                num_heads=tuple(s.blocks[0].attn.num_heads for s in stages), rope_type=model.rope_type)


def _load_weights(model: nn.Module, pretrained: Pretrained, strict: bool) -> Optional[LoadReport]:
    """Load ``pretrained`` (a :data:`PRETRAINED` name, path, URL or hub id) into a RoPEViT / RoPESwin."""
    if pretrained is None or pretrained == "":
        return None
    source: Union[str, os.PathLike] = pretrained
    if isinstance(pretrained, str) and pretrained in PRETRAINED:
        spec = PRETRAINED[pretrained]
        expected = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in spec.backbone_kwargs().items()}
        built = _architecture(model)
        clash = {k: (expected[k], v) for k, v in built.items() if k in expected and expected[k] != v}
        if clash:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs backbone {b!r}" for k, (a, b) in clash.items())
            raise ValueError(f"pretrained checkpoint '{pretrained}' does not fit this backbone ({detail})")
        source = spec.source
    report = load_pretrained(model, source, strict=strict)  # .pkl files too, through the restricted unpickler
    logger.info("%s", report)
    return report


def backbone_lr_factor(name: str, factor: float = 0.1) -> float:
    """Learning-rate factor ``factor`` for parameters under ``backbone.``, 1 elsewhere (DINO's recipe).

    For ``optimizer.params.lr_factor_func`` of ``get_default_optimizer_params`` (``partial(backbone_lr_factor,
    factor=0.1)``), where a lambda would not survive ``LazyConfig.save``.
    """
    return factor if name.startswith("backbone.") else 1.0


# -- shared plumbing -------------------------------------------------------------------------------------------------
class _NamedOutputs:
    """detectron2 side of a core backbone: its outputs as a dict named ``_out_features``, and its padding needs.

    Put first among the bases, so that ``super().forward`` is the core backbone's forward and these properties
    replace ``Backbone``'s defaults. Subclasses set ``_out_features`` and ``_size_divisibility``.
    """

    _out_features: list[str]
    _size_divisibility: int

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    @property
    def padding_constraints(self) -> dict[str, int]:
        return {"size_divisibility": self._size_divisibility, "square_size": 0}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self._out_features, super().forward(x)))


# -- RoPE-ViT ------------------------------------------------------------------------------------------------------
class RoPEViTBackbone(_NamedOutputs, RoPEViT, Backbone):
    """:class:`~ropevit_dense.backbones.RoPEViT` as a single-scale detectron2 backbone.

    Args:
        out_feature (str): name of the output map (of the last ``out_indices`` block). Default: ``"last_feat"``,
            as detectron2's ViT; with several ``out_indices`` the maps are named ``block{i}``.
        pretrained (str | PathLike | None): weights loaded after construction: a :data:`ropevit_dense.PRETRAINED`
            name (its architecture is checked against this backbone), a path, URL or ``hf://`` id. Default: None.
        pretrained_strict (bool): refuse checkpoints with missing, unexpected or mis-shaped keys. Default: True.
        pad_to_window (bool): make :attr:`size_divisibility` ``patch_size * window_size`` so that windows tile
            the padded image exactly. Off by default: window blocks pad the token grid to whole windows
            themselves and mask the padded keys, so images only need a multiple of the patch size (ViTDet's
            1024 square input then gives 64 tokens, padded to 70 in window blocks, as in ViTDet). Default: False.
        **kwargs: the arguments of :class:`~ropevit_dense.backbones.RoPEViT` (``embed_dim``, ``depth``,
            ``num_heads``, ``window_size``, ``global_block_indexes``, ``rope_type``, ``use_ape``, ...).

    Forward: ``(B, C, H, W)`` images → ``{out_feature: (B, embed_dim, ceil(H / p), ceil(W / p))}``.
    """

    def __init__(
        self,
        *,
        out_feature: str = "last_feat",
        pretrained: Pretrained = None,
        pretrained_strict: bool = True,
        pad_to_window: bool = False,
        **kwargs: Any,
    ) -> None:
        RoPEViT.__init__(self, **kwargs)
        self.out_feature = out_feature
        names = [out_feature] if len(self.out_indices) == 1 else [f"block{i}" for i in self.out_indices]
        if len(self.out_indices) > 1 and out_feature != "last_feat":
            raise ValueError(f"out_feature names a single output; with out_indices {self.out_indices} the outputs "
                             "are named block{i}")
        self._out_features = names
        self._out_feature_channels = dict.fromkeys(names, self.embed_dim)
        self._out_feature_strides = dict.fromkeys(names, self.patch_size)
        window = max((b.window_size for b in self.blocks), default=0)
        self._size_divisibility = self.patch_size * window if pad_to_window and window else self.patch_size
        self.load_report = _load_weights(self, pretrained, pretrained_strict)


class RoPEViTDetBackbone(SimpleFeaturePyramid):
    """detectron2's ``SimpleFeaturePyramid`` over a :class:`RoPEViTBackbone`, with working padding constraints.

    The pyramid itself (resampling branches, LN convs, ``p<stage>`` names, ``output_shape``) is detectron2's. Two
    properties are replaced: ``padding_constraints`` returns ``{"size_divisibility", "square_size"}`` (the parent
    misspells the first key, so ``ImageList.from_tensors`` never sees it) and ``size_divisibility`` is the least
    common multiple of the net's divisibility (the patch, or patch x window with ``pad_to_window``) and the
    largest output stride (the top block's included), so every level of a padded batch is exactly
    ``H / stride`` by ``W / stride``.

    Args:
        net (RoPEViTBackbone): the single-scale ViT.
        in_feature (str): the net's output to build the pyramid on. Default: ``"last_feat"``.
        out_channels (int): channels of every level. Default: 256.
        scale_factors (Sequence[float]): resampling per level, out of ``(4.0, 2.0, 1.0, 0.5)``. Default: ViTDet's
            ``(4.0, 2.0, 1.0, 0.5)``; DINO uses ``(2.0, 1.0, 0.5)``.
        top_block (nn.Module | None): extra coarser levels, e.g. ``LastLevelMaxPool()`` for ``p6``. Default: None.
        norm (str): detectron2 norm name of the pyramid convs. Default: ``"LN"``.
        square_pad (int): pad every batch to this square size (ViTDet's LSJ: 1024); 0 for none. Default: 0.
    """

    def __init__(
        self,
        net: RoPEViTBackbone,
        in_feature: str = "last_feat",
        out_channels: int = 256,
        scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        top_block: Optional[nn.Module] = None,
        norm: str = "LN",
        square_pad: int = 0,
    ) -> None:
        if not isinstance(net, RoPEViTBackbone):
            raise TypeError(f"net must be a RoPEViTBackbone, got {type(net).__name__}")
        if in_feature not in net.output_shape():
            raise ValueError(f"in_feature '{in_feature}' is not an output of the net ({list(net.output_shape())})")
        if square_pad < 0:
            raise ValueError(f"square_pad must be >= 0, got {square_pad}")
        super().__init__(net=net, in_feature=in_feature, out_channels=out_channels,
                         scale_factors=tuple(float(s) for s in scale_factors), top_block=top_block, norm=norm,
                         square_pad=square_pad)
        largest = max(s.stride for s in self.output_shape().values())
        self._size_divisibility = math.lcm(net.size_divisibility, largest)
        if square_pad and square_pad % self._size_divisibility:
            logger.warning("square_pad=%d is not a multiple of size_divisibility=%d: batches are padded to %d",
                           square_pad, self._size_divisibility,
                           -(-square_pad // self._size_divisibility) * self._size_divisibility)

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    @property
    def padding_constraints(self) -> dict[str, int]:
        return {"size_divisibility": self._size_divisibility, "square_size": self._square_pad}


# -- RoPE-Swin -----------------------------------------------------------------------------------------------------
class RoPESwinBackbone(_NamedOutputs, RoPESwin, Backbone):
    """:class:`~ropevit_dense.backbones.RoPESwin` as a multi-scale detectron2 backbone (``bottom_up`` of an FPN).

    Stage ``i`` (``out_indices``, default all four) is returned as ``res{i + 2}``: with the default patch 4, the
    strides are 4, 8, 16, 32 and the channels ``embed_dim * 2**i``, each map after its own LayerNorm.

    Args:
        pretrained (str | PathLike | None): as for :class:`RoPEViTBackbone`. Default: None.
        pretrained_strict (bool): strict key checking. Default: True.
        **kwargs: the arguments of :class:`~ropevit_dense.backbones.RoPESwin`.

    Forward: ``(B, C, H, W)`` images → ``{"res{i+2}": (B, C_i, H_i, W_i)}``; :attr:`size_divisibility` (the
    coarsest stride) makes ``H_i = H / stride_i`` exactly.
    """

    def __init__(self, *, pretrained: Pretrained = None, pretrained_strict: bool = True, **kwargs: Any) -> None:
        RoPESwin.__init__(self, **kwargs)
        patch = self.patch_embed.patch_size
        self._out_features = [f"res{i + 2}" for i in self.out_indices]
        self._out_feature_channels = {f"res{i + 2}": self.num_features[i] for i in self.out_indices}
        self._out_feature_strides = {f"res{i + 2}": patch * 2 ** i for i in self.out_indices}
        self._size_divisibility = patch * 2 ** (self.num_stages - 1)
        self.load_report = _load_weights(self, pretrained, pretrained_strict)


# -- yacs configs ----------------------------------------------------------------------------------------------------
def add_ropevit_config(cfg: CfgNode) -> None:
    """Add ``cfg.MODEL.ROPEVIT`` (ViTDet-B with RoPE-Mixed) and ``cfg.MODEL.ROPESWIN`` (Swin-T) defaults.

    ``ROPE_TYPE`` is a backbone ``rope_type`` (``"mixed"``, ``"axial"``, ...) or ``"none"``; ``PRETRAINED`` is a
    :data:`ropevit_dense.PRETRAINED` name, a path, URL or hub id, or ``""`` for none. Pyramid / FPN channels come
    from ``cfg.MODEL.FPN``.
    """
    vit = CfgNode()
    vit.EMBED_DIM, vit.DEPTH, vit.NUM_HEADS, vit.PATCH_SIZE = 768, 12, 12, 16
    vit.WINDOW_SIZE = 14
    vit.GLOBAL_BLOCK_INDEXES = [2, 5, 8, 11]
    vit.DROP_PATH_RATE = 0.1
    vit.ROPE_TYPE = "mixed"
    vit.USE_APE = False
    vit.PRETRAINED = ""
    vit.SCALE_FACTORS = [4.0, 2.0, 1.0, 0.5]
    vit.NORM = "LN"
    vit.SQUARE_PAD = 0
    cfg.MODEL.ROPEVIT = vit

    swin = CfgNode()
    swin.EMBED_DIM = 96
    swin.DEPTHS = [2, 2, 6, 2]
    swin.NUM_HEADS = [3, 6, 12, 24]
    swin.PATCH_SIZE = 4
    swin.WINDOW_SIZE = 7
    swin.DROP_PATH_RATE = 0.2
    swin.ROPE_TYPE = "mixed"
    swin.USE_RPB = False
    swin.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    swin.PRETRAINED = ""
    cfg.MODEL.ROPESWIN = swin


def _rope_type(value: str) -> Optional[str]:
    """yacs has no None: ``"none"`` means no RoPE; other names are checked by the backbone."""
    return None if value.lower() == "none" else value


def _needs_config(cfg: CfgNode, key: str) -> CfgNode:
    if key not in cfg.MODEL:
        raise KeyError(f"cfg.MODEL.{key} is missing: call ropevit_dense.adapters.detectron2.add_ropevit_config(cfg) "
                       "before merging the config file")
    return cfg.MODEL[key]


def build_ropevit_sfp_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> RoPEViTDetBackbone:
    """RoPE-ViT + simple feature pyramid (``p2`` .. ``p6`` by default) from ``cfg.MODEL.ROPEVIT``."""
    c = _needs_config(cfg, "ROPEVIT")
    net = RoPEViTBackbone(
        in_chans=input_shape.channels, embed_dim=c.EMBED_DIM, depth=c.DEPTH, num_heads=c.NUM_HEADS,
        patch_size=c.PATCH_SIZE, window_size=c.WINDOW_SIZE, global_block_indexes=tuple(c.GLOBAL_BLOCK_INDEXES),
        drop_path_rate=c.DROP_PATH_RATE, rope_type=_rope_type(c.ROPE_TYPE), use_ape=c.USE_APE,
        pretrained=c.PRETRAINED or None,
    )
    return RoPEViTDetBackbone(net=net, in_feature="last_feat", out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
                              scale_factors=tuple(c.SCALE_FACTORS), top_block=LastLevelMaxPool(), norm=c.NORM,
                              square_pad=c.SQUARE_PAD)


def _swin(cfg: CfgNode, input_shape: ShapeSpec, out_features: Sequence[str]) -> RoPESwinBackbone:
    c = _needs_config(cfg, "ROPESWIN")
    valid = [f"res{i + 2}" for i in range(len(c.DEPTHS))]
    bad = [f for f in out_features if f not in valid]
    if bad:
        raise ValueError(f"RoPE-Swin outputs {bad} do not exist; it has {valid}")
    return RoPESwinBackbone(
        in_chans=input_shape.channels, embed_dim=c.EMBED_DIM, depths=tuple(c.DEPTHS), num_heads=tuple(c.NUM_HEADS),
        patch_size=c.PATCH_SIZE, window_size=c.WINDOW_SIZE, drop_path_rate=c.DROP_PATH_RATE,
        rope_type=_rope_type(c.ROPE_TYPE), use_rpb=c.USE_RPB,
        out_indices=tuple(valid.index(f) for f in out_features), pretrained=c.PRETRAINED or None,
    )


def build_ropeswin_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> RoPESwinBackbone:
    """RoPE-Swin with the stages of ``cfg.MODEL.ROPESWIN.OUT_FEATURES`` (e.g. for Mask2Former-style heads)."""
    return _swin(cfg, input_shape, _needs_config(cfg, "ROPESWIN").OUT_FEATURES)


def build_ropeswin_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """RoPE-Swin stages ``cfg.MODEL.FPN.IN_FEATURES`` into detectron2's FPN with a max-pooled ``p6``."""
    bottom_up = _swin(cfg, input_shape, cfg.MODEL.FPN.IN_FEATURES)
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


for _build in (build_ropevit_sfp_backbone, build_ropeswin_backbone, build_ropeswin_fpn_backbone):
    if _build.__name__ not in BACKBONE_REGISTRY:  # idempotent: the registry refuses a second registration
        BACKBONE_REGISTRY.register(_build)
