"""Segmentation of large OME-Zarr images on a Dask cluster: a ``LocalCluster`` on a
workstation, ``dask-jobqueue`` on a SLURM/LSF cluster, ``dask-kubernetes`` in the cloud.

Dask schedules; qcanet computes. The work is a :class:`qcanet.Job` (a folder beside the
target that holds every step's result), cut into tasks:

1. per frame, the intensity scaling of the whole frame (``scale``);
2. per frame and block, the block with its halo segmented (``segment_block``): the
   blocks are aligned to the image's chunks, so that no two tasks write one chunk;
3. per frame, the pieces joined across block faces (``stitch``);
4. once, the label image created (``prepare_output``);
5. per frame and block, the final labels written, whole chunks (``write_block``);
6. once, the lower levels written and the label image moved into place (``finish``).

Each worker process loads the model once (cached per process) and opens the job once.
Every step writes its result whole or not at all, and a step done already is skipped: a
task that dies with its worker is simply run again by Dask, and a call that was
interrupted resumes where it stopped when called again with the same arguments.

Run ``qcanet-dask --help`` for the command line; README "Past one machine" for SLURM.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

_MODELS: dict = {}
_JOBS: dict = {}


def _model(model_args: tuple):
    """This process's model for ``model_args`` (loaded once per worker process)."""
    import qcanet
    m = _MODELS.get(model_args)
    if m is None:
        m = _MODELS[model_args] = qcanet.Model(**dict(model_args))
    return m


def _job(job_dir: str):
    """This process's handle of the job in ``job_dir``, opened again when the folder holds
    another job than the one cached (a finished job's folder reused by a later call)."""
    import qcanet
    st = os.stat(os.path.join(job_dir, "job.json"))
    key = (job_dir, st.st_ino, st.st_mtime_ns)
    j = _JOBS.get(key)
    if j is None:
        for old in [k for k in _JOBS if k[0] == job_dir]:
            _JOBS.pop(old).close()
        j = _JOBS[key] = qcanet.Job.open(job_dir)
    return j


# --- the tasks (module-level functions: Dask pickles them by reference) ---

def _create(model_args, source, target, labels_name, channel, job_args):
    import qcanet
    with qcanet.Job.create(_model(model_args), source, target=target, labels_name=labels_name, channel=channel,
                           **job_args) as j:
        return j.dir, j.target, j.grid


def _scale(job_dir, model_args, t):
    _job(job_dir).scale(_model(model_args), t)
    return t


def _segment_block(job_dir, model_args, t, index, _scaled):
    from distributed import get_worker
    t0 = time.perf_counter()
    skipped = _job(job_dir).segment_block(_model(model_args), t, index)
    return {"t": t, "index": index, "skipped": skipped, "seconds": time.perf_counter() - t0,
            "worker": get_worker().address, "start": t0, "pid": os.getpid()}


def _stitch(job_dir, t, _blocks):
    return _job(job_dir).stitch(t)


def _prepare(job_dir, _stitched):
    _job(job_dir).prepare_output()


def _write_block(job_dir, t, index, _prepared):
    _job(job_dir).write_block(t, index)


def _finish(job_dir, _written):
    _job(job_dir).finish()
    for k in [k for k in _JOBS if k[0] == job_dir]:
        _JOBS.pop(k).close()


# planes of a TIFF read by one task when it is stored as an OME-Zarr
_TIFF_PLANES_PER_TASK = 16


def _read_planes(path, pages):
    """The TIFF pages ``pages`` of ``path`` (tifffile), stacked: one task's read."""
    import tifffile
    with tifffile.TiffFile(path) as f:
        return np.stack([f.pages[i].asarray() for i in pages])


def _tiff_array(path, channel):
    """The TIFF (classic or BigTIFF, ImageJ or OME-TIFF) ``path`` as a lazy dask array of
    channel ``channel``: (z, y, x), or (t, z, y, x) for a time series, with its voxel size
    from the file (or None). The layout (frames, slices, channels, the calibration) is
    qcanet's reading of the header (``qcanet.file_info``, what ``qcanet segment`` sees); the
    planes are read by tifffile, ``_TIFF_PLANES_PER_TASK`` to a task."""
    import dask
    import dask.array as da
    import tifffile
    import qcanet
    info = qcanet.file_info(path)
    nz, ny, nx = info["dims"]
    nc, nt = info["channels"], info["frames"]
    if not 0 <= channel < nc:
        raise ValueError(f"channel {channel} requested, {path} has {nc}")
    with tifffile.TiffFile(path) as f:
        dtype = f.pages[0].dtype
    frames = []
    for t in range(nt):
        parts = []
        for z0 in range(0, nz, _TIFF_PLANES_PER_TASK):
            zs = range(z0, min(nz, z0 + _TIFF_PLANES_PER_TASK))
            st, sz, sc = info["page_strides"]                    # qcanet's reading of the page order
            pages = [t * st + z * sz + channel * sc for z in zs]
            parts.append(da.from_delayed(dask.delayed(_read_planes)(str(path), pages), (len(zs), ny, nx), dtype))
        frames.append(da.concatenate(parts))
    arr = da.stack(frames) if nt > 1 else frames[0]
    return arr, info["voxel_size"]


def _is_tiff_file(src) -> bool:
    return isinstance(src, (str, os.PathLike)) and Path(src).is_file()


def _as_source(src, dst, voxel_size, chunks):
    """An OME-Zarr path for ``src``: an OME-Zarr path as it is; a TIFF file (its channel
    already picked by ``_tiff_array``), a dask or NumPy array (z, y, x or t, z, y, x) stored
    first as an OME-Zarr beside ``dst`` (``<dst>.source.ome.zarr``, kept so that a rerun
    resumes on the same data), with its voxel size."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    import dask.array as da
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image
    if dst is None:
        raise ValueError("an array source needs dst (its labels cannot go into an image that does not exist)")
    if voxel_size is None or len(voxel_size) != 3:
        raise ValueError("an array source needs voxel_size=(z, y, x) in micrometres")
    arr = src if isinstance(src, da.Array) else da.from_array(np.asarray(src))
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected a (z, y, x) or (t, z, y, x) array, got shape {arr.shape}")
    # one frame per chunk; blocks of `chunks` (the block cores) when given
    if arr.ndim == 4:
        arr = arr.rechunk({0: 1})
    if chunks is not None:
        arr = arr.rechunk((1, *chunks) if arr.ndim == 4 else tuple(chunks))
    path = Path(str(dst) + ".source.ome.zarr")
    if path.exists():
        import zarr
        group = zarr.open_group(str(path), mode="r")
        attrs = group.attrs.asdict()
        level0 = group[attrs.get("ome", attrs)["multiscales"][0]["datasets"][0]["path"]]
        if level0.shape != arr.shape or level0.dtype != arr.dtype:
            raise ValueError(f"{path} holds a {level0.shape} {level0.dtype} image, not this {arr.shape} "
                             f"{arr.dtype} array: remove it, or give another dst")
    else:
        axes = "zyx" if arr.ndim == 3 else "tzyx"
        scale = dict(zip("zyx", map(float, voxel_size)))
        if arr.ndim == 4:
            scale["t"] = 1.0            # frames, without a known interval
        part = path.with_name(path.name + ".part")
        if part.exists():
            import shutil
            shutil.rmtree(part)
        write_image(arr, str(part), scale_factors=[], fmt=FormatV05(), axes=axes, scale=scale,
                    axes_units={k: "micrometer" for k in "zyx"},
                    storage_options={"chunks": tuple(c[0] for c in arr.chunks)})
        os.replace(part, path)
    return str(path)


def segment(src, dst=None, *, client=None, voxel_size=None, block=None, halo=None, block_voxels=None,
            max_nucleus_um=None, labels_into_input=None, channel=0, nsn=None, ndn=None, device="cpu",
            precision="auto", threads=1, n_workers=2, progress=False, retries=3, **params) -> dict:
    """Segments ``src`` into ``dst`` on a Dask cluster; returns a summary.

    src: an OME-Zarr path (NGFF 0.4 or 0.5; z, y, x or t, z, y, x, with or without
    channels); a TIFF, BigTIFF or OME-TIFF file (its ``channel`` stored as an OME-Zarr beside
    ``dst`` first, read 16 planes to a task, with the file's calibration unless
    ``voxel_size`` is given); or a dask/NumPy array with ``voxel_size`` (stored as an
    OME-Zarr beside ``dst`` first). dst: the new OME-Zarr of labels (NGFF labels: ``image-label``, the
    image's axes, scales, levels and chunks); or ``labels_into_input="name"`` to write
    them into ``src/labels/name`` instead. client: a ``distributed.Client``; None starts a
    ``LocalCluster(n_workers, threads_per_worker=1, processes=True)`` for the call.
    block / halo: core and halo of a block (z, y, x voxels; default from the largest
    nucleus, the markers' reach and the memory budget ``block_voxels``); nsn, ndn, device,
    precision, threads: the model each worker loads (``qcanet.Model``); other keyword
    arguments are segmentation parameters (as ``Model.segment``). progress: Dask's
    progress bar. Calling again with the same arguments after an interruption resumes:
    blocks done already are skipped.

    Returns ``{"output", "frames", "nuclei" (per frame), "blocks" (per frame),
    "blocks_computed", "blocks_skipped", "block_seconds", "seconds", "workers"}``.
    """
    from distributed import Client, LocalCluster
    if (dst is None) == (labels_into_input is None):
        raise ValueError("give either dst (a new OME-Zarr) or labels_into_input (a label name inside src)")
    t0 = time.perf_counter()
    if _is_tiff_file(src):
        # workers read chunks of an OME-Zarr; a TIFF is stored as one first (its channel)
        if labels_into_input is not None:
            raise ValueError(f"{src} is a TIFF: labels go into OME-Zarr images only; give dst")
        src, file_voxel = _tiff_array(src, int(channel))
        voxel_size = voxel_size if voxel_size is not None else file_voxel
        channel = 0
        if voxel_size is None:
            raise ValueError("the TIFF has no calibration: give voxel_size=(z, y, x) in micrometres")
    source = _as_source(src, dst, voxel_size, block)
    if not isinstance(src, (str, os.PathLike)):
        voxel_size = None            # now in the OME-Zarr's metadata
    model_args = tuple(sorted({"nsn": None if nsn is None else str(nsn), "ndn": None if ndn is None else str(ndn),
                               "device": device, "precision": precision, "threads": int(threads)}.items()))
    job_args = {"voxel_size": voxel_size, "block": block, "halo": halo, "block_voxels": block_voxels,
                "max_nucleus_um": max_nucleus_um, **params}
    own = None
    if client is None:
        own = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(own)
    try:
        target = None if dst is None else str(Path(dst).absolute())
        job_dir, output, grid = client.submit(_create, model_args, str(Path(source).absolute()), target,
                                              labels_into_input, int(channel), job_args, pure=False,
                                              retries=retries).result()
        frames = grid["frames"]
        cz, cy, cx = grid["count"]
        indices = [(z, y, x) for z in range(cz) for y in range(cy) for x in range(cx)]
        # keys unique to this call: two calls on one client never share a task (a rerun
        # resumes through the job's files, not through Dask's memory of results)
        call = uuid.uuid4().hex[:12]
        submit = lambda f, *a, key: client.submit(f, *a, key=f"qcanet-{key}-{call}", retries=retries, pure=False)
        scaled = {t: submit(_scale, job_dir, model_args, t, key=f"scale-{t}") for t in range(frames)}
        blocks = {(t, i): submit(_segment_block, job_dir, model_args, t, i, scaled[t], key=f"block-{t}-{i}")
                  for t in range(frames) for i in indices}
        stitched = {t: submit(_stitch, job_dir, t, [blocks[t, i] for i in indices], key=f"stitch-{t}")
                    for t in range(frames)}
        prepared = submit(_prepare, job_dir, list(stitched.values()), key="prepare")
        written = [submit(_write_block, job_dir, t, i, prepared, key=f"write-{t}-{i}")
                   for t in range(frames) for i in indices]
        finished = submit(_finish, job_dir, written, key="finish")
        if progress:
            from distributed import progress as dask_progress
            dask_progress([*scaled.values(), *blocks.values(), *stitched.values(), prepared, *written, finished])
        finished.result()
        done = client.gather(list(blocks.values()))
        nuclei = client.gather([stitched[t] for t in range(frames)])
        workers = len(client.scheduler_info()["workers"])
    finally:
        if own is not None:
            client.close()
            own.close()
    global _LAST_BLOCKS
    _LAST_BLOCKS = done
    return {"output": output, "frames": frames, "nuclei": nuclei, "blocks": len(indices),
            "blocks_computed": sum(not d["skipped"] for d in done), "blocks_skipped": sum(d["skipped"] for d in done),
            "block_seconds": sum(d["seconds"] for d in done if not d["skipped"]),
            "seconds": time.perf_counter() - t0, "workers": workers}


def _zyx(kind):
    def parse(s):
        v = [kind(a) for a in s.split(",")]
        if len(v) != 3:
            raise argparse.ArgumentTypeError(f"'{s}' is not three numbers Z,Y,X")
        return v
    return parse


def main(argv=None):
    ap = argparse.ArgumentParser(prog="qcanet-dask", description="Segment an OME-Zarr image on a Dask cluster "
                                 "(block by block; labels as NGFF labels).")
    ap.add_argument("input", help="OME-Zarr image (NGFF 0.4 or 0.5), or a TIFF/BigTIFF/OME-TIFF (stored as OME-Zarr beside OUTPUT first)")
    ap.add_argument("output", nargs="?", help="new OME-Zarr of labels (or --labels-into-input NAME)")
    ap.add_argument("--labels-into-input", metavar="NAME", help="write the labels into INPUT/labels/NAME")
    ap.add_argument("--scheduler", default="local", help="a Dask scheduler address (tcp://host:8786), "
                    "a scheduler file (.json), or 'local' for a LocalCluster here [local]")
    ap.add_argument("--workers", type=int, default=2, help="workers of the local cluster [2]")
    ap.add_argument("--threads", type=int, default=1, help="inference threads per worker [1]")
    ap.add_argument("--voxel-size", type=_zyx(float), help="Z,Y,X micrometres (default: the image's metadata)")
    ap.add_argument("--block", type=_zyx(int), help="block core Z,Y,X voxels (whole chunks) [from the memory budget]")
    ap.add_argument("--halo", type=_zyx(int), help="halo Z,Y,X voxels [the model's context + largest nucleus]")
    ap.add_argument("--channel", type=int, default=0)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="an NSN (or joint) ONNX model [the embedded default]")
    ap.add_argument("--ndn", help="an NDN ONNX model")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    if (a.output is None) == (a.labels_into_input is None):
        ap.error("give OUTPUT or --labels-into-input NAME")
    client = None
    if a.scheduler != "local":
        from distributed import Client
        client = Client(scheduler_file=a.scheduler) if a.scheduler.endswith(".json") else Client(a.scheduler)
    try:
        s = segment(a.input, a.output, client=client, voxel_size=a.voxel_size, block=a.block, halo=a.halo,
                    labels_into_input=a.labels_into_input, channel=a.channel, nsn=a.model, ndn=a.ndn, device=a.device,
                    precision=a.precision, threads=a.threads, n_workers=a.workers, progress=not a.quiet)
    except Exception as e:  # the message, not a traceback, for a command-line user
        print(f"qcanet-dask: {e}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    print(f"{s['output']}: {s['frames']} frame(s), nuclei {s['nuclei']}, {s['blocks']} blocks per frame "
          f"({s['blocks_computed']} computed, {s['blocks_skipped']} already done), {s['seconds']:.1f} s on "
          f"{s['workers']} worker(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
