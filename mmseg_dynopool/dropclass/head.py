"""The DropClass decode head: debiased, disentangled representation training for mmseg.

Method of Chu, Kim & Han, "Learning Debiased and Disentangled Representations for
Semantic Segmentation" (NeurIPS 2021, https://arxiv.org/abs/2111.00531), as described
in ``docs/dropclass.md``:

* plain features ``A`` (the head's own features, for FCN on HRNet
  ``ReLU(BN(conv1x1_{C->C}(X)))`` with ``X`` the concatenated HRNet streams) and plain
  logits ``Y = cls(A)``;
* class importance ``S_c = ReLU(W_c)`` from the classifier weight ``W`` (K x C), not
  detached;
* once per iteration one class ``z`` is sampled uniformly and dropped with probability
  ``t`` (training progress by default); keep mask ``m``;
  ``g = sum_c m_c S_c / sum_c m_c``;
* ``A_drop = ReLU(BN'(conv1x1'_{C->C}(A * g)))`` (own parameters),
  ``Y_drop = cls(A_drop)`` (same classifier);
* losses ``(1 - t) CE(Y, y) + t CE(Y_drop, y_z) + 10 mean softmax(Y_drop)[z]`` (the last
  one only when a class was dropped), ``y_z`` = ``y`` with class ``z`` set to ignore;
* inference: ``m`` = all ones, output ``Y_drop``.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.dist import broadcast, get_world_size
from mmengine.logging import MessageHub
from torch import Tensor, nn

from mmseg.models.decode_heads import FCNHead
from mmseg.models.losses import accuracy
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, SampleList

DROP_SCHEDULES = ('linear', 'constant')


class DropClassMixin:
    """DropClass for a ``BaseDecodeHead`` that computes its last features with
    ``_forward_feature(inputs)`` and classifies them with ``cls_seg`` (a 1x1
    ``conv_seg``).

    Put it first in the bases (``class X(DropClassMixin, SomeHead)``) and call
    :meth:`_init_dropclass` at the end of ``__init__``. It replaces ``forward``
    (inference: the drop branch with nothing dropped) and ``loss`` (the three DropClass
    terms).
    """

    # Set by the concrete head (BaseDecodeHead attributes).
    channels: int
    num_classes: int
    out_channels: int
    ignore_index: int
    align_corners: bool
    conv_seg: nn.Conv2d

    def _init_dropclass(self, drop_schedule: str = 'linear',
                        drop_prob: Optional[float] = None,
                        plain_loss_weight: float = 1.0,
                        drop_loss_weight: float = 1.0,
                        suppress_loss_weight: float = 10.0,
                        sample_present_only: bool = False,
                        sync_sampling: bool = True) -> None:
        """Validate the DropClass options and build the suppression layer."""
        if drop_schedule not in DROP_SCHEDULES:
            raise ValueError(f'drop_schedule must be one of {DROP_SCHEDULES}, '
                             f'got {drop_schedule!r}')
        if drop_schedule == 'constant':
            if drop_prob is None or not 0.0 <= float(drop_prob) <= 1.0:
                raise ValueError("drop_schedule='constant' needs drop_prob in [0, 1], "
                                 f'got {drop_prob!r}')
        elif drop_prob is not None:
            raise ValueError("drop_prob is only used with drop_schedule='constant' "
                             '(the linear schedule uses the training progress)')
        for name, value in (('plain_loss_weight', plain_loss_weight),
                            ('drop_loss_weight', drop_loss_weight),
                            ('suppress_loss_weight', suppress_loss_weight)):
            if value < 0:
                raise ValueError(f'{name} must be >= 0, got {value}')
        if self.out_channels != self.num_classes:
            raise ValueError('DropClass needs one classifier row per class '
                             f'(out_channels == num_classes), got out_channels='
                             f'{self.out_channels}, num_classes={self.num_classes}')
        self.drop_schedule = drop_schedule
        self.drop_prob = None if drop_prob is None else float(drop_prob)
        self.plain_loss_weight = float(plain_loss_weight)
        self.drop_loss_weight = float(drop_loss_weight)
        self.suppress_loss_weight = float(suppress_loss_weight)
        self.sample_present_only = bool(sample_present_only)
        self.sync_sampling = bool(sync_sampling)
        # conv1x1'_{C->C} + BN' + ReLU: the only layer DropClass adds at inference.
        self.suppress_conv = ConvModule(
            self.channels,
            self.channels,
            kernel_size=1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

    # ------------------------------------------------------------------ schedule
    def drop_probability(self) -> float:
        """Probability ``t`` that the sampled class is dropped in this iteration.

        ``'linear'``: ``iter / max_iters`` from mmengine's current message hub (the
        Runner's ``RuntimeInfoHook`` sets both before each training iteration), clipped
        to [0, 1]. ``'constant'``: ``drop_prob``. The same ``t`` weights the losses.
        """
        if self.drop_schedule == 'constant':
            return self.drop_prob  # type: ignore[return-value]
        hub = MessageHub.get_current_instance()
        cur_iter = hub.get_info('iter')
        max_iters = hub.get_info('max_iters')
        if cur_iter is None or not max_iters:
            raise RuntimeError(
                "DropClass' linear schedule reads 'iter' and 'max_iters' from mmengine's "
                'MessageHub (set by the Runner); none found. Train through the Runner, '
                "set them with MessageHub.get_current_instance().update_info(), or use "
                "drop_schedule='constant'.")
        return min(max(float(cur_iter) / float(max_iters), 0.0), 1.0)

    # ------------------------------------------------------------------ sampling
    def sample_drop(self, t: float, seg_label: Optional[Tensor] = None
                    ) -> Tuple[int, bool]:
        """Sample the class ``z`` (uniform) and whether it is dropped (prob. ``t``).

        One draw per iteration, shared by the whole batch, through torch's global
        (CPU) RNG so that a seed makes it reproducible. With ``sample_present_only``,
        ``z`` is drawn from the classes present in ``seg_label`` (all classes when none
        is). Under distributed training rank 0's draw is broadcast to every rank.
        """
        candidates = None
        if self.sample_present_only and seg_label is not None:
            present = torch.unique(seg_label.detach()).cpu()
            present = present[(present != self.ignore_index) & (present >= 0)
                              & (present < self.num_classes)]
            if present.numel() > 0:
                candidates = present
        if candidates is None:
            z = int(torch.randint(self.num_classes, (1, )).item())
        else:
            z = int(candidates[torch.randint(candidates.numel(), (1, ))].item())
        dropped = bool(torch.rand(()).item() < t)
        if self.sync_sampling and get_world_size() > 1:
            device = self.conv_seg.weight.device
            draw = torch.tensor([z, int(dropped)], dtype=torch.long, device=device)
            broadcast(draw, src=0)
            z, dropped = int(draw[0]), bool(draw[1])
        return z, dropped

    def keep_mask(self, dropped_class: Optional[int] = None,
                  device: Optional[torch.device] = None) -> Tensor:
        """``m``: ones over the K classes, 0 at ``dropped_class`` (if not None)."""
        device = self.conv_seg.weight.device if device is None else device
        mask = torch.ones(self.num_classes, device=device)
        if dropped_class is not None:
            mask[dropped_class] = 0.0
        return mask

    # ------------------------------------------------------------------ features
    def class_importance(self) -> Tensor:
        """``S = ReLU(W)`` of shape (K, C) from the classifier weight (not detached)."""
        return F.relu(self.conv_seg.weight.flatten(1))

    def suppression_gate(self, keep_mask: Tensor) -> Tensor:
        """``g = sum_c m_c S_c / sum_c m_c``: mean importance of the kept classes (C,)."""
        keep_mask = keep_mask.to(self.conv_seg.weight)
        importance = self.class_importance()
        return (keep_mask[:, None] * importance).sum(0) / keep_mask.sum()

    def suppress(self, feats: Tensor, keep_mask: Tensor) -> Tensor:
        """``A_drop = ReLU(BN'(conv1x1'(A * g)))``."""
        gate = self.suppression_gate(keep_mask).to(feats.dtype)
        return self.suppress_conv(feats * gate.view(1, -1, 1, 1))

    def forward_train_logits(self, inputs, keep_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """Plain logits ``Y = cls(A)`` and drop-branch logits ``Y_drop`` for ``m``."""
        feats = self._forward_feature(inputs)
        plain_logits = self.cls_seg(feats)
        drop_logits = self.cls_seg(self.suppress(feats, keep_mask))
        return plain_logits, drop_logits

    def forward(self, inputs) -> Tensor:
        """Inference: ``Y_drop`` with nothing dropped (``m`` = all ones)."""
        feats = self._forward_feature(inputs)
        return self.cls_seg(self.suppress(feats, self.keep_mask(device=feats.device)))

    # ------------------------------------------------------------------ losses
    def _branch_losses(self, logits: Tensor, seg_label: Tensor, weight: float,
                       suffix: str) -> Dict[str, Tensor]:
        """``weight`` x every configured decode loss on upsampled ``logits``."""
        seg_logits = resize(
            input=logits,
            size=seg_label.shape[2:],
            mode='bilinear',
            align_corners=self.align_corners)
        seg_weight = (self.sampler.sample(seg_logits, seg_label)
                      if self.sampler is not None else None)
        label = seg_label.squeeze(1)
        losses_decode = (self.loss_decode if isinstance(self.loss_decode, nn.ModuleList)
                         else [self.loss_decode])
        losses: Dict[str, Tensor] = {}
        for loss_decode in losses_decode:
            name = loss_decode.loss_name + suffix
            value = weight * loss_decode(
                seg_logits, label, weight=seg_weight, ignore_index=self.ignore_index)
            losses[name] = losses[name] + value if name in losses else value
        losses['acc_seg' + suffix] = accuracy(
            seg_logits, label, ignore_index=self.ignore_index)
        return losses

    def dropclass_loss(self, plain_logits: Tensor, drop_logits: Tensor,
                       seg_label: Tensor, t: float, dropped_class: int,
                       dropped: bool) -> Dict[str, Tensor]:
        """The DropClass losses for one iteration.

        Args:
            plain_logits: ``Y`` (B, K, h, w).
            drop_logits: ``Y_drop`` (B, K, h, w), computed with the keep mask of
                (``dropped_class``, ``dropped``).
            seg_label: labels (B, 1, H, W).
            t: drop probability of this iteration (weights the two CE terms).
            dropped_class: the sampled class ``z``.
            dropped: whether ``z`` was dropped.

        Returns:
            dict: ``<loss_name>`` = plain_loss_weight (1 - t) CE(Y, y),
            ``<loss_name>_drop`` = drop_loss_weight t CE(Y_drop, y_z),
            ``loss_suppress`` = suppress_loss_weight mean softmax(Y_drop)[z] if dropped
            else 0, and monitoring values without 'loss' in their keys: ``acc_seg``,
            ``acc_seg_drop``, ``dc_t`` (t) and ``dc_class`` (z, or -1 if none dropped).
        """
        losses = self._branch_losses(plain_logits, seg_label,
                                     self.plain_loss_weight * (1.0 - t), '')
        drop_label = seg_label
        if dropped:
            drop_label = seg_label.clone()
            drop_label[seg_label == dropped_class] = self.ignore_index
        losses.update(
            self._branch_losses(drop_logits, drop_label, self.drop_loss_weight * t,
                                '_drop'))
        if dropped:
            prob = F.softmax(drop_logits, dim=1)[:, dropped_class]
            losses['loss_suppress'] = self.suppress_loss_weight * prob.mean()
        else:
            losses['loss_suppress'] = drop_logits.new_zeros(())
        losses['dc_t'] = drop_logits.new_tensor(float(t))
        losses['dc_class'] = drop_logits.new_tensor(
            float(dropped_class if dropped else -1))
        return losses

    def loss(self, inputs: Tuple[Tensor], batch_data_samples: SampleList,
             train_cfg: ConfigType) -> Dict[str, Tensor]:
        """One training forward: sample the dropped class, run both branches and
        return the DropClass losses (see :meth:`dropclass_loss`)."""
        seg_label = self._stack_batch_gt(batch_data_samples)
        t = self.drop_probability()
        z, dropped = self.sample_drop(t, seg_label)
        keep = self.keep_mask(z if dropped else None, device=seg_label.device)
        plain_logits, drop_logits = self.forward_train_logits(inputs, keep)
        return self.dropclass_loss(plain_logits, drop_logits, seg_label, t, z, dropped)


@MODELS.register_module()
class DropClassFCNHead(DropClassMixin, FCNHead):
    """mmseg's ``FCNHead`` trained with DropClass.

    With mmseg's HRNet FCN settings (``input_transform='resize_concat'``,
    ``num_convs=1``, ``kernel_size=1``, ``concat_input=False``) the FCN features are
    exactly the method's plain features ``A = ReLU(BN(conv1x1_{C->C}(X)))``; DropClass
    adds ``suppress_conv`` (conv1x1 C->C + BN + ReLU), used at inference too.

    Args:
        drop_schedule (str): ``'linear'`` (default, the authors': the drop
            probability t is the training progress iter / max_iters) or ``'constant'``.
        drop_prob (float, optional): t for ``'constant'``.
        plain_loss_weight (float): factor on ``(1 - t) CE(Y, y)``. Default 1.
        drop_loss_weight (float): factor on ``t CE(Y_drop, y_z)``. Default 1.
        suppress_loss_weight (float): weight of ``mean softmax(Y_drop)[z]``.
            Default 10 (the authors').
        sample_present_only (bool): draw z among the classes present in the batch
            instead of all classes (default False, the authors').
        sync_sampling (bool): broadcast rank 0's draw under distributed training so
            the whole (global) batch shares it. Default True.
        **kwargs: ``FCNHead`` / ``BaseDecodeHead`` arguments.
    """

    def __init__(self, drop_schedule: str = 'linear', drop_prob: Optional[float] = None,
                 plain_loss_weight: float = 1.0, drop_loss_weight: float = 1.0,
                 suppress_loss_weight: float = 10.0, sample_present_only: bool = False,
                 sync_sampling: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_dropclass(drop_schedule, drop_prob, plain_loss_weight,
                             drop_loss_weight, suppress_loss_weight,
                             sample_present_only, sync_sampling)


__all__: List[str] = ['DropClassMixin', 'DropClassFCNHead', 'DROP_SCHEDULES']
