"""Networks.

``UNet3D`` is the default: one encoder, two 1x1x1 heads (foreground logit and
centreness logit), native anisotropic grid with an xy-only first pooling.
``paper-nsn`` / ``paper-ndn`` presets follow the QCANet publication's layout
(isotropic pooling, wider channels) for comparison.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _block(cin, cout, k=3):
    p = k // 2
    return nn.Sequential(
        nn.Conv3d(cin, cout, k, padding=p, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, k, padding=p, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
    )


class UNet3D(nn.Module):
    def __init__(self, base=8, levels=4, pools=((1, 2, 2), (2, 2, 2), (2, 2, 2)), kernel=3,
                 heads=2):
        super().__init__()
        assert len(pools) == levels - 1
        ch = [base * 2 ** i for i in range(levels)]
        self.pools = [tuple(p) for p in pools]
        self.enc = nn.ModuleList([_block(1 if i == 0 else ch[i - 1], ch[i], kernel) for i in range(levels)])
        self.up = nn.ModuleList([nn.ConvTranspose3d(ch[i + 1], ch[i], self.pools[i], stride=self.pools[i])
                                 for i in range(levels - 1)])
        self.dec = nn.ModuleList([_block(2 * ch[i], ch[i], kernel) for i in range(levels - 1)])
        self.head = nn.Conv3d(ch[0], heads, 1)
        self.config = dict(arch="unet", base=base, levels=levels, pools=[list(p) for p in pools],
                           kernel=kernel, heads=heads)

    @property
    def spatial_multiple(self):
        m = [1, 1, 1]
        for p in self.pools:
            m = [a * b for a, b in zip(m, p)]
        return m

    def forward(self, x):
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x)
            if i < len(self.pools):
                skips.append(x)
                x = F.max_pool3d(x, self.pools[i])
        for i in reversed(range(len(self.pools))):
            x = self.up[i](x)
            x = self.dec[i](torch.cat([x, skips[i]], 1))
        return self.head(x)


PRESETS = {
    # name: constructor kwargs
    "lean8": dict(base=8),
    "lean12": dict(base=12),
    "lean16": dict(base=16),
    # QCANet paper layout: isotropic 2x pooling, 16 base channels (NSN) / kernel 5 (NDN-like)
    "paper-nsn": dict(base=16, levels=4, pools=((2, 2, 2),) * 3),
    "paper-ndn": dict(base=32, levels=5, pools=((2, 2, 2),) * 4, kernel=5),
}


def build(config: dict) -> UNet3D:
    c = dict(config)
    c.pop("arch", None)
    if "pools" in c:
        c["pools"] = tuple(tuple(p) for p in c["pools"])
    return UNet3D(**c)


def from_preset(name: str) -> UNet3D:
    if name not in PRESETS:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(PRESETS)}")
    return UNet3D(**PRESETS[name])


class ExportWrapper(nn.Module):
    """What goes into ONNX: probabilities, outputs named by the library's contract."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        y = torch.sigmoid(self.net(image))
        return y[:, 0:1], y[:, 1:2]


def param_count(net) -> int:
    return sum(p.numel() for p in net.parameters())
