"""Plots the criteria of development of one embryo from `qcanet analyse` beside the same
criteria of its ground-truth labels (`qcanet track` on the instance masks): nucleus count
and mean nuclear volume per time point, on log2 axes, where QCANet's published trend (the
count doubling with each round of cleavage, the nuclear volume halving) is a straight line.

    python tools/plot_criteria.py ANALYSE/criteria.csv GT/criteria.csv OUT.png --title "Emb11"
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("qcanet")
    ap.add_argument("truth")
    ap.add_argument("out")
    ap.add_argument("--title", default="")
    ap.add_argument("--time-label", default="time point")
    a = ap.parse_args()
    ours, gt = read(a.qcanet), read(a.truth)
    x = [float(r["time"] or r["frame"]) for r in ours]
    xg = [float(r["time"] or r["frame"]) for r in gt]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, label in [(ax[0], "nuclei", "nuclei"), (ax[1], "volume_um3_mean", "mean nuclear volume (µm³)")]:
        axis.plot(xg, [float(r[key]) for r in gt], "o-", color="0.5", label="ground truth (instance masks)")
        axis.plot(x, [float(r[key]) for r in ours], "s--", color="C0", label="qcanet analyse")
        axis.set_yscale("log", base=2)
        axis.set_xlabel(a.time_label)
        axis.set_ylabel(label)
        axis.grid(True, which="major", alpha=0.3)
    sd = [float(r["volume_um3_sd"]) for r in ours]
    ax[1].errorbar(x, [float(r["volume_um3_mean"]) for r in ours], yerr=sd, fmt="none", ecolor="C0", alpha=0.4)
    ax[0].set_title("Nucleus count (doubles each round)")
    ax[1].set_title("Nuclear volume (halves each round)")
    ax[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(a.title)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
    main()
