"""Sensor physics of Sentinel-2 MSI that the renderer imitates: band timing, PSF, noise, haze, misregistration.

Sources (see CALIBRATION.md for the measurements behind the numbers):
- Band acquisition offsets. MSI is a push-broom with the bands side by side on the focal plane, so one ground point
  is seen by B02, B08, B03 and B04 at different instants. B02 -> B04 = 1.005 s is the ESA figure quoted by
  Fisser et al., "Detecting Moving Trucks on Roads Using Sentinel-2 Data", Remote Sensing 14(7):1595 (2022), and by
  P. Markuse (2017); Fisser et al. use B02 -> B03 = 0.527 s. B08 was measured on the real truck "rainbows" in
  realdata/s2td_braunschweig (CALIBRATION.md). Delays vary by ~2% across track (Binet et al., ISPRS Annals 2022).
- PSF: the MSI 10 m bands have an MTF at Nyquist of about 0.15-0.30 (ESA S2 MPC data quality reports), i.e. a
  Gaussian sigma of 0.45-0.6 px (MTF(Nyquist) = exp(-pi^2 sigma^2 / 2)); the cross-road width of real truck blobs
  in s2td_braunschweig (FWHM 1.3-1.9 px) matches sigma ~0.7 once resampling is included. We draw 0.42-0.72.
- Noise: measured on open water in realdata/sen2ships (pixel-to-pixel differences, CALIBRATION.md): 0.0005-0.0009
  reflectance in B02, less in B03/B04/B08; with S2's SNR of ~200 at reference radiance that grows to ~0.001 at
  reflectance 0.2. Modelled as sigma_b * sqrt(1 + rho / 0.05) per band.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy import ndimage

BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")

# Seconds after B02 at which each band images the same ground point (order B02, B03, B04, B08).
# B03/B04: published (Fisser et al. 2022). B08: measured on s2td_braunschweig, see CALIBRATION.md.
BAND_TIME_OFFSET_S: dict[str, float] = {"B02": 0.0, "B03": 0.527, "B04": 1.005, "B08": 0.28}
BAND_TIMES = np.array([BAND_TIME_OFFSET_S[b] for b in BANDS], dtype=np.float64)
REFERENCE_TIME_S = 0.5 * BAND_TIME_OFFSET_S["B04"]
"""Truth position of a moving object = where it is at this instant (the middle of its B02..B04 'rainbow')."""

PSF_SIGMA_RANGE_PX = (0.42, 0.72)
NOISE_SIGMA = np.array([0.00055, 0.00045, 0.0004, 0.0004])  # reflectance, per band, over dark water
HAZE_SPECTRUM = np.array([1.0, 0.75, 0.55, 0.30])  # additive path radiance shape (Rayleigh/aerosol, blue-heavy)


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (never Python's salted hash())."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def rng_for(*parts: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))


def band_displacements_px(speed_mps: float, heading_deg: float, pixel_size: float = 10.0,
                          time_scale: float = 1.0) -> np.ndarray:
    """(4, 2) per-band (drow, dcol) shift of a moving object relative to its reference-time position.

    Heading 0 = north (up, -row), clockwise. ``time_scale`` models the ~2% across-track variation of the delays.
    """
    h = np.deg2rad(heading_deg)
    step = speed_mps / pixel_size
    dt = (BAND_TIMES - REFERENCE_TIME_S) * time_scale
    return np.stack([-np.cos(h) * step * dt, np.sin(h) * step * dt], axis=1)


def psf_blur(bands: np.ndarray, sigma_px: float | np.ndarray) -> np.ndarray:
    """Gaussian approximation of the MSI point-spread function, per band (in place on a float32 copy)."""
    sig = np.broadcast_to(np.asarray(sigma_px, dtype=float), (bands.shape[0],))
    out = np.empty_like(bands)
    for i in range(bands.shape[0]):
        ndimage.gaussian_filter(bands[i], float(sig[i]), output=out[i], mode="nearest", truncate=3.0)
    return out


def add_noise(bands: np.ndarray, rng: np.random.Generator, level: float = 1.0) -> np.ndarray:
    """Per-band Gaussian noise growing with the signal (shot noise): sigma_b * sqrt(1 + rho / 0.05) * level."""
    c, h, w = bands.shape
    sig = (NOISE_SIGMA[:c, None, None] * level).astype(np.float32)
    noise = rng.standard_normal((c, h, w), dtype=np.float32)
    scale = sig * np.sqrt(1.0 + np.clip(bands, 0, None) / np.float32(0.05))
    return bands + noise * scale


def apply_haze(bands: np.ndarray, field: np.ndarray, strength: float) -> np.ndarray:
    """Thin haze: attenuate the surface and add blue-heavy path radiance, both scaled by a smooth field (0..1)."""
    h = (strength * field).astype(np.float32)[None]
    spec = HAZE_SPECTRUM[: bands.shape[0], None, None].astype(np.float32)
    return bands * (1.0 - 0.5 * h * spec) + 0.12 * h * spec


def subpixel_shift(bands: np.ndarray, drow: float, dcol: float) -> np.ndarray:
    """Shift the whole image by a sub-pixel amount (misregistration between dates), bilinear."""
    if abs(drow) < 1e-6 and abs(dcol) < 1e-6:
        return bands
    out = np.empty_like(bands)
    for i in range(bands.shape[0]):
        ndimage.shift(bands[i], (drow, dcol), output=out[i], order=1, mode="nearest")
    return out


def fractal_noise(shape: tuple[int, int], rng: np.random.Generator, beta: float = 3.0,
                  min_period_px: float = 1.0) -> np.ndarray:
    """Spatially correlated noise with a 1/f^beta power spectrum, zero mean, unit std (spectral synthesis)."""
    h, w = shape
    white = rng.standard_normal((h, w))
    spec = np.fft.rfft2(white)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2.0)
    amp[0, 0] = 0.0
    if min_period_px > 1.0:
        amp = amp * np.exp(-((f * min_period_px) ** 2))
    field = np.fft.irfft2(spec * amp, s=(h, w))
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def solar_position(when, lat: float, lon: float) -> tuple[float, float]:
    """Approximate solar (elevation, azimuth) in degrees (NOAA low-precision formulae; azimuth clockwise from N).

    Good to ~1 degree: enough for shadow direction and length.
    """
    doy = when.timetuple().tm_yday
    hour = when.hour + when.minute / 60.0 + when.second / 3600.0
    g = 2.0 * np.pi / 365.0 * (doy - 1 + (hour - 12) / 24.0)
    eqtime = 229.18 * (0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g)
                       - 0.040849 * np.sin(2 * g))
    decl = (0.006918 - 0.399912 * np.cos(g) + 0.070257 * np.sin(g) - 0.006758 * np.cos(2 * g)
            + 0.000907 * np.sin(2 * g) - 0.002697 * np.cos(3 * g) + 0.00148 * np.sin(3 * g))
    true_solar_min = hour * 60.0 + eqtime + 4.0 * lon
    ha = np.deg2rad(true_solar_min / 4.0 - 180.0)
    phi = np.deg2rad(lat)
    cos_zen = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(ha)
    zen = np.arccos(np.clip(cos_zen, -1, 1))
    az = np.rad2deg(np.arctan2(np.sin(ha), np.cos(ha) * np.sin(phi) - np.tan(decl) * np.cos(phi))) + 180.0
    return float(90.0 - np.rad2deg(zen)), float(az % 360.0)
