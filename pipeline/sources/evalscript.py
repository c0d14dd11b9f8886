"""The one evalscript basewatch sends to the Process API, and the layout of what it returns (declared as data).

Output: one float32 GeoTIFF with B02, B03, B04, B08 as harmonized L2A reflectance (0..1), then the scene
classification (SCL) and dataMask. Which SCL classes make a pixel unusable is data too.
"""

from __future__ import annotations

from pipeline.types import BAND_NAMES

REFLECTANCE_BANDS: tuple[str, ...] = BAND_NAMES
OUTPUT_BANDS: tuple[str, ...] = (*REFLECTANCE_BANDS, "SCL", "dataMask")

# Sentinel-2 L2A scene classification: 0 no data, 1 saturated/defective, 2 dark area, 3 cloud shadow, 4 vegetation,
# 5 not vegetated, 6 water, 7 unclassified, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus,
# 11 snow/ice.
SCL_NODATA = 0
SCL_SATURATED = 1
SCL_CLOUD_SHADOW = 3
SCL_CLOUDS = (8, 9, 10)
SCL_INVALID: tuple[int, ...] = (SCL_NODATA, SCL_SATURATED, SCL_CLOUD_SHADOW, *SCL_CLOUDS)

EVALSCRIPT = """//VERSION=3
// basewatch: B02, B03, B04, B08 reflectance + SCL + dataMask as one FLOAT32 GeoTIFF
function setup() {
  return {
    input: [{ bands: ["B02", "B03", "B04", "B08", "SCL", "dataMask"] }],
    output: { id: "default", bands: 6, sampleType: "FLOAT32" }
  };
}

function evaluatePixel(sample) {
  return [sample.B02, sample.B03, sample.B04, sample.B08, sample.SCL, sample.dataMask];
}
"""
