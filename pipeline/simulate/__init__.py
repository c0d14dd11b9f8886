"""Simulated Sentinel-2 L2A (B02, B03, B04, B08 + valid) with ground truth: the embedded default source.

Module map (one job each):
- physics.py    band acquisition delays (the moving-truck rainbow), PSF, noise, haze, shifts, sun position, seeds
- canvas.py     sub-pixel rasterisation of convex plan-form polygons and alpha compositing on a 10 m canvas
- aircraft.py   plan forms from real dimensions (An-124 ... Ka-52) and paints; class by length (>= 35 m: large)
- vehicles.py   truck types and roof paints (cars are clutter)
- painters.py   paint one kind of thing (road, building, tank, boat, aircraft, truck, car) with its shadow
- landcover.py  cover classes, calibrated reflectances, correlated texture, field parcels
- clouds.py     fractal clouds with displaced shadows (invalid), haze fields, the cloud-fraction draw
- sensor.py     surface -> L2A: gain, haze, clouds, misregistration, PSF, noise
- site.py       the static site (terrain, zones, roads, towns, apron strips, parking slots), cached per grid
- render.py     one dated scene: activity (aircraft, parked trucks, columns, traffic, vessels) + sensor -> truth
- timeline.py   scenario calendar: overpasses, sensors, seeds, cloud plan, phases
- chips.py      randomised training chips, not tied to our AOIs
- command.py    `basewatch simulate` (site dates and --held-out evaluation scenes)
- calibrate.py  measurements on real data behind the constants (see CALIBRATION.md)

Pixel convention everywhere: continuous (row, col), centre of pixel (0, 0) at (0.5, 0.5); heading 0 = north,
clockwise. A moving object's truth position is where it is at the middle of its B02..B04 rainbow.
"""
