import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
QCANET = ROOT / "target" / "release" / "qcanet"
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def synth_embryo(tmp_path_factory):
    """A generated embryo (raw uint16, ground-truth labels) written by `qcanet synth`."""
    import tifffile
    d = tmp_path_factory.mktemp("synth")
    raw, lab = d / "embryo.tif", d / "labels.tif"
    subprocess.run([str(QCANET), "synth", "-o", str(raw), "--labels", str(lab), "--nuclei", "14",
                    "--seed", "3"], check=True, capture_output=True)
    return tifffile.imread(raw), tifffile.imread(lab).astype(np.uint32), raw, lab
