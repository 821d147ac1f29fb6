"""The training loop: resumable, logged, time- or iteration-bounded."""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import reference
from . import model as M
from .augment import PatchSampler

DEFAULT_POST = dict(fg_threshold=0.6, centre_threshold=0.5, markers="local-max", sigma_um=1.0,
                    landscape="distance", min_volume_um3=450.0, fill_holes=True)


def pick_device(name="auto"):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def soft_dice(p, t, w=None):
    dims = (1, 2, 3, 4)
    if w is None:
        inter, den = (p * t).sum(dims), (p + t).sum(dims)
    else:
        inter, den = (w * p * t).sum(dims), (w * (p + t)).sum(dims)
    return 1 - ((2 * inter + 1) / (den + 1)).mean()


def loss_fn(logits, fg, cen, contact, contact_weight=4.0):
    w = 1.0 + contact_weight * contact
    l_fg = (F.binary_cross_entropy_with_logits(logits[:, 0:1], fg, reduction="none") * w).mean()
    l_fg = l_fg + soft_dice(torch.sigmoid(logits[:, 0:1]), fg)
    l_c = (F.binary_cross_entropy_with_logits(logits[:, 1:2], cen, reduction="none") * w).mean()
    l_c = l_c + soft_dice(torch.sigmoid(logits[:, 1:2]), cen, w)
    return l_fg + l_c


@torch.no_grad()
def predict_volume(net, image_u8_or_f, device, multiple, amp=False):
    """Whole-volume forward pass (mirror-padded to the network's multiple). -> fg, centre (float32)."""
    x = image_u8_or_f.astype(np.float32)
    if image_u8_or_f.dtype == np.uint8:
        x = x / 255.0
    pads = [(0, (-s) % m) for s, m in zip(x.shape, multiple)]
    xp = np.pad(x, pads, mode="reflect" if all(s > 1 for s in x.shape) else "edge")
    t = torch.from_numpy(xp)[None, None].to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        y = torch.sigmoid(net(t).float())[0].cpu().numpy()
    d, h, w = x.shape
    return y[0, :d, :h, :w], y[1, :d, :h, :w]


def _post_eval(args):
    fg, cen, lab, vs, post = args
    pred = reference.postprocess(fg, cen, vs, **post)
    return reference.evaluate(pred, lab.astype(np.uint32)).as_dict()


def evaluate_set(net, volumes, device, post, workers=4, amp=False, preds=None):
    net.eval()
    if preds is None:
        preds = [predict_volume(net, v.image, device, net.spatial_multiple, amp) for v in volumes]
    jobs = [(fg, cen, v.labels, v.voxel_size, post) for (fg, cen), v in zip(preds, volumes)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            res = list(ex.map(_post_eval, jobs))
    else:
        res = [_post_eval(j) for j in jobs]
    mean = {k: float(np.mean([r[k] for r in res])) for k in ("iou", "seg", "mucov", "seg_ctc", "f1")}
    return mean, res, preds


def sweep(net, volumes, device, workers, amp):
    """Grid over post-processing parameters on the validation set; returns rows sorted best first."""
    preds = [predict_volume(net, v.image, device, net.spatial_multiple, amp) for v in volumes]
    rows = []
    for mv in (300.0, 500.0, 700.0):
        for fg_t in (0.5, 0.6, 0.7):
            for c_t in (0.3, 0.5):
                for sig in (1.0, 2.5):
                    post = dict(DEFAULT_POST, sigma_um=sig, fg_threshold=fg_t, centre_threshold=c_t,
                                min_volume_um3=mv)
                    mean, _, _ = evaluate_set(net, volumes, device, post, workers, amp, preds)
                    rows.append(dict(post=post, **mean))
    rows.sort(key=lambda r: -(r["seg"] + r["mucov"]))
    return rows


def train(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = pick_device(args.device)
    amp = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from .data import load_any
    ds = load_any(args.data, args.voxel_size, progress=not args.quiet)
    if args.voxel_size is None:
        args.voxel_size = list(ds.volumes[0].voxel_size)  # the grid the model learns, for its metadata
    tr, va = ds.split(args.val_embryos)
    if not tr.volumes:
        raise SystemExit("no training volumes left after holding out the validation embryos")
    print(f"{len(tr.volumes)} training volumes, {len(va.volumes)} validation volumes "
          f"({', '.join(args.val_embryos)}), device {device}", flush=True)
    net = M.from_preset(args.arch).to(device)
    net = net.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    state = dict(it=0, elapsed=0.0, best=-1.0, history=[])
    ckpt_last = out / "last.pt"
    if args.init:
        ck = torch.load(args.init, map_location=device, weights_only=False)
        if ck["config"] != net.config:
            raise SystemExit(f"--init {args.init}: architecture {ck['config']} differs from {net.config}")
        net.load_state_dict(ck["model"])
        print(f"initialised from {args.init}", flush=True)
    if args.resume and ckpt_last.exists():
        ck = torch.load(ckpt_last, map_location=device, weights_only=False)
        net.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); state = ck["state"]
        print(f"resumed at iteration {state['it']}", flush=True)
    cfg = dict(vars(args), command=" ".join(sys.argv), arch_config=net.config,
               params=M.param_count(net), torch=torch.__version__, device_used=str(device))
    (out / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    sampler = PatchSampler(tr.volumes, tuple(args.patch), device, seed=args.seed + state["it"])
    log_path = out / "log.csv"
    new_log = not log_path.exists() or not args.resume
    logf = open(log_path, "w" if new_log else "a", newline="")
    log = csv.writer(logf)
    if new_log:
        log.writerow(["iteration", "epoch", "seconds", "lr", "train_loss", "val_loss", "val_iou",
                      "val_seg", "val_mucov", "val_f1"])
    try:
        from tqdm import tqdm
        bar = tqdm(total=args.iters, initial=state["it"], disable=args.quiet, desc="train")
    except ImportError:  # pragma: no cover
        bar = None
    t0 = time.time() - state["elapsed"]
    run_loss = []
    while True:
        elapsed = time.time() - t0
        progress = max(state["it"] / args.iters, elapsed / args.time_limit if args.time_limit else 0)
        if progress >= 1:
            break
        lr = args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
        if state["it"] < 100:
            lr *= (state["it"] + 1) / 100
        for g in opt.param_groups:
            g["lr"] = lr
        net.train()
        img, fg, cen, contact = sampler.sample(args.batch)
        img = img.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(img)
        loss = loss_fn(logits.float(), fg, cen, contact, args.contact_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run_loss.append(loss.item())
        state["it"] += 1
        if bar:
            bar.update(1); bar.set_postfix(loss=f"{np.mean(run_loss[-50:]):.3f}")
        if state["it"] % args.val_every == 0:
            state["elapsed"] = time.time() - t0
            full = (state["it"] // args.val_every) % args.seg_every == 0
            _validate(net, va, device, amp, args, state, run_loss, log, logf, lr, full, out, opt)
            run_loss = []
    state["elapsed"] = time.time() - t0
    if run_loss or not (out / "best.pt").exists():  # the last step was not validated yet
        _validate(net, va, device, amp, args, state, run_loss, log, logf, lr, True, out, opt)
    logf.close()
    if bar:
        bar.close()
    plot_curves(log_path, out / "curves.png")
    best = torch.load(out / "best.pt", map_location=device, weights_only=False)
    net.load_state_dict(best["model"])
    if va.volumes and args.sweep:
        rows = sweep(net, va.volumes, device, args.workers, amp)
        (out / "sweep.json").write_text(json.dumps(rows, indent=1))
        best["post"] = rows[0]["post"]
        best["val"] = {k: rows[0][k] for k in ("iou", "seg", "mucov", "seg_ctc", "f1")}
        torch.save(best, out / "best.pt")
        print("best post-processing:", json.dumps(rows[0]), flush=True)
    print(f"done: {state['it']} iterations in {state['elapsed']:.0f} s; best {out / 'best.pt'}", flush=True)
    return out / "best.pt"


def _validate(net, va, device, amp, args, state, run_loss, log, logf, lr, full, out, opt):
    tl = float(np.mean(run_loss)) if run_loss else float("nan")
    row = dict(val_loss=float("nan"), iou=float("nan"), seg=float("nan"), mucov=float("nan"),
               f1=float("nan"))
    score = None
    if va.volumes:
        net.eval()
        losses, ious, preds = [], [], []
        for v in va.volumes:
            fg, cen = predict_volume(net, v.image, device, net.spatial_multiple, amp)
            preds.append((fg, cen))
            gt = v.labels > 0
            pr = fg > 0.5
            ious.append((pr & gt).sum() / max(1, (pr | gt).sum()))
            losses.append(float(F.binary_cross_entropy(torch.from_numpy(fg).clamp(1e-6, 1 - 1e-6),
                                                       torch.from_numpy(gt.astype(np.float32)))))
        row.update(val_loss=float(np.mean(losses)), iou=float(np.mean(ious)))
        if full:
            mean, _, _ = evaluate_set(net, va.volumes, device, DEFAULT_POST, args.workers, amp, preds)
            row.update(seg=mean["seg"], mucov=mean["mucov"], f1=mean["f1"])
            score = mean["seg"] + mean["mucov"]
    else:
        score = -tl
    epoch = state["it"] * args.batch / max(1, args.epoch_patches)
    log.writerow([state["it"], f"{epoch:.2f}", f"{state['elapsed']:.1f}", f"{lr:.3e}", f"{tl:.4f}",
                  f"{row['val_loss']:.4f}", f"{row['iou']:.4f}", f"{row['seg']:.4f}",
                  f"{row['mucov']:.4f}", f"{row['f1']:.4f}"])
    logf.flush()
    ck = dict(model=net.state_dict(), opt=opt.state_dict(), state=state, config=net.config,
              post=DEFAULT_POST, normalization="percentile:1,99.9", voxel_size=list(args.voxel_size))
    torch.save(ck, out / "last.pt.tmp"); os.replace(out / "last.pt.tmp", out / "last.pt")
    if score is not None and score > state["best"]:
        state["best"] = score
        ck["state"] = state
        ck = {k: v for k, v in ck.items() if k != "opt"}  # weights only: small enough to ship
        torch.save(ck, out / "best.pt.tmp"); os.replace(out / "best.pt.tmp", out / "best.pt")
    if not args.quiet:
        print(f"it {state['it']} loss {tl:.4f} val_iou {row['iou']:.4f} seg {row['seg']:.4f} "
              f"mucov {row['mucov']:.4f} ({state['elapsed']:.0f}s)", flush=True)


def plot_curves(log_path, png_path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no learning-curve plot", file=sys.stderr)
        return
    rows = list(csv.DictReader(open(log_path)))
    if not rows:
        return
    ep = [float(r["epoch"]) for r in rows]
    f = lambda k: [float(r[k]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(ep, f("train_loss"), label="train"); ax[0].plot(ep, f("val_loss"), label="validation (BCE)")
    ax[0].set_xlabel("epoch"); ax[0].set_ylabel("loss"); ax[0].legend()
    ax[1].plot(ep, f("val_iou"), label="IoU")
    seg = [(e, s) for e, s in zip(ep, f("val_seg")) if not math.isnan(s)]
    mu = [(e, s) for e, s in zip(ep, f("val_mucov")) if not math.isnan(s)]
    if seg:
        ax[1].plot(*zip(*seg), "o-", label="SEG"); ax[1].plot(*zip(*mu), "s-", label="MUCov")
    ax[1].set_xlabel("epoch"); ax[1].set_ylabel("validation"); ax[1].set_ylim(0, 1); ax[1].legend()
    fig.tight_layout(); fig.savefig(png_path, dpi=100); plt.close(fig)
