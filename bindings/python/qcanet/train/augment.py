"""Batched augmentation on the training device (GPU when present).

Geometry: random crop around nuclei, random zoom (a different microscope's
voxel size), flips and 90-degree rotations in xy.  Intensity: brightness
falling with depth (either direction), global dimming and offset (later time
points, imperfect normalisation), gamma, Gaussian and shot noise.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


class PatchSampler:
    """Draws training patches from volumes held on ``device``.

    Each volume is stored as a (4, Z, Y, X) float16 tensor: image, foreground,
    centreness, contact (voxels where two nuclei touch, dilated once).
    """

    def __init__(self, volumes, patch=(32, 96, 96), device="cpu", near_nucleus=0.8,
                 zoom=(0.8, 1.25), seed=0):
        self.patch = tuple(patch)
        self.device = torch.device(device)
        self.near = near_nucleus
        self.zoom = zoom
        self.rng = np.random.default_rng(seed)
        maxcrop = [int(math.ceil(p * zoom[1])) + 2 for p in self.patch]
        self.vols, self.fg_idx, self.weights = [], [], []
        for v in volumes:
            stack = np.stack([v.image / 255.0, v.labels > 0, v.centre / 255.0, contact_map(v.labels)])
            pad = [(0, 0)] + [(max(0, (m - s + 1) // 2),) * 2 for m, s in zip(maxcrop, v.image.shape)]
            stack = np.pad(stack, pad)
            self.vols.append(torch.from_numpy(stack.astype(np.float16)).to(self.device))
            self.fg_idx.append(np.argwhere(stack[1] > 0))
            self.weights.append(1.0 + int(v.labels.max()) / 20.0)  # later stages drawn more often
        w = np.asarray(self.weights)
        self.p = w / w.sum()

    def _crop(self, vol, fg_idx, size):
        shape = vol.shape[1:]
        if len(fg_idx) and self.rng.random() < self.near:
            c = fg_idx[self.rng.integers(len(fg_idx))]
            start = [int(np.clip(ci - s // 2 + self.rng.integers(-s // 4, s // 4 + 1), 0, n - s))
                     for ci, s, n in zip(c, size, shape)]
        else:
            start = [int(self.rng.integers(0, n - s + 1)) for s, n in zip(size, shape)]
        return vol[:, start[0]:start[0] + size[0], start[1]:start[1] + size[1], start[2]:start[2] + size[2]]

    def sample(self, batch: int):
        out = []
        for _ in range(batch):
            i = self.rng.choice(len(self.vols), p=self.p)
            zxy = math.exp(self.rng.uniform(math.log(self.zoom[0]), math.log(self.zoom[1])))
            zz = zxy * math.exp(self.rng.uniform(-0.1, 0.1))
            size = [max(4, int(round(self.patch[0] * zz))), int(round(self.patch[1] * zxy)),
                    int(round(self.patch[2] * zxy))]
            size = [min(s, n) for s, n in zip(size, self.vols[i].shape[1:])]
            crop = self._crop(self.vols[i], self.fg_idx[i], size).float()[None]
            if tuple(size) != self.patch:
                crop = F.interpolate(crop, size=self.patch, mode="trilinear", align_corners=False)
            crop = crop[0]
            if self.rng.random() < 0.5:
                crop = crop.flip(1)
            if self.rng.random() < 0.5:
                crop = crop.flip(2)
            if self.rng.random() < 0.5:
                crop = crop.flip(3)
            k = int(self.rng.integers(4))
            if k:
                crop = torch.rot90(crop, k, dims=(2, 3))
            out.append(crop)
        b = torch.stack(out)
        img = intensity_augment(b[:, 0:1], self.rng)
        fg = (b[:, 1:2] > 0.5).float()
        cen = b[:, 2:3].clamp(0, 1) * fg
        contact = (b[:, 3:4] > 0.25).float()
        return img, fg, cen, contact


def intensity_augment(img, rng):
    n, _, d, _, _ = img.shape
    dev = img.device
    z = torch.linspace(0, 1, d, device=dev).view(1, 1, d, 1, 1)
    a = torch.tensor(rng.uniform(0, 1.5, n), device=dev, dtype=img.dtype).view(n, 1, 1, 1, 1)
    flipz = torch.tensor(rng.random(n) < 0.5, device=dev).view(n, 1, 1, 1, 1)
    zz = torch.where(flipz, 1 - z, z)
    img = img * torch.exp(-a * zz)
    scale = torch.tensor(np.exp(rng.uniform(np.log(0.5), np.log(1.5), n)), device=dev, dtype=img.dtype)
    off = torch.tensor(rng.uniform(-0.08, 0.08, n), device=dev, dtype=img.dtype)
    img = img * scale.view(n, 1, 1, 1, 1) + off.view(n, 1, 1, 1, 1)
    gamma = torch.tensor(np.exp(rng.uniform(np.log(0.6), np.log(1.6), n)), device=dev, dtype=img.dtype)
    img = img.clamp(0, 1.5) ** gamma.view(n, 1, 1, 1, 1)
    g = torch.tensor(rng.uniform(0, 0.08, n), device=dev, dtype=img.dtype).view(n, 1, 1, 1, 1)
    s = torch.tensor(rng.uniform(0, 0.08, n), device=dev, dtype=img.dtype).view(n, 1, 1, 1, 1)
    img = img + g * torch.randn_like(img) + s * img.clamp(min=0).sqrt() * torch.randn_like(img)
    return img.clamp(-0.2, 1.5)


def contact_map(labels: np.ndarray) -> np.ndarray:
    """1 where two different nuclei touch (6-neighbourhood), dilated by one voxel."""
    from scipy import ndimage as ndi
    c = np.zeros(labels.shape, bool)
    for ax in range(3):
        a = np.swapaxes(labels, 0, ax)
        d = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        cv = np.swapaxes(c, 0, ax)
        cv[1:] |= d
        cv[:-1] |= d
    return ndi.binary_dilation(c).astype(np.float32)
