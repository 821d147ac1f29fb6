"""Training data: TIFF folders (BBBC050 / QCANet layout) and the packed form.

Layout of a dataset folder: ``images/`` (raw), ``nsn/`` (foreground masks),
``ndn/`` (centre masks) and optionally ``instances/`` (labels), paired by file
name.  Volumes are (z, y, x).  The packed form is one compressed ``.npz`` with
the raw volume normalised per volume to 8 bits, the instance labels and the
metadata; the centreness target is recomputed on loading.  Compact enough to travel to a GPU machine.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_VOXEL_SIZE = (1.75, 0.8, 0.8)  # z, y, x in micrometres (BBBC050)
P_LO, P_HI = 1.0, 99.9


def normalise(vol: np.ndarray, p_lo: float = P_LO, p_hi: float = P_HI) -> np.ndarray:
    """Per-volume percentile normalisation to [0, 1] (clipped), float32.

    Identical to the library's ``percentile`` normalisation: it is what makes a
    model indifferent to detector gain and to a 10x brighter microscope.
    """
    v = vol.astype(np.float32)
    lo, hi = np.percentile(v, [p_lo, p_hi])
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("volume contains NaN or infinite values")
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((v - lo) * scale, 0.0, 1.0)


def embryo_of(name: str) -> str:
    """'Emb03_t251.tif' -> 'Emb03'.  Files without a time suffix are their own embryo."""
    stem = Path(name).stem
    m = re.match(r"^(.*?)[_-]t\d+$", stem)
    return m.group(1) if m else stem


def centreness(labels: np.ndarray, voxel_size) -> np.ndarray:
    """Each nucleus's distance to its own boundary (um), scaled to [0, 1] per nucleus."""
    from scipy import ndimage as ndi
    out = np.zeros(labels.shape, np.float32)
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        m = labels[sl] == i
        d = ndi.distance_transform_edt(m, sampling=voxel_size)
        if d.max() > 0:
            out[sl][m] = (d[m] / d.max()).astype(np.float32)
    return out


def read_volume(path: Path) -> np.ndarray:
    import tifffile
    a = tifffile.imread(str(path))
    return np.asarray(a)


def instances_from_masks(nsn: np.ndarray, ndn: np.ndarray, voxel_size) -> np.ndarray:
    """Instance labels when a dataset has none: NDN balls as markers, watershed on the NSN EDT."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed
    mask = nsn > 0
    mk, _ = ndi.label((ndn > 0) & mask, structure=np.ones((3, 3, 3), bool))
    lab = watershed(-ndi.distance_transform_edt(mask, sampling=voxel_size), mk, mask=mask)
    rest, _ = ndi.label(mask & (lab == 0))
    lab[rest > 0] = rest[rest > 0] + lab.max()
    return lab.astype(np.uint16)


@dataclass
class Volume:
    name: str
    embryo: str
    image: np.ndarray        # uint8, normalised raw (z, y, x)
    labels: np.ndarray       # uint16 instance labels
    centre: np.ndarray       # uint8 centreness * 255
    voxel_size: tuple = DEFAULT_VOXEL_SIZE


@dataclass
class Dataset:
    volumes: list = field(default_factory=list)

    def split(self, val_embryos):
        val = set(val_embryos)
        unknown = val - {v.embryo for v in self.volumes}
        if unknown:
            raise ValueError(f"validation embryos not in the dataset: {sorted(unknown)}")
        tr = Dataset([v for v in self.volumes if v.embryo not in val])
        va = Dataset([v for v in self.volumes if v.embryo in val])
        return tr, va


def tiff_voxel_size(path):
    """(z, y, x) micrometres from a TIFF's ImageJ calibration, or None."""
    import tifffile
    with tifffile.TiffFile(str(path)) as tf:
        ij = tf.imagej_metadata or {}
        page = tf.pages[0]
        xr, yr = page.tags.get("XResolution"), page.tags.get("YResolution")
        if "spacing" not in ij or xr is None or yr is None:
            return None
        unit = str(ij.get("unit", "micron")).lower()
        f = {"micron": 1.0, "microns": 1.0, "um": 1.0, "\u00b5m": 1.0, "\xb5m": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
        if f is None:
            return None
        px = lambda r: r.value[1] / r.value[0] if r.value[0] else None
        x, y = px(xr), px(yr)
        if not x or not y:
            return None
        return (float(ij["spacing"]) * f, y * f, x * f)


def load_folder(root, voxel_size=None, progress=True) -> Dataset:
    """Loads a dataset folder. ``voxel_size`` None: each file's ImageJ calibration,
    else BBBC050's 1.75 x 0.8 x 0.8 um (said once on stderr)."""
    root = Path(root)
    img_dir = root / "images" if (root / "images").is_dir() else root / "images_raw"
    nsn_dir = root / "nsn" if (root / "nsn").is_dir() else root / "images_nsn"
    ndn_dir = root / "ndn" if (root / "ndn").is_dir() else root / "images_ndn"
    inst_dir = root / "instances"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{root}: no images/ folder")
    names = sorted(p.name for p in img_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    if not names:
        raise FileNotFoundError(f"{img_dir}: no TIFF files")
    try:
        from tqdm import tqdm
        it = tqdm(names, desc="loading", disable=not progress)
    except ImportError:  # pragma: no cover
        it = names
    ds = Dataset()
    warned = False
    for n in it:
        raw = read_volume(img_dir / n)
        vs = tuple(voxel_size) if voxel_size is not None else tiff_voxel_size(img_dir / n)
        if vs is None:
            vs = DEFAULT_VOXEL_SIZE
            if not warned:
                import sys
                print(f"note: {n} carries no calibration; using {vs} um (z, y, x); set --voxel-size", file=sys.stderr)
                warned = True
        if (inst_dir / n).exists():
            lab = read_volume(inst_dir / n).astype(np.uint16)
        else:
            lab = instances_from_masks(read_volume(nsn_dir / n), read_volume(ndn_dir / n), vs)
        if lab.shape != raw.shape:
            raise ValueError(f"{n}: labels {lab.shape} do not match image {raw.shape}")
        img = np.round(normalise(raw) * 255).astype(np.uint8)
        c = np.round(centreness(lab, vs) * 255).astype(np.uint8)
        ds.volumes.append(Volume(n, embryo_of(n), img, lab, c, vs))
    return ds


def save_packed(ds: Dataset, path) -> None:
    arrays = {}
    meta = []
    for i, v in enumerate(ds.volumes):
        arrays[f"img{i}"] = v.image
        arrays[f"lab{i}"] = v.labels
        meta.append({"name": v.name, "embryo": v.embryo, "voxel_size": list(v.voxel_size)})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez_compressed(path, **arrays)


def load_packed(path) -> Dataset:
    z = np.load(path)
    meta = json.loads(bytes(z["meta"]).decode())
    ds = Dataset()
    for i, m in enumerate(meta):
        lab = z[f"lab{i}"]
        vs = tuple(m["voxel_size"])
        # the centreness target is recomputed (cheap) rather than stored: it does not compress
        cen = np.round(centreness(lab, vs) * 255).astype(np.uint8)
        ds.volumes.append(Volume(m["name"], m["embryo"], z[f"img{i}"], lab, cen, vs))
    return ds


def load_any(path, voxel_size=None, progress=True) -> Dataset:
    p = Path(path)
    if p.suffix == ".npz":
        return load_packed(p)
    return load_folder(p, voxel_size, progress)
