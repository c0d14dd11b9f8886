"""Speed and memory of windowed detection (a benchmark, not a test).

1. Speed: a 4096 x 4096 4-band scene GeoTIFF (float32, the interchange encoding, tiled + DEFLATE) is read whole
   with rasterio, then detected in windows; we report megapixels per second and detect-time / read-time.
2. Memory: peak resident memory of `detect_path` on rasters of growing size up to a full 10980 x 10980 Sentinel-2
   tile (uint16 + SCALE/OFFSET encoding, written window by window), each in a fresh subprocess (ru_maxrss), to
   show memory stays flat as the tile grows.

The scenes are simulated airfield chips tiled over the raster: a worst case for the runs' second stages, whose cost
grows with the candidates a scene holds (about 230 aircraft-sized peaks and 70 trucks per Mpx here; the network's
own cost does not depend on content). The report gives each stage's seconds; benchmarks/realdata.py times real
frames. The detector config is the runs' (configs/default.yaml) unless a flag says otherwise.
Usage: .venv/bin/python benchmarks/speed_memory.py [--out results.json] [--sizes ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.tta import add_heading_views_argument, add_views_argument, cascade_options  # noqa: E402

BANDS = ("B02", "B03", "B04", "B08")


def write_raster(path: Path, size: int, dtype: str = "float32", block: int = 512, seed: int = 7) -> Path:
    """Write a size x size scene window by window (never the whole raster in memory)."""
    from models.evaluate import chip_scene

    tiles = [chip_scene(seed + i, block)[0] for i in range(4)]
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 4, "dtype": dtype, "crs": "EPSG:32636",
               "transform": rasterio.Affine(10, 0, 500_000, 0, -10, 4_000_000), "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "nodata": None}
    with rasterio.open(path, "w", **profile) as dst:
        for i, b in enumerate(BANDS, start=1):
            dst.set_band_description(i, b)
        tags = {"ACQUISITION_DATETIME": "2024-12-13T08:25:00Z", "SPACECRAFT": "Sentinel-2A", "SIMULATED": "true"}
        if dtype == "uint16":
            tags.update(SCALE="0.0001", OFFSET="-0.1")
        dst.update_tags(**tags)
        k = 0
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                data = tiles[k % 4].bands[:, :h, :w]
                k += 1
                if dtype == "uint16":
                    data = np.clip((data + 0.1) / 0.0001, 0, 65535).astype(np.uint16)
                dst.write(data, window=Window(c, r, w, h))
    return path


def time_read(path: Path, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        with rasterio.open(path) as src:
            src.read()
        best = min(best, time.perf_counter() - t0)
    return best


HEADING_OPTIONS: dict = {}
"""--heading-views / --heading-weights / --verifier-weights, set by main() (the memory children get them on their
command line)."""


def _detector(device: str, batch_size: int, tta_views: int = 1):
    from pipeline.config import DetectorConfig
    from pipeline.detect import LearnedDetector

    return LearnedDetector(DetectorConfig(device=device, batch_size=batch_size, tta_views=tta_views,
                                          **HEADING_OPTIONS))


def time_detect(path: Path, device: str, batch_size: int, repeats: int = 5,
                tta_views: int = 1) -> tuple[list[float], int, list[dict[str, float]]]:
    """Every repeat's seconds (the VM is shared: report the median beside the best), the detections, and each
    repeat's seconds per stage (network, decode, verifier, heading network)."""
    det = _detector(device, batch_size, tta_views)
    times, n, stages = [], 0, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = len(det.detect_path(path))
        times.append(time.perf_counter() - t0)
        stages.append(det.stage_seconds)
    return times, n, stages


def peak_memory_child(path: str, device: str, batch_size: int, tta_views: int = 1) -> None:
    """Run in a subprocess: detect, then print peak RSS (MB), peak GPU memory when on a GPU, and time as JSON."""
    import torch

    det = _detector(device, batch_size, tta_views)
    t0 = time.perf_counter()
    n = len(det.detect_path(path))
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"peak_rss_mb": round(peak_mb, 1), "seconds": round(dt, 1), "detections": n, "device": str(det.device)}
    if det.device.type == "cuda":
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(row))


def main() -> None:
    ap = argparse.ArgumentParser(description="detector speed and memory benchmark")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/basewatch-bench"))
    ap.add_argument("--sizes", type=int, nargs="*", default=[2048, 5490, 10980], help="raster sides for memory")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                    help="where the network runs (the issue's targets are for the CPU; default cpu)")
    ap.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (detector.batch_size)")
    add_views_argument(ap, "windows averaged over")
    add_heading_views_argument(ap)
    args = ap.parse_args()
    HEADING_OPTIONS.update(cascade_options(args))
    args.tmp.mkdir(parents=True, exist_ok=True)
    result: dict = {"cpu_cores": os.cpu_count(), "load_avg_start": os.getloadavg(), "device": args.device,
                    "batch_size": args.batch_size, "tta_views": args.tta_views, **HEADING_OPTIONS}
    if not args.skip_speed:
        path = args.tmp / "speed_4096.tif"
        if not path.exists():
            write_raster(path, 4096)
        read_s = time_read(path)
        times, n, stages = time_detect(path, args.device, args.batch_size, tta_views=args.tta_views)
        det_s, median_s = min(times), float(np.median(times))
        mpx = 4096 * 4096 / 1e6
        result["speed"] = {"raster": "4096 x 4096 x 4 float32, DEFLATE, 256 px tiles", "read_s": round(read_s, 2),
                           "detect_s": round(det_s, 2), "detect_mpx_per_s": round(mpx / det_s, 2),
                           "detect_median_s": round(median_s, 2), "detect_median_mpx_per_s": round(mpx / median_s, 2),
                           "detect_runs_s": [round(t, 2) for t in times],
                           "read_mpx_per_s": round(mpx / read_s, 2), "detect_over_read": round(det_s / read_s, 2),
                           "detections": n,
                           "median_run_stage_s": {k: round(v, 2) for k, v in
                                                  stages[int(np.argsort(times)[len(times) // 2])].items()}}
        print(json.dumps(result["speed"]), flush=True)
    result["memory"] = []
    for size in args.sizes:
        path = args.tmp / f"tile_{size}.tif"
        if not path.exists():
            write_raster(path, size, dtype="uint16")
        proc = subprocess.run([sys.executable, __file__, "--child", str(path), args.device, str(args.batch_size),
                               str(args.tta_views), json.dumps(HEADING_OPTIONS)], capture_output=True, text=True,
                              check=True)
        row = {"side_px": size, "mpx": round(size * size / 1e6, 1), **json.loads(proc.stdout.strip().splitlines()[-1])}
        result["memory"].append(row)
        print(json.dumps(row), flush=True)
    result["load_avg_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        HEADING_OPTIONS.update(json.loads(sys.argv[6]))
        peak_memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
