"""RoPE state stays in float32 (or float64) when a model is cast to a half precision.

``model.half()`` / ``model.to(torch.bfloat16)`` cast every parameter and buffer. For RoPE that would round the learned
frequencies and generators themselves: a bf16 frequency keeps 8 bits of mantissa, so angles of hundreds of radians
(position x frequency on a large grid) are off by tenths of a radian. The tables are already computed in float32 under
autocast; :class:`Float32State` makes the module state itself survive the cast.
"""

from __future__ import annotations

import torch
from torch import nn

LOW_PRECISION = (torch.float16, torch.bfloat16)


class Float32State(nn.Module):
    """Base of RoPE modules: through any ``_apply`` (``.half()``, ``.to(dtype)``, ``.cuda()``), floating parameters and
    buffers of this module that would end up in float16 / bfloat16 keep their float32 values (moved to the new
    device). float64 is kept (gradient checks)."""

    def _apply(self, fn, recurse=True):
        before = {name: t.detach().clone() for name, t in (*self.named_parameters(recurse=False),
                                                           *self.named_buffers(recurse=False))
                  if t is not None and t.dtype == torch.float32}
        super()._apply(fn, recurse)
        for name, p in self.named_parameters(recurse=False):
            if p.dtype in LOW_PRECISION and name in before:
                p.data = before[name].to(p.device)
                if p.grad is not None:
                    p.grad = p.grad.float()
        for name, b in self.named_buffers(recurse=False):
            if b is not None and b.dtype in LOW_PRECISION and name in before:
                self._buffers[name] = before[name].to(b.device)
        return self
